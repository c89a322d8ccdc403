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
import importlib
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import pandas as pd

from estimator import physics, planning
from estimator.catalog import ArchitectureSpec, Catalog, load_catalog
from estimator.features import is_blank
from estimator.paths import predictors_dir
from estimator.prediction import predict_frame as _predict_frame
from estimator.predictor import PredictorBundle
from estimator.schema import (
    Configuration,
    Delta,
    Estimate,
    Metric,
    Plan,
    Prediction,
    WhatIf,
    Workload,
    metrics_for,
)

LLM_ENGINE = "vLLM 0.11.1"
DIFFUSION_ENGINE = "xDiT (Ulysses/Ring sequence parallelism)"
HOURS_PER_DAY = 24.0


def _import_lightgbm_without_sklearn() -> None:
    """Import lightgbm with its optional scikit-learn wrappers switched off.

    ``import lightgbm`` imports scikit-learn (and through it scipy) when installed: ~0.7 s of a 1.5 s budget for
    a cold CLI run. Prediction uses only ``lightgbm.Booster``, so the first import hides scikit-learn for the
    duration of that import (lightgbm then skips its sklearn wrappers, which this project does not use: training
    calls ``lightgbm.train``). scikit-learn itself stays importable afterwards.
    """
    if "lightgbm" in sys.modules or "sklearn" in sys.modules:
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # makes `import sklearn` raise ImportError
    try:
        import lightgbm  # noqa: F401
    finally:
        if sys.modules.get("sklearn", 0) is None:
            del sys.modules["sklearn"]


@cache
def _load_cached(directory: str) -> PredictorBundle:
    _import_lightgbm_without_sklearn()
    return PredictorBundle.load(Path(directory))


def load_predictor(name_or_path: str | Path = "default") -> PredictorBundle:
    """Load a trained predictor bundle by name (under ``models/predictors/``) or path (cached per process)."""
    path = Path(name_or_path)
    if not path.exists():
        path = predictors_dir() / str(name_or_path)
    return _load_cached(str(path.resolve()))


def predict_frame(configs: pd.DataFrame, *, predictor: PredictorBundle | None = None,
                  catalog: Catalog | None = None,
                  extra_models: dict[str, ArchitectureSpec] | None = None) -> pd.DataFrame:
    """Predict time, power and energy for every configuration row (see :mod:`estimator.prediction`).

    Args:
        configs: one row per configuration, ML.ENERGY column names (``model_id, task, gpu_model, num_gpus,
            max_num_seqs, ...`` or diffusion's ``batch_size, inference_steps, ...``); names may be aliases.
        predictor: a loaded bundle (default: ``models/predictors/default``).
        catalog: catalogs (default: ``models/catalog``).
        extra_models: model descriptions not in the catalog (e.g. from an HF ``config.json``), keyed by id.

    Returns:
        The rows in order plus ``<metric>``, ``<metric>_p10``, ``<metric>_p90``, ``status``, ``reason``,
        ``warnings``. Energies in joules, power in watts (all GPUs), latency in ms or s as named.
    """
    return _predict_frame(configs, predictor or load_predictor(), catalog or load_catalog(), extra_models)


# ----------------------------------------------------------------------------------------------- conversions

def split_warnings(text) -> list[str]:
    """``predict_frame``'s '; '-joined warnings back into a list (no single warning contains '; ')."""
    if is_blank(text):
        return []
    return str(text).split("; ")


_INT_FIELDS = {name for name, field in Configuration.model_fields.items() if "int" in str(field.annotation)}


def _configuration(row: dict) -> Configuration:
    values = {}
    for name in Configuration.model_fields:
        value = row.get(name)
        if is_blank(value):
            continue
        values[name] = int(value) if name in _INT_FIELDS and isinstance(value, float) else value
    return Configuration(**values)


def prediction_from_row(row: dict, family: str) -> Prediction:
    """One ``predict_frame`` output row -> :class:`Prediction` (metrics of the row's family)."""
    metrics = {}
    if row.get("status") == "ok":
        for name in metrics_for(family):
            value = row.get(name)
            if not is_blank(value):
                metrics[name] = Metric(value=float(value), p10=float(row[f"{name}_p10"]),
                                       p90=float(row[f"{name}_p90"]))
    return Prediction(configuration=_configuration(row), status=row.get("status", "error"),
                      reason=str(row.get("reason") or ""), warnings=split_warnings(row.get("warnings")),
                      metrics=metrics)


