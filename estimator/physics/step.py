"""Compute physics of one inference step: FLOPs, bytes moved, roofline times and communication.

Conventions: bytes are bytes; times in seconds unless ``_ms``; FLOPs are floating-point operations (a multiply-add
is 2). Nothing here is fitted to data: these are the latent quantities the learned predictors start from.
:func:`decode_step` and :func:`diffusion_step` assemble one LLM decode step and one diffusion batch from the
named pieces; ``estimator/learn/features.py`` only turns their results into model inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from estimator.catalog.catalog import ArchitectureSpec, GPUSpec
from estimator.catalog.params import moe_layer_count, param_breakdown
from estimator.catalog.spec_cache import by_spec
from estimator.physics.memory import (
    BF16_BYTES,
    BILLION,
    bytes_per_param,
    expert_bytes,
    full_attention_layers,
    kv_bytes_per_sequence_at,
    sequences_that_fit,
    weight_bytes_total,
)
from estimator.physics.serving import (
    allreduces_per_decode_step,
    attention_dp_weight_bytes_read,
    block_fp8_overhead_s,
    decode_floor_s,
    decode_step_time_s,
    prefill_flops,
    tensor_parallel_step_time_s,
    ttft_physics_s,
)
from estimator.physics.unet import unet_flops_per_step

#: collective activations travel in bf16 (the models' dtype)
ACTIVATION_BYTES = BF16_BYTES


def expected_distinct_experts(num_experts: int, experts_per_token: int, tokens: float) -> float:
    """Expected number of distinct experts a batch of ``tokens`` touches in one layer (uniform routing)."""
    if not num_experts:
        return 0.0
    return num_experts * (1.0 - (1.0 - experts_per_token / num_experts) ** max(tokens, 0.0))


def weight_bytes_read_per_step(arch: ArchitectureSpec, precision: str, batch: float) -> float:
    """Weight bytes one decode step reads (all GPUs together): dense weights once, MoE experts only if
    some token in the batch routes to them.

    Only the input-embedding table is skipped (:func:`input_embedding_only_params`: a lookup reads one row per
    token); a tied matrix is streamed by the LM head every step, so it is read.
    """
    static, layers, per_expert = _weight_read_terms(arch, precision)
    if arch.architecture != "moe":
        return static
    touched = layers * expected_distinct_experts(arch.num_experts, arch.num_experts_per_token, batch) * per_expert
    return static + touched


@by_spec()
def _weight_read_terms(arch: ArchitectureSpec, precision: str) -> tuple[float, int, float]:
    """(bytes every decode step reads whatever the batch: all weights but the vision tower, the input embedding
    and, for MoE, the routed experts; MoE layers; bytes of one expert) for :func:`weight_bytes_read_per_step`."""
    # vision tower: loaded (weight_bytes_total) but not read by a text decode step
    total = weight_bytes_total(arch, precision) - arch.vision_params_billions * BILLION * bytes_per_param(precision)
    embedding = input_embedding_only_params(arch) * BF16_BYTES
    if arch.architecture != "moe":
        return total - embedding, 0, 0.0
    layers = moe_layer_count(arch)
    per_expert = expert_bytes(arch, precision)
    all_experts = layers * arch.num_experts * per_expert
    return total - embedding - all_experts, layers, per_expert


def lm_head_params(arch: ArchitectureSpec) -> float:
    """Parameters of the LM head (vocab x hidden): present in every decoder, whether or not it shares its matrix
    with the input embedding (``tie_word_embeddings``)."""
    return float(arch.vocab_size * arch.hidden_size)


def input_embedding_only_params(arch: ArchitectureSpec) -> float:
    """Embedding parameters only the input lookup uses (a row per token: no matmul, negligible reads): the whole
    input table when untied, nothing when tied (the LM head multiplies by that same matrix)."""
    return 0.0 if arch.tie_word_embeddings else lm_head_params(arch)


def attention_flops_per_token(arch: ArchitectureSpec, context_tokens: float) -> float:
    """QK^T and AV FLOPs for one new token attending to ``context_tokens`` (sliding layers capped)."""
    if arch.attention == "none" or not arch.num_layers:
        return 0.0
    if arch.attention == "mla":
        width = arch.num_attention_heads * (arch.kv_lora_rank + arch.qk_rope_head_dim + arch.kv_lora_rank)
        per_layer_per_ctx = 2.0 * width
    else:
        head_dim = arch.head_dim or arch.hidden_size // max(arch.num_attention_heads, 1)
        per_layer_per_ctx = 4.0 * arch.num_attention_heads * head_dim
    window = min(context_tokens, arch.sliding_window or context_tokens)
    return per_layer_per_ctx * (full_attention_layers(arch) * context_tokens
                                + arch.num_sliding_window_layers * window)


def linear_flops_per_token(arch: ArchitectureSpec) -> float:
    """Matmul FLOPs per token through the weights: 2 x active parameters (vision tower excluded), the LM head
    included whether tied or not; only the input lookup is free (:func:`input_embedding_only_params`)."""
    parts = param_breakdown(arch)
    share = arch.num_experts_per_token / arch.num_experts if arch.num_experts else 0.0
    active = parts.total_billions - parts.extra_billions - parts.routed_experts_billions * (1 - share)
    return 2.0 * (active * BILLION - input_embedding_only_params(arch))


def decode_flops_per_token(arch: ArchitectureSpec, context_tokens: float) -> float:
    """FLOPs to produce one output token at a given context length."""
    return linear_flops_per_token(arch) + attention_flops_per_token(arch, context_tokens)


def peak_flops(gpu: GPUSpec, precision: str) -> float:
    """Dense tensor-core peak FLOP/s of one GPU for a weight precision.

    fp4 formats (MXFP4, NVFP4) run on the FP4 tensor cores of GPUs that have them (Blackwell: vLLM's fp4 GEMM and
    MoE kernels), else on the FP8 ones, else bf16; fp8/int8 use the FP8 peak where present.
    """
    fp4 = gpu.peak_tflops_fp4 or gpu.peak_tflops_fp8
    tflops = {"fp8": gpu.peak_tflops_fp8, "int8": gpu.peak_tflops_fp8, "mxfp4": fp4, "nvfp4": fp4}.get(
        precision) or gpu.peak_tflops_bf16
    return tflops * 1e12


def roofline_step_time_s(flops: float, bytes_moved: float, gpu: GPUSpec, precision: str,
                         num_gpus: int) -> tuple[float, float]:
    """(compute time, memory time) of one step spread evenly over ``num_gpus`` at peak rates."""
    compute = flops / (peak_flops(gpu, precision) * num_gpus)
    memory = bytes_moved / (gpu.hbm_bandwidth_tb_per_sec * 1e12 * num_gpus)
    return compute, memory


def tensor_parallel_comm_bytes_per_token(arch: ArchitectureSpec, tensor_parallel: int) -> float:
    """All-reduce bytes per token per GPU: one hidden vector per all-reduce of the step
    (:func:`serving.allreduces_per_decode_step`: two per layer, one per block in a hybrid), ring algorithm."""
    if tensor_parallel <= 1:
        return 0.0
    return (allreduces_per_decode_step(arch, tensor_parallel) * arch.hidden_size * ACTIVATION_BYTES * 2
            * (tensor_parallel - 1) / tensor_parallel)


def expert_parallel_comm_bytes_per_token(arch: ArchitectureSpec, expert_parallel: int) -> float:
    """All-to-all dispatch + combine bytes per token: each routed copy leaves the GPU with (n-1)/n odds."""
    if expert_parallel <= 1 or arch.architecture != "moe":
        return 0.0
    leaving = (expert_parallel - 1) / expert_parallel
    return 2 * moe_layer_count(arch) * arch.num_experts_per_token * arch.hidden_size * ACTIVATION_BYTES * leaving


# ---------------------------------------------------------------- one LLM decode step

@dataclass(frozen=True)
class DecodeStep:
    """One steady-state decode step of a running batch (all GPUs together)."""

    context_tokens: float  # mean context per sequence (input + output / 2)
    max_feasible_batch: float  # sequences whose cache fits (memory.max_concurrent_sequences)
    batch: float  # achieved batch: min(max_num_seqs, what fits), at least 1
    flops: float  # FLOPs of the step
    bytes_moved: float  # weight + KV bytes read by the step
    kv_bytes_read: float
    compute_s: float  # roofline compute time on the configuration's GPU
    memory_s: float  # roofline memory time on the configuration's GPU
    ref_compute_s: float  # the same on the reference GPU
    ref_memory_s: float
    prefill_flops_per_output_token: float  # prompt FLOPs carried by each output token
    throughput_ceiling_tokens_per_sec: float  # batch / (compute with prefill + memory time)
    comm_bytes_per_token: float  # TP all-reduce + EP all-to-all bytes per token per GPU
    touched_expert_share: float  # share of experts a step reads (1 for dense models)
    kv_pool_per_gpu_bytes: float  # vLLM's KV pool per GPU (memory.llm_kv_pool_bytes_per_gpu)
    comm_s: float  # tensor-parallel all-reduce time of the step (latency + volume), configuration's GPU
    ref_comm_s: float  # the same on the reference GPU
    ttft_s: float  # time to first token from prefill physics (physics only; benchmarks/ttft.md)
    kernel_overhead_s: float = 0.0  # fixed kernel time: serving.decode_floor_s + serving.block_fp8_overhead_s

    @property
    def roofline_step_s(self) -> float:
        """Step time at peak rates: compute + memory (serving.decode_step_time_s) + TP collectives + the fixed
        kernel time (per-block floor and block-scaled FP8 weights; the same on every GPU)."""
        return decode_step_time_s(self.compute_s, self.memory_s) + self.comm_s + self.kernel_overhead_s

    @property
    def ref_roofline_step_s(self) -> float:
        return decode_step_time_s(self.ref_compute_s, self.ref_memory_s) + self.ref_comm_s + self.kernel_overhead_s


def decode_step(arch: ArchitectureSpec, gpu: GPUSpec, ref_gpu: GPUSpec, *, precision: str, num_gpus: int,
                max_num_seqs: float, kv_pool_per_gpu_bytes: float, data_parallel: int, tensor_parallel: int,
                expert_parallel: int, input_tokens: float, output_tokens: float, kv_cache_dtype: str = "auto",
                linear_flops: float | None = None, vision_flops_per_request: float = 0.0) -> DecodeStep:
    """Assemble one decode step: achieved batch, FLOPs, bytes, roofline and collective times, the throughput
    ceiling and the TTFT physics.

    ``kv_pool_per_gpu_bytes`` comes from :func:`estimator.physics.memory.llm_kv_pool_bytes_per_gpu`;
    ``linear_flops`` (per token) may be passed when already computed for the model; ``vision_flops_per_request``
    (:func:`estimator.physics.serving.vision_encoder_flops`) is part of each request's prefill.
    """
    if linear_flops is None:
        linear_flops = linear_flops_per_token(arch)
    context = input_tokens + output_tokens / 2.0  # see memory.decode_mean_context_tokens
    per_seq = kv_bytes_per_sequence_at(arch, context, kv_cache_dtype)
    feasible = sequences_that_fit(arch, kv_pool_per_gpu_bytes, num_gpus, per_seq, data_parallel > 1)
    batch = max(min(max_num_seqs, feasible), 1.0)
    kv_read = batch * per_seq
    flops = batch * (linear_flops + attention_flops_per_token(arch, context))
    weights_read, touched = _weights_read(arch, precision, batch, data_parallel)
    bytes_moved = weights_read + kv_read
    compute_s, memory_s = roofline_step_time_s(flops, bytes_moved, gpu, precision, num_gpus)
    ref_compute_s, ref_memory_s = roofline_step_time_s(flops, bytes_moved, ref_gpu, precision, num_gpus)
    comm_s = tensor_parallel_step_time_s(arch, gpu, tensor_parallel, batch)
    # the throughput ceiling also counts prefill: each output token carries input/output prompt tokens of compute
    prefill_per_seq = prefill_flops(arch, linear_flops, input_tokens) + vision_flops_per_request
    ceiling_compute_s, _ = roofline_step_time_s(flops + batch * prefill_per_seq / max(output_tokens, 1.0),
                                                bytes_moved, gpu, precision, num_gpus)
    comm = (tensor_parallel_comm_bytes_per_token(arch, tensor_parallel)
            + expert_parallel_comm_bytes_per_token(arch, expert_parallel))
    # TTFT: the step that carries one new prompt's prefill next to the running batch's decode
    ttft = ttft_physics_s(prefill_per_seq + flops, bytes_moved, 1.0, peak_flops(gpu, precision),
                          gpu.hbm_bandwidth_tb_per_sec * 1e12, num_gpus) + comm_s
    return DecodeStep(context, feasible, batch, flops, bytes_moved, kv_read, compute_s, memory_s, ref_compute_s,
                      ref_memory_s, max(prefill_per_seq, 1.0) / max(output_tokens, 1.0),
                      batch / (ceiling_compute_s + memory_s + comm_s), comm, touched, kv_pool_per_gpu_bytes, comm_s,
                      tensor_parallel_step_time_s(arch, ref_gpu, tensor_parallel, batch), ttft,
                      decode_floor_s(arch) + block_fp8_overhead_s(arch, precision))


def static_batch_ttft_s(arch: ArchitectureSpec, gpu: GPUSpec, *, precision: str, num_gpus: int,
                        tensor_parallel: int, prompts: int, padded_prompt_tokens: float) -> float:
    """Time to first token (s) of a static batch: ``prompts`` prompts, each right-padded to
    ``padded_prompt_tokens`` (the round's longest), prefilled in one go before any of them gets its first token.

    This is what the project's static-batch harness measures (``measure/backends/torch_backend.py`` ``_round``:
    the round's prefill runs on a ``[prompts, longest]`` right-padded tensor, ``torch_dense.prefill``, and every
    request's TTFT is that whole prefill). It is not the serving TTFT the predictor outputs (one prompt joining a
    running batch, :func:`decode_step`); :mod:`benchmarks.ttft` compares both with the measured runs.
    Roofline at peak rates (:func:`serving.ttft_physics_s`) plus the prefill's tensor-parallel all-reduces.
    """
    tokens = prompts * padded_prompt_tokens
    per_prompt = prefill_flops(arch, linear_flops_per_token(arch), padded_prompt_tokens)
    weights = weight_bytes_read_per_step(arch, precision, tokens)
    return (ttft_physics_s(per_prompt, weights, prompts, peak_flops(gpu, precision),
                           gpu.hbm_bandwidth_tb_per_sec * 1e12, num_gpus)
            + tensor_parallel_step_time_s(arch, gpu, tensor_parallel, tokens))


def _weights_read(arch: ArchitectureSpec, precision: str, batch: float, data_parallel: int) -> tuple[float, float]:
    """(weight bytes one decode step reads over all GPUs, share of routed experts touched); under attention data
    parallelism every rank reads its own non-expert replica (:func:`serving.attention_dp_weight_bytes_read`)."""
    weights_read = weight_bytes_read_per_step(arch, precision, batch)
    if arch.architecture != "moe":
        return weights_read, 1.0
    touched = expected_distinct_experts(arch.num_experts, arch.num_experts_per_token, batch)
    if data_parallel > 1:
        touched_bytes = moe_layer_count(arch) * touched * expert_bytes(arch, precision)
        weights_read = attention_dp_weight_bytes_read(arch, weights_read - touched_bytes, touched_bytes, data_parallel)
    return weights_read, touched / arch.num_experts


# ---------------------------------------------------------------- diffusion


def latent_tokens(arch: ArchitectureSpec, height: int, width: int, frames: int = 1) -> float:
    """Transformer tokens per sample: latent grid / patch, times latent frames for video."""
    spatial = arch.vae_spatial_compression * max(arch.patch_size, 1)
    grid = math.ceil(height / spatial) * math.ceil(width / spatial)
    if arch.modality == "text-to-video" and frames > 1:
        latent_frames = 1 + (frames - 1) // (arch.vae_temporal_compression or 1)
        return float(grid * math.ceil(latent_frames / arch.temporal_patch_size))
    return float(grid)


def cfg_passes(arch: ArchitectureSpec) -> int:
    """Denoiser passes per step: 2 under classifier-free guidance, else 1."""
    return 2 if arch.uses_cfg else 1


def diffusion_flops_per_step_parts(arch: ArchitectureSpec, tokens: float, batch: int) -> tuple[float, float]:
    """(linear FLOPs, all FLOPs) of one denoising step for a batch: 2 x params x tokens through the weights plus
    self-attention 4 x L x d x tokens^2, doubled under classifier-free guidance."""
    linear = 2.0 * arch.denoiser_params_billions * BILLION * tokens
    attention = 4.0 * arch.denoiser_num_layers * arch.denoiser_hidden_size * tokens * tokens
    return linear * batch * cfg_passes(arch), (linear + attention) * batch * cfg_passes(arch)


def diffusion_flops_per_step(arch: ArchitectureSpec, tokens: float, batch: int) -> float:
    """Denoiser FLOPs per step for a batch (see :func:`diffusion_flops_per_step_parts`)."""
    return diffusion_flops_per_step_parts(arch, tokens, batch)[1]


def sequence_parallel_comm_bytes_per_step(arch: ArchitectureSpec, tokens: float, batch: int, ulysses: int,
                                          ring: int) -> float:
    """Bytes each GPU sends per denoising step: Ulysses all-to-alls (4 per layer over q, k, v, out) and Ring
    K/V passes ((r-1)/r of the K and V shards per layer)."""
    activations = tokens * arch.denoiser_hidden_size * ACTIVATION_BYTES * batch * cfg_passes(arch) * \
        arch.denoiser_num_layers
    degree = ulysses * ring
    ulysses_bytes = 4 * activations / degree * (ulysses - 1) / ulysses if ulysses > 1 else 0.0
    ring_bytes = 2 * activations / ulysses * (ring - 1) / ring if ring > 1 else 0.0
    return ulysses_bytes + ring_bytes


@dataclass(frozen=True)
class DiffusionStep:
    """One diffusion batch: every denoising step of every sample (all GPUs together)."""

    latent_tokens: float
    flops_per_step: float
    linear_flops_per_step: float
    weight_bytes: float  # the whole pipeline, replicated on each GPU
    compute_s: float  # roofline compute time of all steps
    memory_s: float  # roofline memory time of all steps (weights read once per step)
    ref_compute_s: float
    ref_memory_s: float
    comm_bytes_per_step: float


def diffusion_step(arch: ArchitectureSpec, gpu: GPUSpec, ref_gpu: GPUSpec, *, num_gpus: int, batch_size: int,
                   steps: int, height: int, width: int, frames: int, ulysses: int, ring: int,
                   precision: str = "bfloat16") -> DiffusionStep:
    """Assemble the roofline of one diffusion batch from latent tokens, FLOPs per step and weight bytes."""
    tokens = latent_tokens(arch, height, width, frames)
    if arch.denoiser_type == "unet":  # stage by stage: attention only in the transformer blocks
        flops_step, attention = unet_flops_per_step(arch, height, width, batch_size)
        linear = flops_step - attention
    else:
        linear, flops_step = diffusion_flops_per_step_parts(arch, tokens, batch_size)
    total_flops = flops_step * steps
    weight_bytes = weight_bytes_total(arch, precision)
    compute_s, memory_s = roofline_step_time_s(total_flops, weight_bytes * steps, gpu, precision, num_gpus)
    ref_c, ref_m = roofline_step_time_s(total_flops, weight_bytes * steps, ref_gpu, precision, num_gpus)
    comm = sequence_parallel_comm_bytes_per_step(arch, tokens, batch_size, ulysses, ring)
    return DiffusionStep(tokens, flops_step, linear, weight_bytes, compute_s, memory_s, ref_c, ref_m, comm)
