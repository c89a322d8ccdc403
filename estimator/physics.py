"""Pure physics of inference: bytes, FLOPs, memory fit and roofline times, each a named step with its unit.

Conventions: bytes are bytes (not GB) unless the name says ``_gb`` (10^9 bytes); times in seconds unless
``_ms``; FLOPs are floating-point operations (a multiply-add is 2). Nothing here is fitted to data: these are
the latent quantities the learned predictors start from.
"""

from __future__ import annotations

import math

from estimator.catalog import ArchitectureSpec, GPUSpec
from estimator.physics_params import mlp_params, moe_layer_count, param_breakdown

#: storage bytes per weight; MXFP4 packs 4-bit values with one 8-bit (E8M0) scale per 32 (4.25 bits, OCP
#: Microscaling Formats spec v1.0); NVFP4 one FP8 (E4M3) scale per 16 (4.5 bits, NVIDIA "Introducing NVFP4 for
#: Efficient and Accurate Low-Precision Inference", developer.nvidia.com blog, 2025)
BYTES_PER_PARAM = {"bfloat16": 2.0, "float16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "mxfp4": 4.25 / 8,
                   "nvfp4": 4.5 / 8}
FP4_PRECISIONS = ("mxfp4", "nvfp4")
KV_CACHE_BYTES = 2.0  # vLLM default KV-cache dtype follows the model dtype: bf16
BILLION = 1e9


def bytes_per_param(precision: str) -> float:
    """Storage bytes per weight for a precision name (``bfloat16``, ``fp8``, ``mxfp4``...)."""
    try:
        return BYTES_PER_PARAM[precision]
    except KeyError as exc:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(BYTES_PER_PARAM)}") from exc


def weight_bytes_total(arch: ArchitectureSpec, precision: str) -> float:
    """All weights of the model in bytes at ``precision``.

    Quantised checkpoints (fp8, nvfp4, int) quantise every linear layer; embeddings stay in bf16. ``mxfp4`` on an
    MoE model quantises only the routed and shared experts (as gpt-oss ships: attention stays bf16); on a dense
    model it quantises every linear layer (there are no experts to confine it to).
    """
    if arch.kind == "diffusion":
        params = (arch.denoiser_params_billions + arch.text_encoder_params_billions + arch.vae_params_billions)
        return params * BILLION * bytes_per_param(precision)
    parts = param_breakdown(arch)
    # other_params (MTP head, Omni talker) are not loaded by a serving engine for text generation
    parts_total = parts.total_billions - arch.other_params_billions
    quantised = bytes_per_param(precision)
    embedding = parts.embedding_billions * BILLION * 2.0
    experts_billions = parts.routed_experts_billions + parts.shared_experts_billions
    if precision == "mxfp4" and experts_billions > 0:
        experts = experts_billions * BILLION * quantised
        rest = (parts_total - parts.embedding_billions - experts_billions) * BILLION * 2.0
        return embedding + experts + rest
    return embedding + (parts_total - parts.embedding_billions) * BILLION * quantised


def lm_head_params(arch: ArchitectureSpec) -> float:
    """Parameters of the LM head (vocab x hidden): present in every decoder, whether or not it shares its matrix
    with the input embedding (``tie_word_embeddings``)."""
    return float(arch.vocab_size * arch.hidden_size)


def input_embedding_only_params(arch: ArchitectureSpec) -> float:
    """Embedding parameters that only the input lookup uses (a row per token, so no matmul and negligible
    reads): the whole input table when untied, nothing when tied (the LM head reads that same matrix)."""
    return 0.0 if arch.tie_word_embeddings else float(arch.vocab_size * arch.hidden_size)


def expert_bytes(arch: ArchitectureSpec, precision: str) -> float:
    """Bytes of one routed expert of one layer."""
    return mlp_params(arch.hidden_size, arch.moe_intermediate_size, arch.mlp_gated) * bytes_per_param(precision)


