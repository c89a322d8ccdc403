"""Frontier sweeps, the minimum-energy configuration under a latency limit, and fleet sizing.

Named steps, each returning one thing:

1. :func:`resolve_target` - model, task and family from names (aliases allowed; close matches on a miss).
2. :func:`sweep_frame` - the configurations an operator would try: GPU counts x batch sizes (ML.ENERGY's sweep
   values) with the parallelism the engine picks (:func:`estimator.learn.features.default_parallelism`).
3. :func:`feasible_mask` - predicted, and the batch fits in memory (rows whose ``max_num_seqs`` exceeds the
   sequences whose KV cache fits are dropped: the engine would run them at a smaller batch).
4. :func:`pareto_front` / :func:`min_energy` - the time-energy frontier and the chosen points.
5. :func:`size_fleet` - replicas of one configuration for a demand, within an optional power/GPU budget.

Everything here works on DataFrames; :mod:`estimator.serve.api` turns the results into :mod:`estimator.schema` objects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from estimator.catalog.catalog import ArchitectureSpec, Catalog, TaskSpec
from estimator.learn.family import Family, family_of
from estimator.learn.features import default_parallelism, default_sequence_parallel, featurize
from estimator.learn.prediction import OUTPUT_LENGTH_SOURCE, check_model_runs_task
from estimator.validation import InputError, check_number

#: max_num_seqs values of the ML.ENERGY v3 LLM sweeps
LLM_BATCHES = (8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
#: batch sizes of the ML.ENERGY v3 diffusion sweeps
DIFFUSION_BATCHES = (1, 2, 4, 8, 16, 32)
GPU_COUNTS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Target:
    """A resolved model x task: exact catalog keys and their specs."""

    model_id: str
    arch: ArchitectureSpec
    task_key: str
    task: TaskSpec
    #: mean output tokens when the user gives none, and its level ('model', 'publisher' or 'task'; see
    #: estimator/catalog/output_lengths.py); 0 for diffusion
    profile_output_tokens: float = 0.0
    profile_output_level: str = "task"
    #: mean prompt tokens when the user gives none, and its level ('model' or 'task'; Catalog.profile_input_tokens);
    #: 0 for diffusion
    profile_input_tokens: float = 0.0
    profile_input_level: str = "task"

    @property
    def family(self) -> str:
        """'llm', 'mllm' or 'diffusion' (the task's kind)."""
        return self.task.kind

    @property
    def predictor_family(self) -> Family:
        """The predictor family (LLM for 'llm' and 'mllm' tasks, or diffusion)."""
        return family_of(self.task.kind)

    @property
    def is_diffusion(self) -> bool:
        return self.task.kind == "diffusion"


def resolve_target(model: str, task: str, catalog: Catalog,
                   extra_models: dict[str, ArchitectureSpec] | None = None) -> Target:
    """Resolve a model and a task name; raise ``ValueError`` when they cannot go together.

    Raises:
        UnknownKeyError: an unknown name (the message lists close matches).
        ValueError: a diffusion model with a text task or the reverse, or a vision task with a text-only model.
    """
    model_id, arch = catalog.resolve_model(model, extra_models)
    task_key = catalog.resolve("task", task)
    spec = catalog.tasks[task_key]
    check_model_runs_task(model_id, arch, task_key, spec)
    if spec.kind == "diffusion":
        return Target(model_id, arch, task_key, spec)
    tokens, level = catalog.profile_output_tokens(model_id, task_key)
    return Target(model_id, arch, task_key, spec, tokens, level, *catalog.profile_input_tokens(task_key, arch))


def input_tokens_note(target: Target) -> str:
    """Where the default prompt length of a target comes from, for the assumptions a prediction prints."""
    if target.profile_input_level == "model":
        return f"the task's mean with this model's {target.arch.image_tokens_per_image} tokens per image"
    return "the task's mean"


def parse_resolution(text: str) -> tuple[int, int]:
    """``'1024x768'`` -> (height 1024, width 768) in pixels; ``'720p'`` is not accepted (say both sides)."""
    if not isinstance(text, str):
        raise InputError(f"resolution must be text HEIGHTxWIDTH in pixels, e.g. '1024x1024', got {text!r}")
    parts = text.lower().replace("*", "x").split("x")
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"resolution {text!r} is not HEIGHTxWIDTH in whole pixels, e.g. 1024x1024") from None
    try:
        return check_number("image_height", height), check_number("image_width", width)
    except InputError as exc:
        raise InputError(f"resolution {text!r}: {exc}") from None


