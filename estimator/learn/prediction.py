"""Batch prediction: a frame of configurations -> the same rows plus end metrics, intervals and warnings.

A row that cannot be predicted (unknown name, impossible configuration, memory does not fit) gets empty
targets, ``status`` != "ok" and a ``reason``; it never aborts the frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import pandas as pd

from estimator.catalog.catalog import ArchitectureSpec, Catalog, TaskSpec, UnknownKeyError
from estimator.learn.card import Domain
from estimator.learn.family import DIFFUSION, FAMILIES, LLM, family_of
from estimator.learn.features import (
    DEFAULT_MAX_NUM_SEQS,
    default_parallelism,
    default_sequence_parallel,
    feature_rows,
    is_blank,
)
from estimator.learn.predictor import PredictorBundle, predict_end_metrics
from estimator.physics import memory
from estimator.validation import (
    BOUNDS,
    ImpossibleConfigurationError,
    InputError,
    check_number,
    check_parallelism,
    out_of_training_range,
)

LLM_OUTPUTS = LLM.outputs
DIFFUSION_OUTPUTS = DIFFUSION.outputs
#: physics-only outputs (nothing is learned or calibrated; no interval; TTFT checked in benchmarks/ttft.md)
PHYSICS_ONLY_OUTPUTS = ("ttft_physics_ms",)
#: interval of a derived quantity -> which calibrated residual it uses
INTERVAL_OF = {"tokens_per_sec_per_watt": "energy_per_token_joules", "items_per_sec": "batch_latency_s"}


class ConfigurationError(ValueError):
    """A configuration that cannot run; the message carries the arithmetic."""


@dataclass
class ResolvedRow:
    """One input row after name resolution and defaults, ready for the featurizer."""

    values: dict
    arch: ArchitectureSpec
    warnings: list[str]


def check_model_runs_task(model_id: str, arch: ArchitectureSpec, task_key: str, task: TaskSpec) -> None:
    """Raise :class:`ConfigurationError` when the model cannot serve the task (diffusion vs text, vision input)."""
    if (arch.kind == "diffusion") != (task.kind == "diffusion"):
        raise ConfigurationError(f"model {model_id} ({arch.kind}) cannot run task {task_key} ({task.kind}); "
                                 f"see `joules-estimate catalog list tasks`")
    if task.kind == "mllm" and arch.kind != "mllm":
        raise ConfigurationError(f"task {task_key} needs a multimodal model; {model_id} is text-only")


def _checked_numbers(values: dict) -> None:
    """Every numeric input present, checked against :data:`estimator.validation.BOUNDS` (finite, whole where it
    must be, in range) and turned into a float, in place; raises :class:`InputError` naming the column."""
    for name in BOUNDS:
        if name in values:
            values[name] = float(check_number(name, values[name]))


def _check_layout(values: dict, arch: ArchitectureSpec, model_id: str) -> None:
    """vLLM's parallel-layout rules (:func:`estimator.validation.check_parallelism`) for an LLM row."""
    check_parallelism(num_gpus=int(values["num_gpus"]), tensor_parallel=int(values["tensor_parallel"]),
                      expert_parallel=int(values["expert_parallel"]), data_parallel=int(values["data_parallel"]),
                      num_attention_heads=arch.num_attention_heads, num_kv_heads=arch.num_kv_heads,
                      num_experts=arch.num_experts, model=model_id)


def _domain_warnings(domain: Domain | None, model_id: str, gpu_key: str, engine: str) -> list[str]:
    """Warnings for a model, GPU or GPU x engine absent from the family's training domain."""
    if domain is None:
        return []
    warnings = []
    if model_id not in domain.models:
        warnings.append("model absent from training data (extrapolating from its architecture)")
    if gpu_key not in domain.gpus:
        warnings.append(f"GPU {gpu_key} absent from training data (extrapolating from its datasheet)")
    elif f"{gpu_key}|{engine}" not in domain.gpu_engines:
        warnings.append(f"GPU {gpu_key} measured only with other engines than {engine} (extrapolating)")
    return warnings


#: optional input column: "profile" when a caller filled avg_output_len from the output-length profile itself
#: (estimator.serve.planning.llm_row), so the row still takes the task-profile intervals
OUTPUT_LENGTH_SOURCE = "avg_output_len_source"
#: attention data parallelism is one measured model in the training data, with a mechanism the physics does not
#: model (ML.ENERGY v3: Qwen3-Coder-480B-FP8 at DP=EP=8 used 2.2-5.6x the J/token of its BF16 expert-parallel twin,
#: "load imbalance and stragglers"; see benchmarks/accuracy.md, geometric bias per held-out model)
ATTENTION_DP_WARNING = ("attention data parallel (data_parallel > 1): one model measured in this layout, where "
                        "stragglers cost 2-6x the energy of expert parallelism; held out, the predictor was about "
                        "3x too low for it: read energy as a lower bound")