def weight_bytes_per_gpu(arch: ArchitectureSpec, precision: str, num_gpus: int, data_parallel: int = 1) -> float:
    """Weights each GPU holds. Tensor/expert parallel shard everything across ``num_gpus``; attention data
    parallel (``data_parallel`` > 1, vLLM's DP attention) replicates the non-expert weights on each rank."""
    total = weight_bytes_total(arch, precision)
    if arch.kind == "diffusion":
        return total  # xDiT sequence parallel replicates the whole pipeline on each GPU
    if data_parallel > 1 and arch.architecture == "moe":
        experts = moe_layer_count(arch) * arch.num_experts * expert_bytes(arch, precision)
        return (total - experts) + experts / num_gpus
    return total / num_gpus


def full_attention_layers(arch: ArchitectureSpec) -> int:
    """Attention layers that keep the whole context (not sliding-window)."""
    return max(arch.num_layers - arch.num_sliding_window_layers, 0)


def kv_bytes_per_token_per_layer(arch: ArchitectureSpec) -> float:
    """KV-cache bytes one token adds to one attention layer (MLA stores the compressed latent)."""
    if arch.attention == "mla":
        return (arch.kv_lora_rank + arch.qk_rope_head_dim) * KV_CACHE_BYTES
    if arch.attention == "none":
        return 0.0
    head_dim = arch.head_dim or arch.hidden_size // max(arch.num_attention_heads, 1)
    return 2 * (arch.num_kv_heads or arch.num_attention_heads) * head_dim * KV_CACHE_BYTES


def kv_bytes_per_token(arch: ArchitectureSpec) -> float:
    """KV-cache bytes per context token across full-attention layers (sliding layers are capped apart)."""
    return full_attention_layers(arch) * kv_bytes_per_token_per_layer(arch)


def recurrent_state_bytes_per_sequence(arch: ArchitectureSpec) -> float:
    """Mamba2 state kept per sequence: SSM state (fp32) plus the convolution window (bf16)."""
    if not arch.num_mamba_layers:
        return 0.0
    d_inner = arch.mamba_num_heads * arch.mamba_head_dim
    ssm = arch.mamba_num_heads * arch.mamba_head_dim * arch.mamba_d_state * 4.0
    conv = (d_inner + 2 * arch.mamba_n_groups * arch.mamba_d_state) * max(arch.mamba_conv_kernel - 1, 0) * 2.0
    return arch.num_mamba_layers * (ssm + conv)


def kv_bytes_per_sequence(arch: ArchitectureSpec, context_tokens: float) -> float:
    """Cache bytes one sequence of ``context_tokens`` holds (full, sliding-window and recurrent layers)."""
    sliding = arch.num_sliding_window_layers * kv_bytes_per_token_per_layer(arch) * min(
        context_tokens, arch.sliding_window or context_tokens)
    return kv_bytes_per_token(arch) * context_tokens + sliding + recurrent_state_bytes_per_sequence(arch)


def max_batch_that_fits(headroom_per_gpu_gb: float, num_gpus: int, kv_bytes_per_seq: float,
                        cache_copies: int = 1) -> float:
    """Largest number of concurrent sequences whose cache fits (paged KV: sized by the mean context).

    The pool is summed over GPUs (tensor parallel splits a sequence's cache by heads; replicas hold whole
    sequences). ``cache_copies`` > 1 when each rank must keep its own copy of a sequence's cache, as MLA's
    latent cache under tensor parallelism. Returns 0 when the weights alone do not fit.
    """
    if headroom_per_gpu_gb <= 0:
        return 0.0
    pool_bytes = headroom_per_gpu_gb * BILLION * num_gpus
    return pool_bytes / max(kv_bytes_per_seq * cache_copies, 1.0)


def expected_distinct_experts(num_experts: int, experts_per_token: int, tokens: float) -> float:
    """Expected number of distinct experts a batch of ``tokens`` touches in one layer (uniform routing)."""
    if not num_experts:
        return 0.0
    return num_experts * (1.0 - (1.0 - experts_per_token / num_experts) ** max(tokens, 0.0))


