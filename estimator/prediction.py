"""Batch prediction: a frame of configurations -> the same rows plus end metrics, intervals and warnings.

A row that cannot be predicted (unknown name, impossible configuration, memory does not fit) gets empty
targets, ``status`` != "ok" and a ``reason``; it never aborts the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from estimator import physics
from estimator import physics_serving as serving
from estimator.catalog import ArchitectureSpec, Catalog, TaskSpec, UnknownKeyError
from estimator.features import default_parallelism, featurize, is_blank, kv_pool_and_feasible_batch
from estimator.predictor import PredictorBundle, predict_end_metrics

LLM_OUTPUTS = ("energy_per_token_joules", "energy_per_request_joules", "avg_power_watts",
               "output_throughput_tokens_per_sec", "median_itl_ms", "p90_itl_ms", "tokens_per_sec_per_watt")
#: physics-only outputs (no run records them yet, so nothing is learned or calibrated; no interval)
PHYSICS_ONLY_OUTPUTS = ("ttft_physics_ms",)
DIFFUSION_OUTPUTS = ("energy_per_item_joules", "batch_latency_s", "avg_power_watts", "items_per_sec")
#: interval of a derived quantity -> which calibrated residual it uses
INTERVAL_OF = {"tokens_per_sec_per_watt": "energy_per_token_joules", "items_per_sec": "batch_latency_s"}
POSITIVE_INPUTS = ("num_gpus", "max_num_seqs", "batch_size", "avg_output_len", "avg_input_len",
                   "inference_steps", "image_height", "image_width", "video_height", "video_width", "num_frames",
                   "tensor_parallel", "expert_parallel", "data_parallel", "ulysses_degree", "ring_degree")


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


def resolve_row(raw: dict, catalog: Catalog, extra_models: dict[str, ArchitectureSpec],
                bundle: PredictorBundle) -> ResolvedRow:
    """Resolve names, fill defaults the way the engine would, check feasibility; raise on impossibility."""
    values = {k: v for k, v in raw.items() if not is_blank(v)}
    for name in ("model_id", "task", "gpu_model", "num_gpus"):
        if name not in values:
            raise ConfigurationError(f"missing {name}")
    model_id = str(values["model_id"])
    arch = extra_models.get(model_id)
    if arch is None:
        model_id = catalog.resolve("model", model_id)
        arch = catalog.models[model_id]
    task_key = catalog.resolve("task", str(values["task"]))
    task = catalog.tasks[task_key]
    gpu_key = catalog.resolve("gpu", str(values["gpu_model"]))
    values.update(model_id=model_id, task=task_key, gpu_model=gpu_key)
    for name in POSITIVE_INPUTS:
        if name in values:
            try:
                number = float(values[name])
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"{name}={values[name]!r} is not a number") from exc
            if not number > 0:
                raise ConfigurationError(f"{name} must be positive, got {values[name]}")
            values[name] = number
    check_model_runs_task(model_id, arch, task_key, task)
    num_gpus = int(values["num_gpus"])
    warnings: list[str] = []
    family = "diffusion" if arch.kind == "diffusion" else "llm"
    domain = bundle.card.get("domain", {}).get(family, {})
    if model_id not in domain.get("models", [model_id]):
        warnings.append("model absent from training data (extrapolating from its architecture)")
    engine = str(values.get("engine", "xdit" if family == "diffusion" else "vllm"))
    if gpu_key not in domain.get("gpus", [gpu_key]):
        warnings.append(f"GPU {gpu_key} absent from training data (extrapolating from its datasheet)")
    elif f"{gpu_key}|{engine}" not in domain.get("gpu_engines", [f"{gpu_key}|{engine}"]):
        warnings.append(f"GPU {gpu_key} measured only with other engines than {engine} (extrapolating)")
    if family == "diffusion":
        values.setdefault("batch_size", 1)
        batch = values["batch_size"]
        if "ulysses_degree" not in values and "ring_degree" not in values:
            values["ulysses_degree"], values["ring_degree"] = num_gpus, 1
        values.setdefault("ulysses_degree", num_gpus // int(values.get("ring_degree", 1)))
        values.setdefault("ring_degree", num_gpus // int(values["ulysses_degree"]))
        if int(values["ulysses_degree"]) * int(values["ring_degree"]) != num_gpus:
            raise ConfigurationError(f"ulysses_degree x ring_degree = {int(values['ulysses_degree'])} x "
                                     f"{int(values['ring_degree'])} must equal num_gpus = {num_gpus}")
    else:
        values.setdefault("max_num_seqs", 128)
        batch = values["max_num_seqs"]
        values.setdefault("weight_precision", arch.native_precision)
        tp, ep, dp = default_parallelism(arch, num_gpus)
        values.setdefault("tensor_parallel", tp)
        values.setdefault("expert_parallel", ep)
        values.setdefault("data_parallel", dp)
        values.setdefault("avg_output_len", task.mean_output_tokens)
        values.setdefault("avg_input_len", task.mean_input_tokens)
        values.setdefault("kv_cache_dtype", "auto")
        if str(values["kv_cache_dtype"]) not in serving.KV_DTYPE_BYTES:
            raise ConfigurationError(f"unknown kv_cache_dtype {values['kv_cache_dtype']!r}; known: "
                                     f"{', '.join(serving.KV_DTYPE_BYTES)}")
        if values["weight_precision"] not in physics.BYTES_PER_PARAM:
            raise ConfigurationError(f"unknown precision {values['weight_precision']!r}; known: "
                                     f"{', '.join(physics.BYTES_PER_PARAM)}")
        if values["weight_precision"] not in domain.get("precisions", [values["weight_precision"]]):
            warnings.append(f"precision {values['weight_precision']} absent from training data")
    if batch < domain.get("batch_min", batch) or batch > domain.get("batch_max", batch):
        warnings.append(f"batch {int(batch)} outside the measured range {domain['batch_min']}-{domain['batch_max']}")
    return ResolvedRow(values, arch, warnings)


def memory_reason(arch: ArchitectureSpec, values: dict, catalog: Catalog) -> str | None:
    """None when the configuration fits; otherwise the arithmetic of why it does not.

    One rule for LLMs, vLLM's (:func:`estimator.features.kv_pool_and_feasible_batch`): 0.9 x the memory the driver
    reports, minus weights, the profiling pass's activation peak and non-torch memory, must hold one sequence of
    input + output tokens.
    """
    gpu = catalog.gpus[values["gpu_model"]]
    num_gpus = int(values["num_gpus"])
    usable_gb = serving.GPU_MEMORY_UTILIZATION * serving.usable_memory_bytes(gpu) / physics.BILLION
    if arch.kind == "diffusion":
        weights_gb = physics.weight_bytes_total(arch, "bfloat16") / physics.BILLION
        if weights_gb >= usable_gb:
            return (f"does not fit: {weights_gb:.1f} GB of weights per GPU (sequence parallel replicates the "
                    f"pipeline) > 0.9 x {gpu_short(gpu)} memory = {usable_gb:.1f} GB")
        return None
    precision = values["weight_precision"]
    data_parallel = int(values["data_parallel"])
    weights = physics.weight_bytes_per_gpu(arch, precision, num_gpus, data_parallel)
    context = values["avg_input_len"] + values["avg_output_len"]
    kv_dtype = str(values.get("kv_cache_dtype", "auto"))
    pool, feasible = kv_pool_and_feasible_batch(
        arch, gpu, weight_bytes_per_gpu=weights, num_gpus=num_gpus, tensor_parallel=int(values["tensor_parallel"]),
        attention_dp=data_parallel > 1, max_num_seqs=float(values["max_num_seqs"]), context_tokens=context,
        kv_cache_dtype=kv_dtype)
    if feasible < 1.0:
        per_seq_gb = serving.kv_bytes_per_sequence_at(arch, context, kv_dtype) / physics.BILLION
        return (f"does not fit: {num_gpus} x {gpu_short(gpu)} gives 0.9 x "
                f"{serving.usable_memory_bytes(gpu) / physics.BILLION:.1f} GB = {usable_gb:.1f} GB per GPU; the "
                f"{precision} weights take {weights / physics.BILLION:.1f} GB per GPU and activations plus non-torch "
                f"memory {usable_gb - weights / physics.BILLION - pool / physics.BILLION:.1f} GB, leaving "
                f"{max(pool, 0) / physics.BILLION:.1f} GB for the KV cache, less than one {context:.0f}-token "
                f"sequence ({per_seq_gb:.2f} GB); use more GPUs or a smaller precision")
    return None


def gpu_short(gpu) -> str:
    return gpu.display_name.replace("NVIDIA ", "")


def predict_frame(configs: pd.DataFrame, bundle: PredictorBundle, catalog: Catalog,
                  extra_models: dict[str, ArchitectureSpec] | None = None) -> pd.DataFrame:
    """Predict every row of ``configs`` (ML.ENERGY column names; blanks mean 'as the engine would').

    Returns the input rows in order plus predictions (``<metric>``, ``<metric>_p10``, ``<metric>_p90``),
    ``status`` ('ok' or 'error'), ``reason`` and ``warnings`` ('; '-joined).
    """
    extra_models = extra_models or {}
    resolved: dict[int, ResolvedRow] = {}
    status = ["ok"] * len(configs)
    reasons = [""] * len(configs)
    records = configs.to_dict("records")
    for position, raw in enumerate(records):
        try:
            row = resolve_row(raw, catalog, extra_models, bundle)
            why = memory_reason(row.arch, row.values, catalog)
            if why:
                raise ConfigurationError(why)
            resolved[position] = row
        except (ConfigurationError, UnknownKeyError) as exc:
            status[position], reasons[position] = "error", str(exc)
    out = configs.reset_index(drop=True).copy()
    for column in (*LLM_OUTPUTS, *DIFFUSION_OUTPUTS):
        for suffix in ("", "_p10", "_p90"):
            out[column + suffix] = np.nan
    out["ttft_physics_ms"] = np.nan
    warnings = [""] * len(configs)
    for position, row in resolved.items():
        warnings[position] = "; ".join(row.warnings)
    for family in ("llm", "diffusion"):
        positions = [p for p, r in resolved.items() if (r.arch.kind == "diffusion") == (family == "diffusion")]
        if not positions:
            continue
        frame = pd.DataFrame([resolved[p].values for p in positions], index=positions)
        features = featurize(frame, catalog, extra_models)
        profile_length = np.array([is_blank(records[p].get("avg_output_len")) for p in positions])
        _fill(out, positions, frame, features, bundle, family, profile_length)
        if family == "llm":
            # TTFT from prefill physics alone (labelled "physics only": the data has no TTFT to learn from)
            out.loc[positions, "ttft_physics_ms"] = features["ttft_physics_s"].to_numpy(float) * 1e3
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
    profiled = bundle.card.get("intervals_task_profile", {}).get(family, given)
    use_profile = np.zeros(len(positions), dtype=bool) if profile_length is None else profile_length
    for name, values in derived.items():
        out.loc[positions, name] = values
        bounds = np.array([profiled.get(INTERVAL_OF.get(name, name), given.get(INTERVAL_OF.get(name, name), (0, 0)))
                           if use else given.get(INTERVAL_OF.get(name, name), (0.0, 0.0)) for use in use_profile],
                          dtype=float).reshape(len(positions), 2)
        q10, q90 = bounds[:, 0], bounds[:, 1]
        if name in INTERVAL_OF:  # a reciprocal quantity: the interval flips
            q10, q90 = -q90, -q10
        out.loc[positions, name + "_p10"] = values * np.exp(q10)
        out.loc[positions, name + "_p90"] = values * np.exp(q90)