def _unique(items) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


def _as_list(value) -> list[int] | None:
    if value is None:
        return None
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    return [int(v) for v in values]


def _check_positive(**numbers) -> None:
    """Raise ``ValueError`` naming the first non-positive number (lists are checked element by element)."""
    for name, value in numbers.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None and not item > 0:
                raise ValueError(f"{name} must be positive, got {item}")


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
    interval = bundle.card.get("interval_source", "leave-one-model-out out-of-fold log residuals, p10/p90")
    common = ["energy: GPU energy only (no CPU, network or cooling/PUE)", f"intervals: {interval}"]
    if target.is_diffusion:
        size = f"{row.get('video_height') or row['image_height']}x{row.get('video_width') or row['image_width']}"
        frames = f", {int(row['num_frames'])} frames" if not is_blank(row.get("num_frames")) else ""
        return [f"engine: {DIFFUSION_ENGINE}, as in the ML.ENERGY v3 training data; Ulysses degree = GPU count "
                f"unless set", "precision: bfloat16",
                f"workload: {target.task_key}, {int(row['inference_steps'])} steps at {size} px{frames}",
                *common]
    layout = ("expert parallel over all GPUs (MoE)" if target.arch.architecture == "moe"
              else "tensor parallel over all GPUs")
    origin = "set by you" if user_tokens else "the task profile's means"
    return [f"engine: {LLM_ENGINE} as in the ML.ENERGY v3 training data, steady state at max_num_seqs; "
            f"parallelism: {layout}",
            f"precision: {row['weight_precision']} ({'set by you' if user_precision else 'native'})",
            f"workload: {target.task_key}, {row['avg_input_len']:.0f} input + {row['avg_output_len']:.0f} output "
            f"tokens per request ({origin})", "J/token = power / output throughput; J/response = J/token x output "
            "tokens", *common]


# ------------------------------------------------------------------------------------------------- estimate

def _energy_latency(target: planning.Target) -> tuple[str, str]:
    if target.is_diffusion:
        return "energy_per_item_joules", "batch_latency_s"
    return "energy_per_token_joules", "median_itl_ms"


def _latency_limit(target: planning.Target, max_itl_ms: float | None, max_latency_s: float | None) -> float | None:
    if target.is_diffusion and max_itl_ms is not None:
        raise ValueError("--max-itl-ms applies to LLM tasks; for diffusion give --max-latency-s (batch latency)")
    if not target.is_diffusion and max_latency_s is not None:
        raise ValueError("--max-latency-s applies to diffusion tasks; for LLMs give --max-itl-ms")
    return max_latency_s if target.is_diffusion else max_itl_ms