def _fill_diffusion_defaults(values: dict, num_gpus: int) -> None:
    values.setdefault("batch_size", 1)
    ulysses, ring = default_sequence_parallel(num_gpus, values.get("ulysses_degree"), values.get("ring_degree"))
    values.setdefault("ulysses_degree", ulysses)
    values.setdefault("ring_degree", ring)
    if int(values["ulysses_degree"]) * int(values["ring_degree"]) != num_gpus:
        raise ConfigurationError(f"ulysses_degree x ring_degree = {int(values['ulysses_degree'])} x "
                                 f"{int(values['ring_degree'])} must equal num_gpus = {num_gpus}")


def _fill_llm_defaults(values: dict, arch: ArchitectureSpec, catalog: Catalog, num_gpus: int) -> None:
    """Engine defaults for the LLM inputs the row leaves blank; token counts from the task profile (looked up only
    when missing)."""
    values.setdefault("max_num_seqs", DEFAULT_MAX_NUM_SEQS)
    values.setdefault("weight_precision", arch.native_precision)
    tp, ep, dp = default_parallelism(arch, num_gpus)
    values.setdefault("tensor_parallel", tp)
    values.setdefault("expert_parallel", ep)
    values.setdefault("data_parallel", dp)
    if "avg_output_len" not in values:
        values["avg_output_len"] = catalog.profile_output_tokens(values["model_id"], values["task"])[0]
    if "avg_input_len" not in values:
        values["avg_input_len"] = catalog.profile_input_tokens(values["task"], arch)[0]
    values.setdefault("kv_cache_dtype", "auto")
    if str(values["kv_cache_dtype"]) not in memory.KV_DTYPE_BYTES:
        raise ConfigurationError(f"unknown kv_cache_dtype {values['kv_cache_dtype']!r}; known: "
                                 f"{', '.join(memory.KV_DTYPE_BYTES)}")
    if values["weight_precision"] not in memory.BYTES_PER_PARAM:
        raise ConfigurationError(f"unknown precision {values['weight_precision']!r}; known: "
                                 f"{', '.join(memory.BYTES_PER_PARAM)}")


def resolve_row(raw: dict, catalog: Catalog, extra_models: dict[str, ArchitectureSpec],
                bundle: PredictorBundle) -> ResolvedRow:
    """Resolve names, fill defaults the way the engine would, check feasibility; raise on impossibility."""
    values = {k: v for k, v in raw.items() if not is_blank(v)}
    for name in ("model_id", "task", "gpu_model", "num_gpus"):
        if name not in values:
            raise ConfigurationError(f"missing {name}")
    model_id, arch = catalog.resolve_model(str(values["model_id"]), extra_models)
    task_key = catalog.resolve("task", str(values["task"]))
    task = catalog.tasks[task_key]
    gpu_key = catalog.resolve("gpu", str(values["gpu_model"]))
    values.update(model_id=model_id, task=task_key, gpu_model=gpu_key)
    _checked_numbers(values)
    check_model_runs_task(model_id, arch, task_key, task)
    num_gpus = int(values["num_gpus"])
    family = family_of(arch.kind)
    domain = bundle.card.domain_of(family.name)
    engine = str(values.get("engine", family.default_engine))
    warnings = _domain_warnings(domain, model_id, gpu_key, engine)
    if family is DIFFUSION:
        _fill_diffusion_defaults(values, num_gpus)
    else:
        _fill_llm_defaults(values, arch, catalog, num_gpus)
        _check_layout(values, arch, model_id)
        if domain is not None and values["weight_precision"] not in domain.precisions:
            warnings.append(f"precision {values['weight_precision']} absent from training data")
        if int(values["data_parallel"]) > 1:
            warnings.append(ATTENTION_DP_WARNING)
    if domain is not None:
        warnings += out_of_training_range(values, domain)
    return ResolvedRow(values, arch, warnings)


