"""The public Python API (the CLI is a thin layer over it).

    >>> from estimator import estimate, what_if, plan
    >>> est = estimate("llama-70b", "chat", "b200", max_itl_ms=50)
    >>> est.min_energy_within_limit.metrics["energy_per_token_joules"].value   # J per output token
    >>> change = what_if({"model": "llama-70b", "task": "chat", "gpu": "b200", "num_gpus": 2}, gpu="h100")
    >>> change.deltas["energy_per_token_joules"].percent
    >>> fleet = plan("llama-70b", "chat", demand_tokens_per_sec=50_000, max_itl_ms=50)
    >>> fleet.chosen.replicas, fleet.chosen.power_kw

``predict_frame`` is the batch form: a DataFrame of configurations in, the same rows plus predictions out.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import pandas as pd

from estimator.catalog.catalog import ArchitectureSpec, Catalog, load_catalog
from estimator.catalog.output_lengths import LEVEL_NOTES
from estimator.learn.calibration import describe as describe_calibration
from estimator.learn.family import family_of
from estimator.learn.features import is_blank
from estimator.learn.prediction import predict_frame as _predict_frame
from estimator.learn.predictor import PredictorBundle, load_predictor
from estimator.physics.memory import BYTES_PER_PARAM
from estimator.physics.serving import BLOCK_FP8_OVERHEAD_PER_LAYER_S, block_fp8_overhead_s
from estimator.schema import (
    Delta,
    Estimate,
    OptionError,
    Plan,
    Prediction,
    WhatIf,
    Workload,
    metrics_for,
)
from estimator.serve import inputs, planning, recommend
from estimator.serve.calibration import CalibrationLike, calibrate, with_calibration
from estimator.serve.costs import CostInputs
from estimator.serve.explain_api import explain, explain_change, explain_configuration
from estimator.validation import ImpossibleConfigurationError, InputError

__all__ = ["CostInputs", "calibrate", "estimate", "explain", "explain_change", "explain_configuration",
           "load_predictor", "plan", "predict_frame", "what_if"]

LLM_ENGINE = "vLLM 0.11.1"
DIFFUSION_ENGINE = "xDiT (Ulysses/Ring sequence parallelism)"
HOURS_PER_DAY = 24.0
SCALING_ASSUMPTION = ("scaling: identical replicas of one deployment behind a load balancer; replicas = "
                      "ceil(demand / per-replica capacity at the chosen batch and confidence); fleet power = "
                      "replicas x predicted power at full load; energy per day = fleet power x 24 h (the costs "
                      "block counts the load profile, idle replicas, host power and PUE)")


def predict_frame(configs: pd.DataFrame, *, predictor: PredictorBundle | None = None,
                  calibration: CalibrationLike = None,
                  catalog: Catalog | None = None,
                  extra_models: dict[str, ArchitectureSpec] | None = None) -> pd.DataFrame:
    """Predict time, power and energy for every configuration row (see :mod:`estimator.learn.prediction`).

    Args:
        configs: one row per configuration, ML.ENERGY column names (``model_id, task, gpu_model, num_gpus,
            max_num_seqs, ...`` or diffusion's ``batch_size, inference_steps, ...``); names may be aliases.
        predictor: a loaded bundle (default: ``models/predictors/default``).
        calibration: a :class:`~estimator.learn.calibration.Calibration` or a CAL.json path (from ``calibrate``);
            every function of this module takes one. None: the predictor as trained.
        catalog: catalogs (default: ``models/catalog``).
        extra_models: model descriptions not in the catalog (e.g. from an HF ``config.json``), keyed by id.

    Returns:
        The rows in order plus ``<metric>``, ``<metric>_p10``, ``<metric>_p90``, ``status``, ``reason``,
        ``warnings`` (and ``calibration``, the levels that moved each row, when a calibration is applied).
        Energies in joules, power in watts (all GPUs), latency in ms or s as named.
    """
    return _predict_frame(configs, with_calibration(predictor, calibration, catalog, extra_models),
                          catalog or load_catalog(), extra_models)


def _workload(target: planning.Target, row: dict) -> Workload:
    if target.is_diffusion:
        return Workload(task=target.task_key, family=target.family, inference_steps=int(row["inference_steps"]),
                        height=int(row.get("video_height") or row["image_height"]),
                        width=int(row.get("video_width") or row["image_width"]),
                        num_frames=int(row["num_frames"]) if not is_blank(row.get("num_frames")) else None)
    return Workload(task=target.task_key, family=target.family, input_tokens=float(row["avg_input_len"]),
                    output_tokens=float(row["avg_output_len"]))


def _assumptions(target: planning.Target, row: dict, *, user_precision: bool, user_tokens: bool,
                 bundle: PredictorBundle) -> list[str]:
    interval = bundle.card.interval_source or "leave-one-model-out out-of-fold log residuals, p10/p90"
    common = ["energy: GPU energy only (no CPU, network or cooling/PUE)", f"intervals: {interval}"]
    if bundle.calibration is not None:
        common.append(describe_calibration(bundle.calibration))
    if target.is_diffusion:
        size = f"{row.get('video_height') or row['image_height']}x{row.get('video_width') or row['image_width']}"
        frames = f", {int(row['num_frames'])} frames" if not is_blank(row.get("num_frames")) else ""
        return [f"engine: {DIFFUSION_ENGINE}, as in the ML.ENERGY v3 training data; Ulysses degree = GPU count "
                f"unless set", "precision: bfloat16",
                f"workload: {target.task_key}, {int(row['inference_steps'])} steps at {size} px{frames}",
                *common]
    layout = ("expert parallel over all GPUs (MoE)" if target.arch.architecture == "moe"
              else "tensor parallel over all GPUs")
    origin = ("set by you" if user_tokens else f"input: {planning.input_tokens_note(target)}; "
              f"output: {LEVEL_NOTES.get(target.profile_output_level, 'the task profile')}")
    return [f"engine: {LLM_ENGINE} as in the ML.ENERGY v3 training data, steady state at max_num_seqs; "
            f"parallelism: {layout}",
            f"precision: {row['weight_precision']} ({'set by you' if user_precision else 'native'})"
            + _block_fp8_note(target.arch, row["weight_precision"]),
            f"workload: {target.task_key}, {row['avg_input_len']:.0f} input + {row['avg_output_len']:.0f} output "
            f"tokens per request ({origin})", "J/token = power / output throughput; J/response = J/token x output "
            "tokens", *common]


def _block_fp8_note(arch: ArchitectureSpec, precision: str) -> str:
    """The fixed kernel time a block-scaled FP8 checkpoint adds to each decode step, as an assumption line tail."""
    overhead_s = block_fp8_overhead_s(arch, precision)
    if not overhead_s:
        return ""
    return (f"; 128 x 128 block scales: vLLM's activation quantization and block-scaled GEMMs add about "
            f"{overhead_s * 1e3:.1f} ms per decode step ({arch.num_layers} layers x "
            f"{BLOCK_FP8_OVERHEAD_PER_LAYER_S * 1e6:.0f} us), whatever the GPU")


# ------------------------------------------------------------------------------------------------- estimate

def _energy_latency(target: planning.Target) -> tuple[str, str]:
    family = family_of(target.family)
    return family.energy_metric, family.latency_metric


def _latency_limit(target: planning.Target, max_itl_ms: float | None, max_latency_s: float | None) -> float | None:
    if target.is_diffusion and max_itl_ms is not None:
        raise OptionError("{max_itl_ms} applies to LLM tasks; for diffusion give {max_latency_s} (batch latency)",
                          "max_itl_ms", "max_latency_s")
    if not target.is_diffusion and max_latency_s is not None:
        raise OptionError("{max_latency_s} applies to diffusion tasks; for LLMs give {max_itl_ms}",
                          "max_latency_s", "max_itl_ms")
    return max_latency_s if target.is_diffusion else max_itl_ms


def _sweep(target: planning.Target, gpu_models: list[str], *, num_gpus, batches, precision, input_tokens,
           output_tokens, steps, resolution, frames, ulysses_degree, ring_degree, catalog, extra_models,
           predictor):
    """Sweep, predict and mark feasibility: (configs, predictions, feasible mask). Numbers arrive checked."""
    if precision is not None and target.is_diffusion:
        raise OptionError("{precision} applies to LLM tasks (diffusion runs in bfloat16)", "precision")
    if precision is not None and precision not in BYTES_PER_PARAM:
        close = difflib.get_close_matches(precision, list(BYTES_PER_PARAM), n=2, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown precision {precision!r}.{hint} Known: {', '.join(BYTES_PER_PARAM)}")
    height, width = planning.parse_resolution(resolution) if resolution else (None, None)
    configs = planning.sweep_frame(target, gpu_models, num_gpus=num_gpus, batches=batches, precision=precision,
                                   input_tokens=input_tokens, output_tokens=output_tokens, steps=steps,
                                   height=height, width=width, frames=frames, ulysses_degree=ulysses_degree,
                                   ring_degree=ring_degree)
    if configs.empty:
        raise ValueError(f"no GPU count in {num_gpus or list(planning.GPU_COUNTS)} equals Ulysses x Ring degree "
                         f"({ulysses_degree} x {ring_degree})")
    predictions = predict_frame(configs, predictor=predictor, catalog=catalog, extra_models=extra_models)
    feasible = planning.feasible_mask(configs, predictions, catalog, extra_models)
    return configs, predictions, feasible


def _infeasible(predictions: pd.DataFrame, feasible, family: str) -> list[Prediction]:
    """One entry per (GPU type, GPU count) with no feasible batch, carrying the reason (the arithmetic)."""
    out = []
    for _, group in predictions.groupby(["gpu_model", "num_gpus"], sort=False):
        if feasible[group.index].any():
            continue
        row = group.iloc[-1].to_dict()
        if row["status"] == "ok":  # predicted, but even the smallest batch does not fit in the KV cache
            first = group.iloc[0].to_dict()
            row = {**first, "status": "error", "reason": "; ".join(inputs.split_warnings(first["warnings"])[-1:])}
        out.append(inputs.prediction_from_row(row, family))
    return out


def estimate(model: str, task: str, gpu: str, *, num_gpus: int | Sequence[int] | None = None,
             max_num_seqs: int | Sequence[int] | None = None, batch: int | Sequence[int] | None = None,
             precision: str | None = None, input_tokens: float | None = None, output_tokens: float | None = None,
             max_itl_ms: float | None = None, max_latency_s: float | None = None, steps: int | None = None,
             resolution: str | None = None, frames: int | None = None, ulysses_degree: int | None = None,
             ring_degree: int | None = None, extra_models: dict[str, ArchitectureSpec] | None = None,
             predictor: PredictorBundle | None = None,
             calibration: CalibrationLike = None, catalog: Catalog | None = None) -> Estimate:
    """The time-energy frontier of a model x task on one GPU type, over GPU counts and batch sizes.

    Args:
        model: catalog key or alias (``llama-70b``), or a key of ``extra_models``.
        task: catalog key or alias (``chat``, ``text-to-image``).
        gpu: catalog key or alias (``b200``, ``h100``).
        num_gpus: GPU count(s) per replica (default 1, 2, 4, 8).
        max_num_seqs: LLM batch cap(s) (default ML.ENERGY's sweep, 8..4096); ``batch`` is the same for any task.
        precision: LLM weight precision (default: the model's native one).
        input_tokens, output_tokens: mean tokens per request (default: the task profile).
        max_itl_ms: LLM latency limit on median inter-token latency, ms.
        max_latency_s: diffusion latency limit on batch latency, s.
        steps, resolution (``HEIGHTxWIDTH`` px), frames: diffusion workload (default: the model's defaults).
        ulysses_degree, ring_degree: diffusion sequence parallelism (default Ulysses = GPU count).
        extra_models: descriptions not in the catalog (``estimator.catalog.hf_config.load_model_description``).
        predictor, catalog: loaded once and reused when given.

    Returns:
        An :class:`Estimate`; ``configurations`` is empty (and ``infeasible`` says why) when nothing fits.

    Raises:
        UnknownKeyError: an unknown model/task/GPU (with close matches).
        ValueError: non-positive numbers, a malformed resolution, options of the other task family.
    """
    inputs.require_text(model=model, task=task, gpu=gpu)
    inputs.check_text(precision=precision, resolution=resolution)
    n = inputs.checked_numbers(input_tokens=input_tokens, output_tokens=output_tokens, max_itl_ms=max_itl_ms,
                               max_latency_s=max_latency_s, steps=steps, frames=frames, ulysses_degree=ulysses_degree,
                               ring_degree=ring_degree)
    counts = inputs.as_list(num_gpus, "num_gpus")
    batches = inputs.as_list(batch, "batch") if batch is not None else inputs.as_list(max_num_seqs, "max_num_seqs")
    catalog = catalog or load_catalog()
    bundle = with_calibration(predictor, calibration, catalog, extra_models)
    target = planning.resolve_target(model, task, catalog, extra_models)
    gpu_key = catalog.resolve("gpu", gpu)
    limit = _latency_limit(target, n["max_itl_ms"], n["max_latency_s"])
    configs, predictions, feasible = _sweep(
        target, [gpu_key], num_gpus=counts, batches=batches, precision=precision,
        input_tokens=n["input_tokens"], output_tokens=n["output_tokens"], steps=n["steps"], resolution=resolution,
        frames=n["frames"], ulysses_degree=n["ulysses_degree"], ring_degree=n["ring_degree"], catalog=catalog,
        extra_models=extra_models, predictor=bundle)
    energy, latency = _energy_latency(target)
    ok = predictions[feasible]
    rows = {label: inputs.prediction_from_row(row, target.family) for label, row in ok.to_dict("index").items()}
    front = planning.pareto_front(ok, energy, latency) if not ok.empty else []
    best = planning.min_energy(ok, energy, latency) if not ok.empty else None
    best_within = planning.min_energy(ok, energy, latency, limit) if (limit is not None and not ok.empty) else None
    first = configs.iloc[0].to_dict()
    ceiling_note = recommend.ceiling_warning(target, ok, rows, best, latency, limit, energy)
    result = Estimate(
        model_id=target.model_id, task=target.task_key, gpu_model=gpu_key, family=target.family,
        workload=_workload(target, first), energy_metric=energy, latency_metric=latency, latency_limit=limit,
        configurations=list(rows.values()), frontier=[rows[label] for label in front],
        min_energy=rows.get(best), min_energy_within_limit=rows.get(best_within),
        infeasible=_infeasible(predictions, feasible, target.family),
        assumptions=[*_name_notes(catalog, gpu=[gpu], model=[model]),
                     *_assumptions(target, first, user_precision=precision is not None,
                                   user_tokens=input_tokens is not None or output_tokens is not None, bundle=bundle)],
        warnings=[*ceiling_note, *inputs.unique(w for p in rows.values() for w in p.warnings)])
    if not result.configurations:
        by_reason: dict[str, list[str]] = {}
        for p in result.infeasible:
            by_reason.setdefault(p.reason, []).append(str(p.configuration.num_gpus))
        reasons = "; ".join(f"{', '.join(counts)} x {gpu_key}: {reason}" for reason, counts in by_reason.items())
        raise ImpossibleConfigurationError(f"no configuration of {target.model_id} fits on {gpu_key}: {reasons}",
                                           result=result)
    return result


def _name_notes(catalog: Catalog, **names: list) -> list[str]:
    """'<kind> h100 taken as H100-SXM (why)' for every documented default among the names the user gave."""
    notes = []
    for kind, values in names.items():
        for value in values:
            if isinstance(value, str) and (kind != "model" or value in catalog.aliases.get("model", {})
                                           or value.lower() in catalog.taken.get("model", {})):
                notes.append(catalog.note(kind, value))
    return inputs.unique(notes)


# -------------------------------------------------------------------------------------------------- what-if

def what_if(base: dict, *, predictor: PredictorBundle | None = None,
            calibration: CalibrationLike = None, catalog: Catalog | None = None,
            extra_models: dict[str, ArchitectureSpec] | None = None, **changes) -> WhatIf:
    """A base configuration and the same with ``changes`` applied, predicted side by side, with deltas.

    Args:
        base: ``model``, ``task``, ``gpu`` and optionally ``num_gpus``, ``batch`` (or ``max_num_seqs`` /
            ``batch_size``), ``precision``, ``input_tokens``, ``output_tokens``, ``steps``, ``resolution``,
            ``frames``... (friendly names or ML.ENERGY column names). Without ``num_gpus``: the fewest GPUs
            (1, 2, 4, 8) that fit.
        **changes: the same keys, e.g. ``gpu="h100", num_gpus=4``. Parallelism is re-derived for a changed GPU
            count unless set explicitly; the changed side keeps the base's GPU count unless changed.

    Returns:
        :class:`WhatIf` with both predictions and ``deltas[metric]`` (absolute and percent). A side that cannot
        run has ``status='error'`` and the reason (the arithmetic); its deltas are None.
    """
    base_checked, change_raw = inputs.normalize(base, "base"), inputs.normalize(changes, "changes")
    catalog = catalog or load_catalog()
    bundle = with_calibration(predictor, calibration, catalog, extra_models)
    base_raw = inputs.with_gpu_count(base_checked, bundle, catalog, extra_models)
    changed_raw = {**base_raw, **change_raw}
    layout = ("tensor_parallel", "expert_parallel", "data_parallel")
    if "num_gpus" in change_raw and not any(k in change_raw for k in layout):
        for key in layout:
            changed_raw.pop(key, None)
    target, base_row = inputs.complete(base_raw, catalog, extra_models)
    changed_target, changed_row = inputs.complete(changed_raw, catalog, extra_models)
    if target.is_diffusion != changed_target.is_diffusion:
        raise ValueError("a what-if cannot change between LLM and diffusion tasks")
    predicted = predict_frame(pd.DataFrame([base_row, changed_row]), predictor=bundle, catalog=catalog,
                              extra_models=extra_models).to_dict("records")
    before = inputs.prediction_from_row(predicted[0], target.family)
    after = inputs.prediction_from_row(predicted[1], changed_target.family)
    deltas = {}
    for name in metrics_for(target.family):
        a = before.metrics[name].value if name in before.metrics else None
        b = after.metrics[name].value if name in after.metrics else None
        both = a is not None and b is not None
        deltas[name] = Delta(base=a, changed=b, absolute=b - a if both else None,
                             percent=100.0 * (b - a) / a if both and a else None)
    result = WhatIf(family=target.family, changes={k: v for k, v in changes.items() if v is not None},
                    base=before, changed=after, deltas=deltas,
                    assumptions=[*_name_notes(catalog, gpu=[base_raw["gpu_model"], changed_raw["gpu_model"]],
                                              model=[base_raw["model_id"], changed_raw["model_id"]]),
                                 *_assumptions(target, base_row, user_precision="weight_precision" in base_raw,
                                               user_tokens="avg_output_len" in base_raw, bundle=bundle)])
    if before.status != "ok" and after.status != "ok":
        raise ImpossibleConfigurationError(f"neither side can run: base: {before.reason}; changed: {after.reason}",
                                           result=result)
    return result


# ----------------------------------------------------------------------------------------------------- plan

def plan(model: str, task: str, *, demand_rps: float | None = None, demand_tokens_per_sec: float | None = None,
         max_itl_ms: float | None = None, max_latency_s: float | None = None,
         power_budget_kw: float | None = None, gpu_budget: int | None = None, gpus: Sequence[str] | None = None,
         num_gpus: int | Sequence[int] | None = None, max_num_seqs: int | Sequence[int] | None = None,
         batch: int | Sequence[int] | None = None, precision: str | None = None,
         input_tokens: float | None = None, output_tokens: float | None = None, steps: int | None = None,
         resolution: str | None = None, frames: int | None = None, confidence: str = "p90",
         allow_extrapolation: bool = False, max_p90_itl_ms: float | None = None, costs=None,
         extra_models: dict[str, ArchitectureSpec] | None = None, predictor: PredictorBundle | None = None,
         calibration: CalibrationLike = None,
         catalog: Catalog | None = None) -> Plan:
    """The lowest-energy deployment (GPU type, GPUs per replica, batch, replicas) that serves a demand.

    Args:
        demand_rps: requests per second (LLM: x output tokens per request; diffusion: one item per request).
        demand_tokens_per_sec: output tokens per second (LLM/MLLM only).
        max_itl_ms / max_latency_s: latency limit (median ITL for LLMs, batch latency for diffusion).
        power_budget_kw: fleet GPU power limit, kW. Alone (no demand): the demand the budget serves.
        gpu_budget: fleet GPU count limit. Alone (no demand): the demand those GPUs serve.
        gpus: GPU types to consider (default: those in the predictor's training data for the task family).
        confidence: 'p90' (default): a deployment qualifies when the p90 end of its latency interval meets the
            limit, and replicas are sized on the p10 end of capacity; 'median': point values.
        allow_extrapolation: keep GPU types without training data for the engine (marked ``extrapolated``).
        max_p90_itl_ms: tail-latency limit on p90 ITL (needs a predictor that predicts it).
        costs: :class:`estimator.serve.costs.CostInputs` (prices, grid, PUE, host power, load profile), or a
            dict of its fields; default: full load, the catalog's host power, PUE 1.0. Every deployment carries
            a ``costs`` block, and deployments are ranked by its facility energy per day.
        Other arguments as in :func:`estimate`.

    Returns:
        A :class:`Plan`; ``chosen`` is None and ``reason`` says why when nothing qualifies.
    """
    from estimator.serve import fleet_plan, risk

    inputs.require_text(model=model, task=task)
    inputs.check_text(precision=precision, resolution=resolution)
    if gpus is not None and (isinstance(gpus, str) or not isinstance(gpus, Sequence)):
        raise InputError(f"gpus must be a list of GPU names, got {type(gpus).__name__} {gpus!r}")
    inputs.check_text(**{f"gpus[{i}]": g for i, g in enumerate(gpus or [])})
    n = inputs.checked_numbers(demand_rps=demand_rps, demand_tokens_per_sec=demand_tokens_per_sec,
                               max_itl_ms=max_itl_ms, max_latency_s=max_latency_s, power_budget_kw=power_budget_kw,
                               gpu_budget=gpu_budget, input_tokens=input_tokens, output_tokens=output_tokens,
                               steps=steps, frames=frames, max_p90_itl_ms=max_p90_itl_ms)
    max_p90_itl_ms = n["max_p90_itl_ms"]
    demand_rps, demand_tokens_per_sec, power_budget_kw, gpu_budget = (
        n["demand_rps"], n["demand_tokens_per_sec"], n["power_budget_kw"], n["gpu_budget"])
    input_tokens, output_tokens, steps, frames = n["input_tokens"], n["output_tokens"], n["steps"], n["frames"]
    counts = inputs.as_list(num_gpus, "num_gpus")
    batches = inputs.as_list(batch, "batch") if batch is not None else inputs.as_list(max_num_seqs, "max_num_seqs")
    catalog = catalog or load_catalog()
    bundle = with_calibration(predictor, calibration, catalog, extra_models)
    target = planning.resolve_target(model, task, catalog, extra_models)
    limit = _latency_limit(target, n["max_itl_ms"], n["max_latency_s"])
    ceiling_note = []
    if limit is None and target.is_diffusion:  # never recommend a batch above the task's latency ceiling
        limit, ceiling_note = recommend.default_latency_limit(target)
    if demand_rps is not None and demand_tokens_per_sec is not None:
        raise OptionError("give one demand: {demand_rps} or {demand_tokens_per_sec}, not both", "demand_rps",
                          "demand_tokens_per_sec")
    if target.is_diffusion and demand_tokens_per_sec is not None:
        raise OptionError("diffusion demand is in requests (items) per second: use {demand_rps}", "demand_rps")
    cost_inputs = CostInputs(**costs) if isinstance(costs, dict) else costs
    family = family_of(target.family)
    domain = bundle.card.domain_of(family.name)
    trained = risk.trained_gpus(domain.model_dump() if domain is not None else {},
                                "xdit" if target.is_diffusion else "vllm")
    if gpus:
        gpu_keys = inputs.unique(catalog.resolve("gpu", g) for g in gpus)
    else:
        gpu_keys = (domain.gpus if domain is not None else None) or sorted(catalog.gpus)
    configs, predictions, feasible = _sweep(
        target, gpu_keys, num_gpus=counts, batches=batches, precision=precision,
        input_tokens=input_tokens, output_tokens=output_tokens, steps=steps, resolution=resolution, frames=frames,
        ulysses_degree=None, ring_degree=None, catalog=catalog, extra_models=extra_models, predictor=bundle)
    first = configs.iloc[0].to_dict()
    _, latency = _energy_latency(target)
    demand = demand_tokens_per_sec
    if demand_rps is not None:
        demand = demand_rps if target.is_diffusion else demand_rps * float(first["avg_output_len"])
    decided = fleet_plan.plan_fleet(target, predictions=predictions, feasible=feasible, demand=demand, limit=limit,
                                    power_budget_kw=power_budget_kw, gpu_budget=gpu_budget, trained_gpus=trained,
                                    confidence=confidence, allow_extrapolation=allow_extrapolation,
                                    max_p90_itl_ms=max_p90_itl_ms, cost_inputs=cost_inputs, catalog=catalog)
    chosen, alternatives = decided["chosen"], decided["alternatives"]
    unit = family.demand_unit
    reason = "" if chosen else _plan_reason(decided["ok"], decided["within"], decided["latency_column"], limit, unit,
                                            demand, power_budget_kw, gpu_budget, decided["capacity_column"])
    assumptions = _assumptions(target, first, user_precision=precision is not None,
                               user_tokens=input_tokens is not None or output_tokens is not None, bundle=bundle)
    assumptions.insert(0, SCALING_ASSUMPTION)
    assumptions.extend(ceiling_note)
    if chosen is not None and chosen.costs is not None:
        assumptions.extend(chosen.costs.assumptions)
    assumptions.extend(fleet_plan.notes(chosen, alternatives, decided["excluded_gpus"], confidence))
    warnings = inputs.unique(w for d in ([chosen] if chosen else []) + alternatives for w in d.prediction.warnings)
    return Plan(model_id=target.model_id, task=target.task_key, family=target.family,
                workload=_workload(target, first), demand_unit=unit, demand=demand,
                demand_requests_per_sec=demand_rps, latency_metric=latency, latency_limit=limit,
                power_budget_kw=power_budget_kw, gpu_budget=gpu_budget, gpus_considered=gpu_keys, chosen=chosen,
                alternatives=alternatives, reason=reason, assumptions=assumptions, warnings=warnings,
                confidence=confidence, excluded_gpus=decided["excluded_gpus"],
                closest_latency=decided["closest_latency"])


def _plan_reason(ok, within, latency, limit, unit, demand, power_budget_kw, gpu_budget, throughput) -> str:
    if ok.empty:
        return ("no configuration fits in memory on the GPUs considered (an estimate on one GPU type gives the "
                "arithmetic)")
    if within.empty:
        fastest = ok.sort_values(latency).iloc[0]
        base = latency.removesuffix("_p90")
        unit = "ms" if base == "median_itl_ms" else "s"
        which = "p90 end of " if latency.endswith("_p90") else ""
        return (f"no configuration meets the {which}{base} <= {limit:g} {unit}; the closest achievable is "
                f"{fastest[latency]:.3g} {unit} ({int(fastest['num_gpus'])} x {fastest['gpu_model']}, batch "
                f"{int(fastest.get('max_num_seqs', fastest.get('batch_size', 0)) or 0)})")
    cheapest = planning.size_fleet(within, throughput=throughput, demand=demand or within[throughput].min())
    best = cheapest.sort_values("fleet_power_watts").iloc[0]
    parts = []
    if power_budget_kw is not None:
        parts.append(f"power budget {power_budget_kw:g} kW (the least-power deployment needs "
                     f"{best['fleet_power_watts'] / 1e3:.3g} kW)")
    if gpu_budget is not None:
        parts.append(f"GPU budget {gpu_budget} (the fewest GPUs needed: {int(cheapest['total_gpus'].min())})")
    what = f"{demand:.4g} {unit}" if demand is not None else "one replica"
    return f"no deployment serves {what} within the " + " and the ".join(parts)