def _sweep(target: planning.Target, gpu_models: list[str], *, num_gpus, batches, precision, input_tokens,
           output_tokens, steps, resolution, frames, ulysses_degree, ring_degree, catalog, extra_models,
           predictor):
    """Sweep, predict and mark feasibility: (configs, predictions, feasible mask)."""
    _check_positive(num_gpus=num_gpus, batch=batches, input_tokens=input_tokens, output_tokens=output_tokens,
                    steps=steps, frames=frames, ulysses_degree=ulysses_degree, ring_degree=ring_degree)
    if precision is not None and target.is_diffusion:
        raise ValueError("--precision applies to LLM tasks (diffusion runs in bfloat16)")
    if precision is not None and precision not in physics.BYTES_PER_PARAM:
        close = difflib.get_close_matches(precision, list(physics.BYTES_PER_PARAM), n=2, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown precision {precision!r}.{hint} Known: {', '.join(physics.BYTES_PER_PARAM)}")
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
            row = {**first, "status": "error", "reason": "; ".join(split_warnings(first["warnings"])[-1:])}
        out.append(prediction_from_row(row, family))
    return out


def estimate(model: str, task: str, gpu: str, *, num_gpus: int | Sequence[int] | None = None,
             max_num_seqs: int | Sequence[int] | None = None, batch: int | Sequence[int] | None = None,
             precision: str | None = None, input_tokens: float | None = None, output_tokens: float | None = None,
             max_itl_ms: float | None = None, max_latency_s: float | None = None, steps: int | None = None,
             resolution: str | None = None, frames: int | None = None, ulysses_degree: int | None = None,
             ring_degree: int | None = None, extra_models: dict[str, ArchitectureSpec] | None = None,
             predictor: PredictorBundle | None = None, catalog: Catalog | None = None) -> Estimate:
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
        extra_models: descriptions not in the catalog (``estimator.hf_config.load_model_description``).
        predictor, catalog: loaded once and reused when given.

    Returns:
        An :class:`Estimate`; ``configurations`` is empty (and ``infeasible`` says why) when nothing fits.

    Raises:
        UnknownKeyError: an unknown model/task/GPU (with close matches).
        ValueError: non-positive numbers, a malformed resolution, options of the other task family.
    """
    catalog = catalog or load_catalog()
    bundle = predictor or load_predictor()
    target = planning.resolve_target(model, task, catalog, extra_models)
    gpu_key = catalog.resolve("gpu", gpu)
    limit = _latency_limit(target, max_itl_ms, max_latency_s)
    _check_positive(max_itl_ms=max_itl_ms, max_latency_s=max_latency_s)
    batches = _as_list(batch if batch is not None else max_num_seqs)
    configs, predictions, feasible = _sweep(
        target, [gpu_key], num_gpus=_as_list(num_gpus), batches=batches, precision=precision,
        input_tokens=input_tokens, output_tokens=output_tokens, steps=steps, resolution=resolution, frames=frames,
        ulysses_degree=ulysses_degree, ring_degree=ring_degree, catalog=catalog, extra_models=extra_models,
        predictor=bundle)
    energy, latency = _energy_latency(target)
    ok = predictions[feasible]
    rows = {label: prediction_from_row(ok.loc[label].to_dict(), target.family) for label in ok.index}
    front = planning.pareto_front(ok, energy, latency) if not ok.empty else []
    best = planning.min_energy(ok, energy, latency) if not ok.empty else None
    best_within = planning.min_energy(ok, energy, latency, limit) if (limit is not None and not ok.empty) else None
    first = configs.iloc[0].to_dict()
    warnings = _unique(w for p in rows.values() for w in p.warnings)
    ceiling_note = _ceiling_warning(target, ok, rows, best, latency, limit, energy)
    return Estimate(
        model_id=target.model_id, task=target.task_key, gpu_model=gpu_key, family=target.family,
        workload=_workload(target, first), energy_metric=energy, latency_metric=latency, latency_limit=limit,
        configurations=list(rows.values()), frontier=[rows[label] for label in front],
        min_energy=rows.get(best), min_energy_within_limit=rows.get(best_within),
        infeasible=_infeasible(predictions, feasible, target.family),
        assumptions=_assumptions(target, first, user_precision=precision is not None,
                                 user_tokens=input_tokens is not None or output_tokens is not None, bundle=bundle),
        warnings=[*ceiling_note, *warnings])


def _ceiling_warning(target: planning.Target, ok: pd.DataFrame, rows: dict, best, latency: str,
                     limit: float | None, energy: str) -> list[str]:
    """A warning when the minimum-energy configuration's batch latency is above the task's ceiling (a product
    decision in models/catalog/latency_ceilings.toml), naming the lowest-energy configuration within it."""
    from estimator.facility_catalog import load_latency_ceilings
    from estimator.units import format_duration

    ceiling = load_latency_ceilings().tasks.get(target.task_key)
    if ceiling is None or best is None or limit is not None or latency != "batch_latency_s":
        return []
    seconds = ceiling.max_recommended_latency_s
    if ok.loc[best, latency] <= seconds:
        return []
    within = planning.min_energy(ok, energy, latency, seconds)
    instead = (f"; the lowest-energy configuration within it is {_short(rows[within].configuration)} at "
               f"{format_duration(ok.loc[within, latency])}" if within is not None else "; none is within it")
    return [f"the minimum-energy configuration takes {format_duration(ok.loc[best, latency])} per batch, above the "
            f"{format_duration(seconds)} ceiling for {target.task_key} (a product decision, models/catalog/"
            f"latency_ceilings.toml); not a recommendation{instead} (or set --max-latency-s)"]


def _short(config: Configuration) -> str:
    batch = config.batch_size if config.batch_size is not None else config.max_num_seqs
    return f"{config.num_gpus} x {config.gpu_model}, batch {batch}"


# -------------------------------------------------------------------------------------------------- what-if

#: friendly names accepted by what_if / --set -> ML.ENERGY column names
_KEY_NAMES = {"model": "model_id", "gpu": "gpu_model", "gpus": "num_gpus", "precision": "weight_precision",
              "tp": "tensor_parallel", "ep": "expert_parallel", "dp": "data_parallel",
              "input_tokens": "avg_input_len", "output_tokens": "avg_output_len", "steps": "inference_steps",
              "frames": "num_frames", "ulysses": "ulysses_degree", "ring": "ring_degree"}
_SPECIAL_KEYS = ("batch", "resolution", "height", "width")
_NAME_KEYS = ("model_id", "task", "gpu_model", "weight_precision")


def _normalize(config: dict) -> dict:
    known = set(Configuration.model_fields) | set(_KEY_NAMES) | set(_SPECIAL_KEYS)
    out = {}
    for key, value in config.items():
        if value is None:
            continue
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown configuration key {key!r}.{hint} Known: {', '.join(sorted(known))}")
        name = _KEY_NAMES.get(key, key)
        if name not in _NAME_KEYS and name != "resolution":
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{key}={value!r} is not a number") from None
            if not number > 0:
                raise ValueError(f"{key} must be positive, got {value}")
            value = int(number) if number.is_integer() else number
        out[name] = value
    return out


def _complete(raw: dict, catalog: Catalog, extra_models: dict | None) -> tuple[planning.Target, dict]:
    """Resolve names and fill every default as the engine would (``num_gpus`` must be set)."""
    missing = [k for k in ("model_id", "task", "gpu_model") if k not in raw]
    if missing:
        raise ValueError(f"the configuration lacks {', '.join(missing)} (give model, task and gpu)")
    target = planning.resolve_target(str(raw["model_id"]), str(raw["task"]), catalog, extra_models)
    gpu = catalog.resolve("gpu", str(raw["gpu_model"]))
    values = dict(raw)
    height, width = values.pop("height", None), values.pop("width", None)
    if "resolution" in values:
        height, width = planning.parse_resolution(str(values.pop("resolution")))
    batch = values.pop("batch", None)
    num_gpus = int(values["num_gpus"])
    if target.is_diffusion:
        video = target.arch.modality == "text-to-video"
        height = height or values.get("video_height" if video else "image_height")
        width = width or values.get("video_width" if video else "image_width")
        row = planning.diffusion_row(target, gpu, num_gpus, int(batch or values.get("batch_size") or 1),
                                     steps=values.get("inference_steps"), height=height, width=width,
                                     frames=values.get("num_frames"), ulysses_degree=values.get("ulysses_degree"),
                                     ring_degree=values.get("ring_degree"))
        if row is None:
            raise ValueError(f"ulysses_degree x ring_degree must equal num_gpus = {num_gpus}")
    else:
        row = planning.llm_row(target, gpu, num_gpus, int(batch or values.get("max_num_seqs")
                                                          or planning.DEFAULT_MAX_NUM_SEQS),
                               precision=values.get("weight_precision"), input_tokens=values.get("avg_input_len"),
                               output_tokens=values.get("avg_output_len"))
        row.update({k: values[k] for k in ("tensor_parallel", "expert_parallel", "data_parallel") if k in values})
    return target, row


def _with_gpu_count(raw: dict, bundle: PredictorBundle, catalog: Catalog, extra_models) -> dict:
    """``raw`` with ``num_gpus`` set: as given, else the fewest of 1, 2, 4, 8 that fit (1 when none does: the
    prediction's reason then says why)."""
    if "num_gpus" in raw:
        return raw
    candidates = []
    for count in planning.GPU_COUNTS:
        try:
            candidates.append(_complete({**raw, "num_gpus": count}, catalog, extra_models)[1])
        except ValueError:  # e.g. a Ulysses x Ring layout that cannot make this count
            continue
    if candidates:
        predicted = _predict_frame(pd.DataFrame(candidates), bundle, catalog, extra_models)
        for row, status in zip(candidates, predicted["status"], strict=True):
            if status == "ok":
                return {**raw, "num_gpus": row["num_gpus"]}
    return {**raw, "num_gpus": 1}


def what_if(base: dict, *, predictor: PredictorBundle | None = None, catalog: Catalog | None = None,
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
    catalog = catalog or load_catalog()
    bundle = predictor or load_predictor()
    base_raw = _with_gpu_count(_normalize(base), bundle, catalog, extra_models)
    change_raw = _normalize(changes)
    changed_raw = {**base_raw, **change_raw}
    layout = ("tensor_parallel", "expert_parallel", "data_parallel")
    if "num_gpus" in change_raw and not any(k in change_raw for k in layout):
        for key in layout:
            changed_raw.pop(key, None)
    target, base_row = _complete(base_raw, catalog, extra_models)
    changed_target, changed_row = _complete(changed_raw, catalog, extra_models)
    if target.is_diffusion != changed_target.is_diffusion:
        raise ValueError("a what-if cannot change between LLM and diffusion tasks")
    predicted = predict_frame(pd.DataFrame([base_row, changed_row]), predictor=bundle, catalog=catalog,
                              extra_models=extra_models).to_dict("records")
    before = prediction_from_row(predicted[0], target.family)
    after = prediction_from_row(predicted[1], changed_target.family)
    deltas = {}
    for name in metrics_for(target.family):
        a = before.metrics[name].value if name in before.metrics else None
        b = after.metrics[name].value if name in after.metrics else None
        both = a is not None and b is not None
        deltas[name] = Delta(base=a, changed=b, absolute=b - a if both else None,
                             percent=100.0 * (b - a) / a if both and a else None)
    return WhatIf(family=target.family, changes={k: v for k, v in changes.items() if v is not None},
                  base=before, changed=after, deltas=deltas,
                  assumptions=_assumptions(target, base_row, user_precision="weight_precision" in base_raw,
                                           user_tokens="avg_output_len" in base_raw, bundle=bundle))


def explain_change(whatif: WhatIf, *, predictor: PredictorBundle | None = None, catalog: Catalog | None = None,
                   extra_models: dict[str, ArchitectureSpec] | None = None):
    """What moved between the two sides of a what-if (``estimator.explain.explain_change``); None when that
    module is not available or either side was not predicted."""
    try:
        explain_module = importlib.import_module("estimator.explain")
        function = explain_module.explain_change
    except (ImportError, AttributeError):
        return None
    if whatif.base.status != "ok" or whatif.changed.status != "ok":
        return None
    return function(whatif.base.configuration.as_row(), whatif.changed.configuration.as_row(),
                    predictor=predictor or load_predictor(), catalog=catalog or load_catalog(),
                    extra_models=extra_models)


def explain(configs: pd.DataFrame, *, predictor: PredictorBundle | None = None, catalog: Catalog | None = None,
            extra_models: dict[str, ArchitectureSpec] | None = None) -> list:
    """Attributions of each configuration's prediction (``estimator.explain.explain_frame``).

    Raises:
        ImportError: ``estimator.explain`` is not available in this installation.
    """
    explain_module = importlib.import_module("estimator.explain")

    return explain_module.explain_frame(configs, predictor=predictor or load_predictor(),
                                        catalog=catalog or load_catalog(), extra_models=extra_models)


def explain_configuration(config: dict, *, quantity: str | None = None, predictor: PredictorBundle | None = None,
                          catalog: Catalog | None = None, extra_models: dict[str, ArchitectureSpec] | None = None):
    """The attribution of one configuration given with friendly keys (as :func:`what_if`'s ``base``).

    Args:
        config: ``model``, ``task``, ``gpu`` and optionally ``num_gpus``, ``batch``, ``precision``,
            ``output_tokens``, ``steps``, ``resolution``... Without ``num_gpus``: the fewest GPUs that fit.
        quantity: what to attribute (default energy per token, or per image/video for diffusion).

    Returns:
        ``estimator.explain.Attribution``: baseline x product of group multipliers = the prediction.
    """
    catalog = catalog or load_catalog()
    bundle = predictor or load_predictor()
    raw = _with_gpu_count(_normalize(config), bundle, catalog, extra_models)
    _, row = _complete(raw, catalog, extra_models)
    explain_module = importlib.import_module("estimator.explain")
    return explain_module.explain_frame(pd.DataFrame([row]), predictor=bundle, catalog=catalog,
                                        extra_models=extra_models, quantity=quantity)[0]


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
            dict of its fields; every deployment then carries a ``costs`` block.
        Other arguments as in :func:`estimate`.

    Returns:
        A :class:`Plan`; ``chosen`` is None and ``reason`` says why when nothing qualifies.
    """
    from estimator.serve.costs import CostInputs
    from estimator.serve.fleet_plan import notes, plan_fleet
    from estimator.serve.risk import trained_gpus

    catalog = catalog or load_catalog()
    bundle = predictor or load_predictor()
    target = planning.resolve_target(model, task, catalog, extra_models)
    limit = _latency_limit(target, max_itl_ms, max_latency_s)
    _check_positive(demand_rps=demand_rps, demand_tokens_per_sec=demand_tokens_per_sec, max_itl_ms=max_itl_ms,
                    max_latency_s=max_latency_s, power_budget_kw=power_budget_kw, gpu_budget=gpu_budget,
                    max_p90_itl_ms=max_p90_itl_ms)
    if demand_rps is not None and demand_tokens_per_sec is not None:
        raise ValueError("give one demand: --demand-rps or --demand-tokens-per-sec, not both")
    if target.is_diffusion and demand_tokens_per_sec is not None:
        raise ValueError("diffusion demand is in requests (items) per second: use --demand-rps")
    cost_inputs = CostInputs(**costs) if isinstance(costs, dict) else costs
    family_key = "diffusion" if target.is_diffusion else "llm"
    domain = bundle.card.get("domain", {}).get(family_key, {})
    trained = trained_gpus(domain, "xdit" if target.is_diffusion else "vllm")
    default_gpus = domain.get("gpus") or sorted(catalog.gpus)
    gpu_keys = _unique(catalog.resolve("gpu", g) for g in gpus) if gpus else default_gpus
    batches = _as_list(batch if batch is not None else max_num_seqs)
    configs, predictions, feasible = _sweep(
        target, gpu_keys, num_gpus=_as_list(num_gpus), batches=batches, precision=precision,
        input_tokens=input_tokens, output_tokens=output_tokens, steps=steps, resolution=resolution, frames=frames,
        ulysses_degree=None, ring_degree=None, catalog=catalog, extra_models=extra_models, predictor=bundle)
    first = configs.iloc[0].to_dict()
    _, latency = _energy_latency(target)
    demand = demand_tokens_per_sec
    if demand_rps is not None:
        demand = demand_rps if target.is_diffusion else demand_rps * float(first["avg_output_len"])
    decided = plan_fleet(target, configs=configs, predictions=predictions, feasible=feasible, demand=demand,
                         limit=limit, power_budget_kw=power_budget_kw, gpu_budget=gpu_budget, trained_gpus=trained,
                         confidence=confidence, allow_extrapolation=allow_extrapolation,
                         max_p90_itl_ms=max_p90_itl_ms, cost_inputs=cost_inputs, catalog=catalog)
    chosen, alternatives = decided["chosen"], decided["alternatives"]
    unit = "items/s" if target.is_diffusion else "tokens/s"
    reason = "" if chosen else _plan_reason(decided["ok"], decided["within"], decided["latency_column"], limit, unit,
                                            demand, power_budget_kw, gpu_budget, decided["capacity_column"])
    assumptions = _assumptions(target, first, user_precision=precision is not None,
                               user_tokens=input_tokens is not None or output_tokens is not None, bundle=bundle)
    assumptions.insert(0, "scaling: identical replicas of one deployment behind a load balancer; replicas = "
                          "ceil(demand / per-replica capacity at the chosen batch and confidence); fleet power = "
                          "replicas x predicted power at full load; energy per day = fleet power x 24 h (the costs "
                          "block counts the load profile, idle replicas, host power and PUE)")
    if chosen is not None and chosen.costs is not None:
        assumptions.extend(chosen.costs.assumptions)
    assumptions.extend(notes(chosen, alternatives, decided["excluded_gpus"], confidence))
    warnings = _unique(w for d in ([chosen] if chosen else []) + alternatives for w in d.prediction.warnings)
    return Plan(model_id=target.model_id, task=target.task_key, family=target.family,
                workload=_workload(target, first), demand_unit=unit, demand=demand,
                demand_requests_per_sec=demand_rps, latency_metric=latency, latency_limit=limit,
                power_budget_kw=power_budget_kw, gpu_budget=gpu_budget, gpus_considered=gpu_keys, chosen=chosen,
                alternatives=alternatives, reason=reason, assumptions=assumptions, warnings=warnings,
                confidence=confidence, excluded_gpus=decided["excluded_gpus"],
                closest_latency=decided["closest_latency"])


def _plan_reason(ok, within, latency, limit, unit, demand, power_budget_kw, gpu_budget, throughput) -> str:
    if ok.empty:
        return "no configuration fits in memory on the GPUs considered (see `joules-estimate` for the arithmetic)"
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