def llm_row(target: Target, gpu_model: str, num_gpus: int, max_num_seqs: int, *, precision: str | None = None,
            input_tokens: float | None = None, output_tokens: float | None = None) -> dict:
    """One LLM/MLLM configuration with every default filled as the engine (vLLM 0.11) would."""
    tp, ep, dp = default_parallelism(target.arch, num_gpus)
    return {"model_id": target.model_id, "task": target.task_key, "gpu_model": gpu_model, "num_gpus": num_gpus,
            "weight_precision": precision or target.arch.native_precision, "max_num_seqs": max_num_seqs,
            "tensor_parallel": tp, "expert_parallel": ep, "data_parallel": dp,
            "avg_input_len": float(input_tokens or target.profile_input_tokens),
            "avg_output_len": float(output_tokens or target.profile_output_tokens or target.task.mean_output_tokens),
            # the prediction takes the task-profile intervals (output-length uncertainty) unless the user gave it
            OUTPUT_LENGTH_SOURCE: "given" if output_tokens else "profile"}


def diffusion_row(target: Target, gpu_model: str, num_gpus: int, batch_size: int, *, steps: int | None = None,
                  height: int | None = None, width: int | None = None, frames: int | None = None,
                  ulysses_degree: int | None = None, ring_degree: int | None = None) -> dict | None:
    """One diffusion configuration (xDiT); None when the Ulysses x Ring degrees cannot make ``num_gpus``."""
    arch = target.arch
    ulysses, ring = default_sequence_parallel(num_gpus, ulysses_degree, ring_degree)
    if ulysses < 1 or ring < 1 or ulysses * ring != num_gpus:
        return None
    row = {"model_id": target.model_id, "task": target.task_key, "gpu_model": gpu_model, "num_gpus": num_gpus,
           "batch_size": batch_size, "inference_steps": steps or arch.default_steps,
           "ulysses_degree": ulysses, "ring_degree": ring}
    height, width = height or arch.default_height, width or arch.default_width
    if arch.modality == "text-to-video":
        row.update(video_height=height, video_width=width, num_frames=frames or arch.default_frames or 1)
    else:
        row.update(image_height=height, image_width=width)
    return row


def sweep_frame(target: Target, gpu_models: Sequence[str], *, num_gpus: Sequence[int] | None = None,
                batches: Sequence[int] | None = None, precision: str | None = None,
                input_tokens: float | None = None, output_tokens: float | None = None, steps: int | None = None,
                height: int | None = None, width: int | None = None, frames: int | None = None,
                ulysses_degree: int | None = None, ring_degree: int | None = None) -> pd.DataFrame:
    """Every configuration to try: GPU type x GPU count x batch (``max_num_seqs`` or diffusion ``batch_size``).

    Args:
        target: the resolved model and task.
        gpu_models: exact GPU catalog keys.
        num_gpus: GPU counts per replica (default 1, 2, 4, 8).
        batches: batch sizes (default :data:`LLM_BATCHES` or :data:`DIFFUSION_BATCHES`).
        precision, input_tokens, output_tokens: LLM workload and weights (default: native precision, task profile).
        steps, height, width, frames, ulysses_degree, ring_degree: diffusion workload and sequence parallelism
            (default: the model's defaults; Ulysses degree = GPU count).
    """
    counts = list(num_gpus or GPU_COUNTS)
    rows: list[dict] = []
    for gpu in gpu_models:
        for count in counts:
            if target.is_diffusion:
                for batch in batches or DIFFUSION_BATCHES:
                    row = diffusion_row(target, gpu, count, batch, steps=steps, height=height, width=width,
                                        frames=frames, ulysses_degree=ulysses_degree, ring_degree=ring_degree)
                    if row is not None:
                        rows.append(row)
            else:
                rows.extend(llm_row(target, gpu, count, batch, precision=precision, input_tokens=input_tokens,
                                    output_tokens=output_tokens) for batch in batches or LLM_BATCHES)
    return pd.DataFrame(rows)


def feasible_mask(configs: pd.DataFrame, predictions: pd.DataFrame, catalog: Catalog,
                  extra_models: dict[str, ArchitectureSpec] | None = None) -> np.ndarray:
    """True where the row was predicted (``status == 'ok'``) and, for LLMs, its ``max_num_seqs`` fits in memory.

    The memory check uses the featurizer's ``max_feasible_batch`` (sequences whose KV cache fits), the same
    number behind ``predict_frame``'s "exceeds the ~N sequences" warning.
    """
    ok = predictions["status"].eq("ok").to_numpy()
    if "max_num_seqs" not in configs or not ok.any():
        return ok
    llm = ok & configs["max_num_seqs"].notna().to_numpy()
    if llm.any():
        subset = configs[llm].copy()
        features = featurize(subset, catalog, extra_models)
        fits = subset["max_num_seqs"].to_numpy(float) <= features["max_feasible_batch"].to_numpy(float)
        ok = ok.copy()
        ok[np.flatnonzero(llm)] = fits
    return ok