def memory_reason(arch: ArchitectureSpec, values: dict, catalog: Catalog) -> str | None:
    """None when the configuration fits (the one rule of ``estimator/physics/memory.py``: vLLM's KV pool must hold
    one sequence of input + output tokens); otherwise the arithmetic of why it does not."""
    gpu = catalog.gpus[values["gpu_model"]]
    num_gpus = int(values["num_gpus"])
    if arch.kind == "diffusion":
        fit = memory.diffusion_fit(arch, gpu)
        if not fit.fits:
            return (f"does not fit: {fit.weights_gb:.1f} GB of weights per GPU (sequence parallel replicates the "
                    f"pipeline) > {_utilization(gpu)} = {fit.usable_gb:.1f} GB")
        return None
    precision = values["weight_precision"]
    fit = memory.llm_fit_full_context(arch, gpu, precision, num_gpus, int(values["data_parallel"]),
                                      values["avg_input_len"], values["avg_output_len"],
                                      tensor_parallel=int(values["tensor_parallel"]),
                                      max_num_seqs=float(values["max_num_seqs"]),
                                      kv_cache_dtype=str(values.get("kv_cache_dtype", "auto")))
    if not fit.fits:
        return (f"does not fit: {num_gpus} x {gpu_short(gpu)} gives {_utilization(gpu)} = "
                f"{memory.usable_memory_gb(gpu):.1f} GB per GPU; the {precision} weights take "
                f"{fit.weight_bytes_per_gpu / memory.BILLION:.1f} GB per GPU and vLLM's activation peak plus "
                f"non-torch memory {fit.activation_and_other_bytes_per_gpu / memory.BILLION:.1f} GB, leaving "
                f"{max(fit.pool_per_gpu_bytes, 0) / memory.BILLION:.1f} GB for the KV cache, less than one "
                f"{fit.context_tokens:.0f}-token sequence ({fit.sequence_gb:.2f} GB); use more GPUs or a smaller "
                f"precision")
    return None


def _utilization(gpu) -> str:
    """'0.9 x 85.5 GB (the memory the driver reports)' for a GPU: the share of memory vLLM may use."""
    return (f"{memory.GPU_MEMORY_UTILIZATION:g} x {memory.usable_memory_bytes(gpu) / memory.BILLION:.1f} GB "
            f"(the memory the driver reports)")


def gpu_short(gpu) -> str:
    return gpu.display_name.replace("NVIDIA ", "")


def predict_frame(configs: pd.DataFrame, bundle: PredictorBundle, catalog: Catalog,
                  extra_models: dict[str, ArchitectureSpec] | None = None) -> pd.DataFrame:
    """Predict every row of ``configs`` (ML.ENERGY column names; blanks mean 'as the engine would').

    Returns the input rows in order plus predictions (``<metric>``, ``<metric>_p10``, ``<metric>_p90``),
    ``status`` ('ok' or 'error'), ``reason`` and ``warnings`` ('; '-joined). ``_p10``/``_p90`` bound an
    80%-coverage interval: quantiles of leave-one-model-out log residuals whose tails were widened per family until
    80% of each held-out model's rows fall inside (``card.interval_tails``), not the plain p10/p90 of residuals.
    """
    if not isinstance(configs, pd.DataFrame):
        raise InputError(f"configs must be a pandas DataFrame of configurations, got {type(configs).__name__}")
    records = configs.to_dict("records")
    first, inverse = distinct_rows(records)
    if len(first) == len(records):
        out = _predict_rows(configs, records, bundle, catalog, extra_models or {})
    else:  # a repeated row is predicted once (every step is a function of the row's values)
        out = _predict_rows(configs.iloc[first], [records[p] for p in first], bundle, catalog, extra_models or {})
        out = out.iloc[inverse].reset_index(drop=True)
    return bundle.calibrate_output(out, configs, catalog, extra_models)


def distinct_rows(records: list[dict]) -> tuple[list[int], np.ndarray]:
    """(position of the first of each distinct row, index of each row's distinct row in that list).

    Rows are equal only when every cell has the same type and value (floats bit for bit, so NaN equals NaN and
    -0.0 differs from 0.0); a row holding anything but strings, integers, floats, booleans (Python or numpy) or
    None equals no other row.
    """
    first: list[int] = []
    seen: dict[tuple, int] = {}
    inverse = np.empty(len(records), dtype=np.int64)
    for position, raw in enumerate(records):
        key = _row_key(raw, position)
        index = seen.setdefault(key, len(first))
        if index == len(first):
            first.append(position)
        inverse[position] = index
    return first, inverse


#: cell types compared by value in distinct_rows (floats by their bits); the type is part of the comparison
_VALUE_TYPES = frozenset({str, int, bool, type(None), np.str_, np.int64, np.int32, np.bool_})
_FLOAT_TYPES = frozenset({float, np.float64, np.float32})


