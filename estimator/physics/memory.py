"""Memory physics: bytes of weights and KV cache per GPU, the KV-cache pool, and the two "does it fit" rules.

Conventions: bytes are bytes (not GB) unless the name says ``_gb`` (10^9 bytes). Nothing here is fitted to data.

Two fit rules live here side by side, on purpose not unified (unifying them changes predictions; that is a
physics change, not a refactor):

- :func:`llm_fit_full_context` / :func:`diffusion_fit`: whether a configuration can run at all (one sequence of the
  *full* context, input + output tokens, fits next to the weights; MLA cache copies not counted). Used to reject a
  configuration with the arithmetic (``estimator/learn/prediction.py``).
- :func:`max_concurrent_sequences`: how many sequences of the *mean* decode context (input + output / 2) fit, MLA
  cache copies counted. Used for the achieved batch of a decode step (``estimator/physics/step.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from estimator.catalog.catalog import ArchitectureSpec, GPUSpec
from estimator.catalog.params import mlp_params, moe_layer_count, param_breakdown

BILLION = 1e9
#: bytes of one bfloat16 value (16 bits; https://en.wikipedia.org/wiki/Bfloat16_floating-point_format)
BF16_BYTES = 2.0
#: bytes of one float32 value (Mamba2 keeps its SSM state in fp32)
FP32_BYTES = 4.0
#: storage bytes per weight; MXFP4 packs 4-bit values with one 8-bit scale per 32 (4.25 bits), per the OCP
#: Microscaling Formats spec v1.0 (https://www.opencompute.org/documents/ocp-microscaling-formats-mx-v1-0-spec-final-pdf)
BYTES_PER_PARAM = {"bfloat16": BF16_BYTES, "float16": BF16_BYTES, "fp8": 1.0, "int8": 1.0, "int4": 0.5,
                   "mxfp4": 4.25 / 8}
#: vLLM's default KV-cache dtype ("auto") follows the model dtype: bf16 for every model measured
KV_CACHE_BYTES = BF16_BYTES
#: vLLM's default ``gpu_memory_utilization`` (https://docs.vllm.ai/en/v0.11.1/configuration/engine_args.html)
GPU_MEMORY_UTILIZATION = 0.9
#: GB per GPU kept out of the KV pool for CUDA graphs, activations and sampler buffers. An engineering estimate of
#: vLLM's profiled non-KV usage at these model sizes, not a measured value; no published source.
ACTIVATION_RESERVE_GB = 2.0


def bytes_per_param(precision: str) -> float:
    """Storage bytes per weight for a precision name (``bfloat16``, ``fp8``, ``mxfp4``...)."""
    try:
        return BYTES_PER_PARAM[precision]
    except KeyError as exc:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(BYTES_PER_PARAM)}") from exc


def weight_bytes_total(arch: ArchitectureSpec, precision: str) -> float:
    """All weights of the model in bytes at ``precision``.

    Quantised checkpoints (fp8, mxfp4) quantise the linear layers; embeddings and, for mxfp4 (gpt-oss),
    the attention blocks stay in bf16.
    """
    if arch.kind == "diffusion":
        params = (arch.denoiser_params_billions + arch.text_encoder_params_billions + arch.vae_params_billions)
        return params * BILLION * bytes_per_param(precision)
    parts = param_breakdown(arch)
    # other_params (MTP head, Omni talker) are not loaded by a serving engine for text generation
    parts_total = parts.total_billions - arch.other_params_billions
    quantised = bytes_per_param(precision)
    embedding = parts.embedding_billions * BILLION * BF16_BYTES
    if precision == "mxfp4":
        experts = (parts.routed_experts_billions + parts.shared_experts_billions) * BILLION * quantised
        rest = (parts_total - parts.embedding_billions - parts.routed_experts_billions
                - parts.shared_experts_billions) * BILLION * BF16_BYTES
        return embedding + experts + rest
    return embedding + (parts_total - parts.embedding_billions) * BILLION * quantised


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
    ssm = arch.mamba_num_heads * arch.mamba_head_dim * arch.mamba_d_state * FP32_BYTES
    conv = (d_inner + 2 * arch.mamba_n_groups * arch.mamba_d_state) * max(arch.mamba_conv_kernel - 1, 0) * BF16_BYTES
    return arch.num_mamba_layers * (ssm + conv)


def kv_bytes_per_sequence(arch: ArchitectureSpec, context_tokens: float) -> float:
    """Cache bytes one sequence of ``context_tokens`` holds (full, sliding-window and recurrent layers)."""
    sliding = arch.num_sliding_window_layers * kv_bytes_per_token_per_layer(arch) * min(
        context_tokens, arch.sliding_window or context_tokens)
    return kv_bytes_per_token(arch) * context_tokens + sliding + recurrent_state_bytes_per_sequence(arch)


def usable_memory_gb(gpu: GPUSpec) -> float:
    """Memory the engine may use per GPU: ``GPU_MEMORY_UTILIZATION`` x the datasheet capacity, GB."""
    return GPU_MEMORY_UTILIZATION * gpu.memory_gb


def memory_headroom_per_gpu_gb(gpu: GPUSpec, weight_bytes_on_gpu: float) -> float:
    """KV-cache pool per GPU: usable memory minus weights minus the activation reserve (may be negative)."""
    return GPU_MEMORY_UTILIZATION * gpu.memory_gb - weight_bytes_on_gpu / BILLION - ACTIVATION_RESERVE_GB


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


def mla_cache_copies(arch: ArchitectureSpec, num_gpus: int, attention_data_parallel: bool) -> int:
    """Copies of one sequence's cache across ranks: MLA's latent cache has no head axis to split, so under
    tensor parallelism every rank keeps it whole; attention data parallel keeps one copy per sequence."""
    return num_gpus if (arch.attention == "mla" and not attention_data_parallel) else 1


def decode_mean_context_tokens(input_tokens: float, output_tokens: float) -> float:
    """Mean context a decode step sees: a running batch holds sequences at every stage, on average
    input + output / 2 tokens each (paged KV)."""
    return input_tokens + output_tokens / 2.0


# ------------------------------------------------------------------------------- rule 1: the achieved batch

def max_concurrent_sequences(arch: ArchitectureSpec, headroom_per_gpu_gb: float, num_gpus: int,
                             context_tokens: float, attention_data_parallel: bool) -> float:
    """Sequences of ``context_tokens`` (the mean decode context) whose cache fits, MLA copies counted."""
    per_seq = kv_bytes_per_sequence(arch, context_tokens)
    copies = mla_cache_copies(arch, num_gpus, attention_data_parallel)
    return max_batch_that_fits(headroom_per_gpu_gb, num_gpus, per_seq, copies)


# ------------------------------------------------------------------------------- rule 2: can it run at all

@dataclass(frozen=True)
class LlmFit:
    """Whether one sequence of the full context fits next to the weights (numbers for the message)."""

    weight_bytes_per_gpu: float
    headroom_per_gpu_gb: float
    context_tokens: float
    sequence_gb: float
    fits: bool


def llm_fit_full_context(arch: ArchitectureSpec, gpu: GPUSpec, precision: str, num_gpus: int, data_parallel: int,
                         input_tokens: float, output_tokens: float) -> LlmFit:
    """One sequence of input + output tokens must fit in the KV pool summed over GPUs (MLA copies not counted)."""
    weights = weight_bytes_per_gpu(arch, precision, num_gpus, data_parallel)
    headroom = memory_headroom_per_gpu_gb(gpu, weights)
    context = input_tokens + output_tokens
    per_seq_gb = kv_bytes_per_sequence(arch, context) / BILLION
    return LlmFit(weights, headroom, context, per_seq_gb, fits=not headroom * num_gpus < per_seq_gb)


@dataclass(frozen=True)
class DiffusionFit:
    """Whether a diffusion pipeline's bf16 weights fit in one GPU's usable memory (sequence parallel replicates)."""

    weights_gb: float
    usable_gb: float
    fits: bool


def diffusion_fit(arch: ArchitectureSpec, gpu: GPUSpec, precision: str = "bfloat16") -> DiffusionFit:
    """The whole pipeline (denoiser, text encoder, VAE) on every GPU, against ``usable_memory_gb``."""
    weights_gb = weight_bytes_total(arch, precision) / BILLION
    usable = usable_memory_gb(gpu)
    return DiffusionFit(weights_gb, usable, fits=weights_gb < usable)