def pareto_front(frame: pd.DataFrame, energy: str, latency: str) -> list:
    """Index labels of the rows no other row beats in both ``energy`` and ``latency`` (lowest latency first)."""
    ordered = frame.sort_values([latency, energy], kind="stable")
    best = math.inf
    keep = []
    for label, value in zip(ordered.index, ordered[energy].to_numpy(float), strict=True):
        if value < best * (1 - 1e-9):
            keep.append(label)
            best = value
    return keep


def min_energy(frame: pd.DataFrame, energy: str, latency: str, limit: float | None = None):
    """Index label of the lowest-energy row (within ``latency <= limit`` when given); None when none qualifies.

    Ties go to the lower latency, then to fewer GPUs.
    """
    candidates = frame if limit is None else frame[frame[latency] <= limit]
    if candidates.empty:
        return None
    return candidates.sort_values([energy, latency, "num_gpus"], kind="stable").index[0]


def size_fleet(frame: pd.DataFrame, *, throughput: str, demand: float | None = None,
               power_budget_watts: float | None = None, gpu_budget: int | None = None) -> pd.DataFrame:
    """Replicas of each configuration (row) needed for ``demand``, or that a budget allows.

    With a demand: ``replicas = ceil(demand / throughput)``; rows beyond a power or GPU budget are dropped.
    With only budgets: the most replicas the budgets allow, and the demand they serve. Power is the fleet's GPU
    power at the predicted operating point (replicas x ``avg_power_watts``): a replica is assumed to run at its
    predicted load; idle power, CPUs, network and cooling (PUE) are not modelled.

    Args:
        frame: predictions (``num_gpus``, ``avg_power_watts`` and ``throughput`` columns, with ``_p10``/``_p90``).
        throughput: per-replica capacity column (tokens/s or items/s).
        demand: tokens/s or items/s to serve.
        power_budget_watts: fleet GPU power limit in W.
        gpu_budget: fleet GPU count limit.

    Returns:
        The feasible rows plus ``replicas``, ``total_gpus``, ``capacity_total``, ``demand_served``,
        ``fleet_power_watts`` (and ``_p10``/``_p90``).
    """
    if demand is None and power_budget_watts is None and gpu_budget is None:
        raise ValueError("give a demand (requests/s or tokens/s) or a budget (power or GPUs)")
    capacity = frame[throughput].to_numpy(float)
    power = frame["avg_power_watts"].to_numpy(float)
    gpus = frame["num_gpus"].to_numpy(int)
    if demand is not None:
        replicas = np.ceil(demand / capacity - 1e-9).astype(int).clip(min=1)
        served = np.full(len(frame), float(demand))
        ok = np.ones(len(frame), bool)
        if power_budget_watts is not None:
            ok &= replicas * power <= power_budget_watts
        if gpu_budget is not None:
            ok &= replicas * gpus <= gpu_budget
    else:
        limits = [np.full(len(frame), np.iinfo(np.int64).max)]
        if power_budget_watts is not None:
            limits.append(np.floor(power_budget_watts / power).astype(np.int64))
        if gpu_budget is not None:
            limits.append(gpu_budget // gpus)
        replicas = np.minimum.reduce(limits)
        ok = replicas >= 1
        served = replicas * capacity
    out = frame.assign(replicas=replicas, total_gpus=replicas * gpus, capacity_total=replicas * capacity,
                       demand_served=served, fleet_power_watts=replicas * power,
                       fleet_power_watts_p10=replicas * frame["avg_power_watts_p10"].to_numpy(float),
                       fleet_power_watts_p90=replicas * frame["avg_power_watts_p90"].to_numpy(float))
    return out[ok]


def best_deployment(fleets: pd.DataFrame, *, demand_given: bool):
    """Index label of the chosen fleet: least power for a demand; otherwise most demand served (then least power)."""
    if fleets.empty:
        return None
    if demand_given:
        return fleets.sort_values(["fleet_power_watts", "total_gpus"], kind="stable").index[0]
    ranked = fleets.assign(_neg=-fleets["demand_served"])
    return ranked.sort_values(["_neg", "fleet_power_watts"], kind="stable").index[0]