def _row_key(raw: dict, position: int) -> tuple:
    """The cells' types and values; a float that equals another float without the same bits (0.0 and -0.0, NaNs)
    by its bits. Every record of one frame has the same columns in the same order."""
    values = list(raw.values())
    for index, value in enumerate(values):
        kind = type(value)
        if kind in _FLOAT_TYPES:
            if value == 0.0 or value != value:
                values[index] = struct.pack("<d", value)
        elif kind not in _VALUE_TYPES:
            return ("row", position)
    return tuple(map(type, raw.values())), tuple(values)


def _predict_rows(configs: pd.DataFrame, records: list[dict], bundle: PredictorBundle, catalog: Catalog,
                  extra_models: dict[str, ArchitectureSpec]) -> pd.DataFrame:
    """:func:`predict_frame` before calibration, for ``configs`` and the same rows as dicts (``records``)."""
    resolved: dict[int, ResolvedRow] = {}
    status = ["ok"] * len(configs)
    reasons = [""] * len(configs)
    for position, raw in enumerate(records):
        try:
            row = resolve_row(raw, catalog, extra_models, bundle)
            why = memory_reason(row.arch, row.values, catalog)
            if why:
                raise ConfigurationError(why)
            resolved[position] = row
        except (ConfigurationError, UnknownKeyError, InputError, ImpossibleConfigurationError) as exc:
            status[position], reasons[position] = "error", str(exc)
    out = configs.reset_index(drop=True).copy()
    for column in (*LLM.outputs, *DIFFUSION.outputs):
        for suffix in ("", "_p10", "_p90"):
            out[column + suffix] = np.nan
    out["ttft_physics_ms"] = np.nan
    warnings = [""] * len(configs)
    for position, row in resolved.items():
        warnings[position] = "; ".join(row.warnings)
    for family in FAMILIES:
        positions = [p for p, r in resolved.items() if family_of(r.arch.kind) is family]
        if not positions:
            continue
        values = [resolved[p].values for p in positions]
        frame = pd.DataFrame(values, index=positions)
        features = pd.DataFrame(feature_rows(values, catalog, extra_models), index=positions)
        profile_length = np.array([is_blank(records[p].get("avg_output_len"))
                                   or records[p].get(OUTPUT_LENGTH_SOURCE) == "profile" for p in positions])
        _fill(out, positions, frame, features, bundle, family.name, profile_length)
        if family is LLM:
            # TTFT from prefill physics alone (labelled "physics only": not learned; benchmarks/ttft.md checks it)
            _set_rows(out, "ttft_physics_ms", positions, features["ttft_physics_s"].to_numpy(float) * 1e3)
            for p, feasible, batch in zip(positions, features["max_feasible_batch"], frame["max_num_seqs"],
                                          strict=True):
                if batch > feasible:
                    note = (f"max_num_seqs {int(batch)} exceeds the ~{int(feasible)} sequences whose KV cache "
                            f"fits, so predicted at the batch that fits")
                    warnings[p] = "; ".join(filter(None, [warnings[p], note]))
    out["status"], out["reason"], out["warnings"] = status, reasons, warnings
    return out


def _fill(out: pd.DataFrame, positions: list[int], frame: pd.DataFrame, features: pd.DataFrame,
          bundle: PredictorBundle, family: str, profile_length: np.ndarray | None = None) -> None:
    """Write predictions and p10/p90 intervals. Rows whose output length came from the task profile
    (``profile_length`` True) take the task-profile intervals, which carry the output-length uncertainty."""
    derived = predict_end_metrics(bundle.regressors, features, frame, family)
    given = bundle.intervals.get(family, {})
    profiled = bundle.card.intervals_task_profile.get(family, given)
    use_profile = np.zeros(len(positions), dtype=bool) if profile_length is None else profile_length
    for name, values in derived.items():
        key = INTERVAL_OF.get(name, name)
        bounds = np.array([profiled.get(key, given.get(key, (0.0, 0.0))) if use else given.get(key, (0.0, 0.0))
                           for use in use_profile], dtype=float).reshape(len(positions), 2)
        q10, q90 = bounds[:, 0], bounds[:, 1]
        if name in INTERVAL_OF:  # a reciprocal quantity: the interval flips
            q10, q90 = -q90, -q10
        _set_rows(out, name, positions, values)
        _set_rows(out, name + "_p10", positions, values * np.exp(q10))
        _set_rows(out, name + "_p90", positions, values * np.exp(q90))


def _set_rows(out: pd.DataFrame, column: str, positions: list[int], values: np.ndarray) -> None:
    """``out.loc[positions, column] = values`` for a float column of a RangeIndex frame, without ``.loc``'s
    per-call indexing cost (the frontier writes ~20 columns)."""
    filled = out[column].to_numpy(dtype=float, copy=True)
    filled[positions] = values
    out[column] = filled