def weight_bytes_read_per_step(arch: ArchitectureSpec, precision: str, batch: float) -> float:
    """Weight bytes one decode step reads (all GPUs together): dense weights once, MoE experts only if
    some token in the batch routes to them. Embedding rows are negligible and skipped."""
    # vision tower: loaded (weight_bytes_total) but not read by a text decode step
    total = weight_bytes_total(arch, precision) - arch.vision_params_billions * BILLION * bytes_per_param(precision)
    embedding = input_embedding_only_params(arch) * 2.0  # bf16 rows the step does not stream
    if arch.architecture != "moe":
        return total - embedding
    layers = moe_layer_count(arch)
    per_expert = expert_bytes(arch, precision)
    all_experts = layers * arch.num_experts * per_expert
    touched = layers * expected_distinct_experts(arch.num_experts, arch.num_experts_per_token, batch) * per_expert
    return total - embedding - all_experts + touched


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
    """Matmul FLOPs per token through the weights: 2 x active parameters (vision tower excluded)."""
    parts = param_breakdown(arch)
    share = arch.num_experts_per_token / arch.num_experts if arch.num_experts else 0.0
    active = parts.total_billions - parts.extra_billions - parts.routed_experts_billions * (1 - share)
    active -= input_embedding_only_params(arch) / BILLION  # the input lookup is free; the LM head is not
    return 2.0 * active * BILLION


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
    """All-reduce bytes per token per GPU: two per layer (attention and MLP outputs), ring algorithm."""
    if tensor_parallel <= 1:
        return 0.0
    return 2 * arch.num_layers * arch.hidden_size * 2.0 * 2 * (tensor_parallel - 1) / tensor_parallel


def expert_parallel_comm_bytes_per_token(arch: ArchitectureSpec, expert_parallel: int) -> float:
    """All-to-all dispatch + combine bytes per token: each routed copy leaves the GPU with (n-1)/n odds."""
    if expert_parallel <= 1 or arch.architecture != "moe":
        return 0.0
    leaving = (expert_parallel - 1) / expert_parallel
    return 2 * moe_layer_count(arch) * arch.num_experts_per_token * arch.hidden_size * 2.0 * leaving


# ---------------------------------------------------------------- diffusion


def latent_tokens(arch: ArchitectureSpec, height: int, width: int, frames: int = 1) -> float:
    """Transformer tokens per sample: latent grid / patch, times latent frames for video."""
    spatial = arch.vae_spatial_compression * max(arch.patch_size, 1)
    grid = math.ceil(height / spatial) * math.ceil(width / spatial)
    if arch.modality == "text-to-video" and frames > 1:
        latent_frames = 1 + (frames - 1) // (arch.vae_temporal_compression or 1)
        return float(grid * math.ceil(latent_frames / arch.temporal_patch_size))
    return float(grid)


def diffusion_flops_per_step(arch: ArchitectureSpec, tokens: float, batch: int) -> float:
    """Denoiser FLOPs per step for a batch: 2 x params x tokens plus self-attention 4 x L x d x tokens^2,
    doubled under classifier-free guidance."""
    linear = 2.0 * arch.denoiser_params_billions * BILLION * tokens
    attention = 4.0 * arch.denoiser_num_layers * arch.denoiser_hidden_size * tokens * tokens
    return (linear + attention) * batch * (2 if arch.uses_cfg else 1)


def sequence_parallel_comm_bytes_per_step(arch: ArchitectureSpec, tokens: float, batch: int, ulysses: int,
                                          ring: int) -> float:
    """Bytes each GPU sends per denoising step: Ulysses all-to-alls (4 per layer over q, k, v, out) and Ring
    K/V passes ((r-1)/r of the K and V shards per layer)."""
    cfg = 2 if arch.uses_cfg else 1
    activations = tokens * arch.denoiser_hidden_size * 2.0 * batch * cfg * arch.denoiser_num_layers
    degree = ulysses * ring
    ulysses_bytes = 4 * activations / degree * (ulysses - 1) / ulysses if ulysses > 1 else 0.0
    ring_bytes = 2 * activations / ulysses * (ring - 1) / ring if ring > 1 else 0.0
    return ulysses_bytes + ring_bytes
