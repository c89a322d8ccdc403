"""Plan device time: the expected duration of each configuration of a sweep, before running it (``--dry-run``).

A first-order roofline of one decode step (or one denoiser pass) on the target GPU, with efficiencies read off
this project's own H200 runs (``datasets/local/h200-llama31-8b.jsonl``: Llama-3.1-8B batch 8 decodes at 7.7 ms
per step, 16 GB of weights, i.e. about 45% of the 4.8 TB/s datasheet bandwidth), plus fixed costs seen in the
device logs (``datasets/local/raw/*-device-log.txt``: about 22 s per configuration for a 10 s window). It plans
minutes; it is not a prediction of energy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from measure.diffusion_schema import DiffusionSweepSpec, UNetShape
from measure.schema import RunConfig, SweepSpec

BANDWIDTH_EFFICIENCY = 0.45
COMPUTE_EFFICIENCY = 0.5
RUN_OVERHEAD_S = 4.0  # cache allocation, release, provenance
GRAPH_CAPTURE_S = 0.5  # per captured decode graph (warm-up step plus capture)
WEIGHT_BUILD_BYTES_PER_S = 20e9  # random-normal fill on the GPU, plus process start amortised below
START_S = 15.0  # python, torch, CUDA context, zeus import, idle-power window (once per sweep)


@dataclass(frozen=True)
class RunPlan:
    """Expected seconds of one configuration and its parts."""

    key: str
    step_ms: float
    setup_s: float
    warmup_s: float
    measure_s: float

    @property
    def total_s(self) -> float:
        return self.setup_s + self.warmup_s + self.measure_s


def _gpu(gpu: str) -> tuple[float, float]:
    """(bytes/s, FLOP/s) of a catalog GPU at the planning efficiencies."""
    from estimator.catalog.catalog import load_catalog

    catalog = load_catalog()
    spec = catalog.gpus[catalog.resolve("gpu", gpu)]
    return (spec.hbm_bandwidth_tb_per_sec * 1e12 * BANDWIDTH_EFFICIENCY,
            spec.peak_tflops_bf16 * 1e12 * COMPUTE_EFFICIENCY)


def decode_step_seconds(run: RunConfig, gpu: str, context: float) -> float:
    """Roofline time of one decode step at batch ``max_num_seqs`` and mean ``context`` tokens, per GPU of TP."""
    shape, b, tp = run.spec.shape, run.max_num_seqs, run.spec.tensor_parallel
    bw, flops = _gpu(gpu)
    weights = shape.weight_bytes()
    active = shape.num_params
    if shape.num_experts:
        per_expert = 3 * shape.hidden_size * shape.moe_intermediate_size * 2
        touched = shape.num_experts * (1 - (1 - shape.num_experts_per_tok / shape.num_experts) ** b)
        all_experts = shape.num_experts * per_expert * shape.num_hidden_layers
        weights = weights - all_experts + touched * per_expert * shape.num_hidden_layers
        active = active - all_experts // 2 + shape.num_experts_per_tok * per_expert // 2 * shape.num_hidden_layers
    kv = shape.kv_bytes_per_token() * context * b
    return max((weights + kv) / tp / bw, 2 * active * b / tp / flops)


def plan_llm_run(run: RunConfig, gpu: str, first: bool) -> RunPlan:
    """Expected duration of one LLM configuration (static rounds or continuous batching)."""
    w, h, opts = run.spec.workload, run.spec.harness, run.spec.torch
    out = w.forced_output_len or w.output_len_median
    step = decode_step_seconds(run, gpu, w.input_len_median + out / 2)
    smax = w.input_len_max + (w.forced_output_len or w.output_len_max)
    graphs = 1 if opts.attention == "ragged" else math.ceil(smax / opts.context_bucket_tokens)
    setup = RUN_OVERHEAD_S + graphs * GRAPH_CAPTURE_S
    if first:
        setup += run.spec.shape.weight_bytes() / run.spec.tensor_parallel / WEIGHT_BUILD_BYTES_PER_S
    if opts.batching == "continuous":
        return RunPlan(run.key, 1e3 * step, setup, h.warmup_s, h.min_steady_state_s + 16 * step)
    round_s = out * step
    measure = math.ceil(h.min_steady_state_s / round_s) * round_s
    warm = max(h.warmup_s, min(64, out) * step) if h.warmup_s > 0 else 0.0
    return RunPlan(run.key, 1e3 * step, setup, warm, measure)


def denoise_seconds(spec: DiffusionSweepSpec, batch: int, gpu: str) -> float:
    """Roofline time of one denoiser pass (compute-bound: 2 x params x tokens, plus attention; a UNet's FLOPs
    from :func:`estimator.physics.unet.unet_cost` of the catalog entry of ``spec.model_id``)."""
    s = spec.shape
    _, flops = _gpu(gpu)
    rows = batch * (2 if spec.uses_cfg else 1)
    if isinstance(s, UNetShape):
        from estimator.catalog.catalog import load_catalog
        from estimator.physics.unet import unet_cost

        catalog = load_catalog()
        arch = catalog.models[catalog.resolve("model", spec.model_id)]
        return rows * unet_cost(arch, spec.image_height, spec.image_width).flops / flops
    tokens = s.image_tokens(spec.image_height, spec.image_width) + s.text_tokens
    h, mlp = s.hidden_size, s.hidden_size * s.mlp_ratio
    per_token_joint = 2 * (2 * (4 * h * h + 2 * h * mlp)) / 2  # two streams' QKV, out, MLP per token pair
    single = 2 * (3 * h * h + h * mlp + (h + mlp) * h)
    linear = tokens * (s.num_joint_layers * per_token_joint + s.num_single_layers * single)
    attention = 4 * tokens * tokens * h * (s.num_joint_layers + s.dual_attention_layers + s.num_single_layers)
    return rows * (linear + attention) / flops


def plan_diffusion(spec: DiffusionSweepSpec, gpu: str) -> list[RunPlan]:
    """Expected duration of each batch size: one warm-up batch, whole batches to the minimum window."""
    plans = []
    for b in spec.batch_sizes:
        batch_s = spec.inference_steps * denoise_seconds(spec, b, gpu)
        measure = math.ceil(spec.harness.min_steady_state_s / batch_s) * batch_s
        step_ms = 1e3 * batch_s / spec.inference_steps
        plans.append(RunPlan(f"{spec.name}-bs{b}", step_ms, RUN_OVERHEAD_S, batch_s, measure))
    return plans


def plan_sweep(spec: SweepSpec | DiffusionSweepSpec, gpu: str = "H200") -> list[RunPlan]:
    """One :class:`RunPlan` per configuration of ``spec`` on ``gpu`` (a catalog GPU key or alias)."""
    if isinstance(spec, DiffusionSweepSpec):
        return plan_diffusion(spec, gpu)
    return [plan_llm_run(run, gpu, first=k == 0) for k, run in enumerate(spec.expand())]
