"""Memory physics: bytes of weights and KV cache per GPU, the KV-cache pool, and the one "does it fit" rule.

Conventions: bytes are bytes (not GB) unless the name says ``_gb`` (10^9 bytes). Nothing here is fitted to data.

One fit rule, vLLM's own arithmetic (:func:`kv_pool_bytes_per_gpu`): the KV pool of a GPU is 0.9 of the memory
the driver reports, minus the weights it holds, minus the activation peak of vLLM's profiling pass, minus
non-torch memory. From that pool:

- :func:`max_concurrent_sequences`: how many sequences of the *mean* decode context (input + output / 2) fit (the
  achieved batch of a decode step, ``estimator/physics/step.py``);
- :func:`llm_fit_full_context`: whether one sequence of the *full* context (input + output) fits at all (a
  configuration is refused with the arithmetic otherwise, ``estimator/learn/prediction.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from estimator.catalog.catalog import ArchitectureSpec, GPUSpec
from estimator.catalog.params import mlp_params, moe_layer_count, param_breakdown
from estimator.catalog.spec_cache import by_spec

BILLION = 1e9
#: bytes of one bfloat16 value (16 bits; https://en.wikipedia.org/wiki/Bfloat16_floating-point_format)
BF16_BYTES = 2.0
#: bytes of one float32 value (Mamba2 keeps its SSM state in fp32)
FP32_BYTES = 4.0
#: storage bytes per weight; MXFP4 packs 4-bit values with one 8-bit scale per 32 (4.25 bits), per the OCP
#: Microscaling Formats spec v1.0 (https://www.opencompute.org/documents/ocp-microscaling-formats-mx-v1-0-spec-final-pdf);
#: NVFP4 one FP8 (E4M3) scale per 16 values (4.5 bits; NVIDIA, "Introducing NVFP4 for Efficient and Accurate
#: Low-Precision Inference", developer.nvidia.com technical blog, 2025)
BYTES_PER_PARAM = {"bfloat16": BF16_BYTES, "float16": BF16_BYTES, "fp8": 1.0, "int8": 1.0, "int4": 0.5,
                   "mxfp4": 4.25 / 8, "nvfp4": 4.5 / 8}
#: vLLM's default KV-cache dtype ("auto") follows the model dtype: bf16 for every model measured
KV_CACHE_BYTES = BF16_BYTES
#: KV-cache bytes per value by vLLM's ``kv_cache_dtype`` ('auto' follows the bf16 model dtype; fp8 halves it)
KV_DTYPE_BYTES = {"auto": BF16_BYTES, "bfloat16": BF16_BYTES, "float16": BF16_BYTES, "fp8": 1.0, "fp8_e4m3": 1.0,
                  "fp8_e5m2": 1.0}
#: vLLM's default ``gpu_memory_utilization``: the share of TOTAL device memory the engine may use
#: (https://docs.vllm.ai/en/v0.11.1/configuration/engine_args.html)
GPU_MEMORY_UTILIZATION = 0.9
MIB = 1024 * 1024
#: vLLM V1's default ``max_num_batched_tokens`` for the OpenAI server: 8192 on GPUs with >= 70 GiB that are not
#: A100, else 2048 (vllm/engine/arg_utils.py, default_max_num_batched_tokens[UsageContext.OPENAI_API_SERVER]);
#: the profiling forward pass that measures the activation peak runs this many tokens
PROFILE_BATCHED_TOKENS, PROFILE_BATCHED_TOKENS_SMALL = 8192, 2048
#: memory outside PyTorch's allocator that vLLM's profiler also subtracts (CUDA context, cuBLAS workspaces, NCCL
#: buffers): an ESTIMATE of 1 GiB per GPU, no published figure; CUDA-graph memory is allocated after the KV cache
#: is sized, out of the 10% vLLM leaves unused
NON_TORCH_BYTES = 1.0 * 1024**3


def bytes_per_param(precision: str) -> float:
    """Storage bytes per weight for a precision name (``bfloat16``, ``fp8``, ``mxfp4``...)."""
    try:
        return BYTES_PER_PARAM[precision]
    except KeyError as exc:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(BYTES_PER_PARAM)}") from exc


@by_spec()
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
    embedding = parts.embedding_billions * BILLION * BF16_BYTES
    experts_billions = parts.routed_experts_billions + parts.shared_experts_billions
    if precision == "mxfp4" and experts_billions > 0:
        experts = experts_billions * BILLION * quantised
        rest = (parts_total - parts.embedding_billions - experts_billions) * BILLION * BF16_BYTES
        return embedding + experts + rest
    return embedding + (parts_total - parts.embedding_billions) * BILLION * quantised


@by_spec()
def expert_bytes(arch: ArchitectureSpec, precision: str) -> float:
    """Bytes of one routed expert of one layer."""
    return mlp_params(arch.hidden_size, arch.moe_intermediate_size, arch.mlp_gated) * bytes_per_param(precision)


@by_spec()
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
    full, sliding_per_token, window, recurrent = _kv_terms(arch)
    sliding = sliding_per_token * min(context_tokens, window or context_tokens)
    return full * context_tokens + sliding + recurrent


@by_spec()
def _kv_terms(arch: ArchitectureSpec) -> tuple[float, float, int, float]:
    """(:func:`kv_bytes_per_token`, sliding-window layers x :func:`kv_bytes_per_token_per_layer`, the window,
    :func:`recurrent_state_bytes_per_sequence`) of a model: the parts of :func:`kv_bytes_per_sequence` that do not
    depend on the context."""
    return (kv_bytes_per_token(arch), arch.num_sliding_window_layers * kv_bytes_per_token_per_layer(arch),
            arch.sliding_window, recurrent_state_bytes_per_sequence(arch))


def usable_memory_bytes(gpu: GPUSpec) -> float:
    """Device memory as the driver reports it (nvidia-smi total, MiB x 2^20), else the datasheet GB x 10^9.

    The parts hold more than the vendor's round "GB" (H100 SXM: 81,559 MiB = 85.5 GB against "80GB").
    """
    return gpu.memory_mib * MIB if gpu.memory_mib else gpu.memory_gb * BILLION


def usable_memory_gb(gpu: GPUSpec) -> float:
    """Memory the engine may use per GPU: ``GPU_MEMORY_UTILIZATION`` x the reported capacity, GB."""
    return GPU_MEMORY_UTILIZATION * usable_memory_bytes(gpu) / BILLION


def kv_dtype_bytes(kv_cache_dtype: str = "auto") -> float:
    """Bytes per cached key/value element for vLLM's ``kv_cache_dtype`` ('auto' = model dtype, bf16)."""
    try:
        return KV_DTYPE_BYTES[kv_cache_dtype]
    except KeyError as exc:
        raise ValueError(f"unknown kv_cache_dtype {kv_cache_dtype!r}; known: {', '.join(KV_DTYPE_BYTES)}") from exc


def kv_bytes_per_sequence_at(arch: ArchitectureSpec, context_tokens: float, kv_cache_dtype: str = "auto") -> float:
    """Cache bytes of one sequence with the KV cache stored as ``kv_cache_dtype`` (fp8 halves the attention
    cache; a hybrid's recurrent Mamba state keeps its own dtype)."""
    recurrent = _kv_terms(arch)[3]
    attention = kv_bytes_per_sequence(arch, context_tokens) - recurrent
    return attention * kv_dtype_bytes(kv_cache_dtype) / KV_CACHE_BYTES + recurrent


def profile_batched_tokens(gpu: GPUSpec) -> int:
    """Tokens of vLLM's profiling pass on this GPU (its default ``max_num_batched_tokens``, OpenAI server)."""
    large = usable_memory_bytes(gpu) >= 70 * 1024**3 and gpu.architecture != "ampere"
    return PROFILE_BATCHED_TOKENS if large else PROFILE_BATCHED_TOKENS_SMALL


@by_spec()
def activation_peak_bytes(arch: ArchitectureSpec, tensor_parallel: int, max_num_seqs: float,
                          batched_tokens: int = PROFILE_BATCHED_TOKENS) -> float:
    """Peak activation memory of vLLM's profiling pass on one GPU (bytes, bf16 activations).

    The profile run pushes ``batched_tokens`` through the model; the largest live buffers are one layer's MLP
    gate/up output (2 x intermediate / TP per token, or top-k expert widths for MoE), q/k/v and the residual
    stream, plus the sampler's fp32 logits for ``max_num_seqs`` sequences (``vocab_size`` x 4 bytes each). An
    estimate of the profiler's reading, not a copy of it.
    """
    if arch.kind == "diffusion" or not arch.hidden_size:
        return 0.0
    tp = max(tensor_parallel, 1)
    mlp_width = (arch.num_experts_per_token * arch.moe_intermediate_size if arch.architecture == "moe"
                 else arch.intermediate_size)
    head_dim = arch.head_dim or arch.hidden_size // max(arch.num_attention_heads, 1)
    qkv = (arch.num_attention_heads + 2 * (arch.num_kv_heads or arch.num_attention_heads)) * head_dim
    per_token = BF16_BYTES * (2 * mlp_width / tp + qkv / tp + 4 * arch.hidden_size)
    return batched_tokens * per_token + max_num_seqs * arch.vocab_size * FP32_BYTES


def kv_pool_bytes_per_gpu(gpu: GPUSpec, weight_bytes_on_gpu: float, activation_bytes: float) -> float:
    """vLLM's KV-cache pool on one GPU: 0.9 x reported memory - weights - activation peak - non-torch memory
    (negative when the weights alone do not fit)."""
    return (GPU_MEMORY_UTILIZATION * usable_memory_bytes(gpu) - weight_bytes_on_gpu - activation_bytes
            - NON_TORCH_BYTES)


def llm_kv_pool_bytes_per_gpu(arch: ArchitectureSpec, gpu: GPUSpec, weight_bytes_on_gpu: float,
                              tensor_parallel: int, max_num_seqs: float) -> float:
    """:func:`kv_pool_bytes_per_gpu` with the activation peak of this model, layout and batch cap on this GPU."""
    activation = activation_peak_bytes(arch, tensor_parallel, max_num_seqs, profile_batched_tokens(gpu))
    return kv_pool_bytes_per_gpu(gpu, weight_bytes_on_gpu, activation)


def max_batch_that_fits(pool_per_gpu_bytes: float, num_gpus: int, kv_bytes_per_seq: float,
                        cache_copies: int = 1) -> float:
    """Largest number of concurrent sequences whose cache fits (paged KV: sized by the mean context).

    The pool is summed over GPUs (tensor parallel splits a sequence's cache by heads; replicas hold whole
    sequences). ``cache_copies`` > 1 when each rank must keep its own copy of a sequence's cache, as MLA's
    latent cache under tensor parallelism. Returns 0 when the weights alone do not fit.
    """
    if pool_per_gpu_bytes <= 0:
        return 0.0
    return pool_per_gpu_bytes * num_gpus / max(kv_bytes_per_seq * cache_copies, 1.0)


def mla_cache_copies(arch: ArchitectureSpec, num_gpus: int, attention_data_parallel: bool) -> int:
    """Copies of one sequence's cache across ranks: MLA's latent cache has no head axis to split, so under
    tensor parallelism every rank keeps it whole; attention data parallel keeps one copy per sequence."""
    return num_gpus if (arch.attention == "mla" and not attention_data_parallel) else 1


def decode_mean_context_tokens(input_tokens: float, output_tokens: float) -> float:
    """Mean context a decode step sees: a running batch holds sequences at every stage, on average
    input + output / 2 tokens each (paged KV)."""
    return input_tokens + output_tokens / 2.0


# ------------------------------------------------------------------------------- uses of the one rule

def max_concurrent_sequences(arch: ArchitectureSpec, pool_per_gpu_bytes: float, num_gpus: int,
                             context_tokens: float, attention_data_parallel: bool,
                             kv_cache_dtype: str = "auto") -> float:
    """Sequences of ``context_tokens`` (the mean decode context) whose cache fits the pool, MLA copies counted."""
    per_seq = kv_bytes_per_sequence_at(arch, context_tokens, kv_cache_dtype)
    return sequences_that_fit(arch, pool_per_gpu_bytes, num_gpus, per_seq, attention_data_parallel)


def sequences_that_fit(arch: ArchitectureSpec, pool_per_gpu_bytes: float, num_gpus: int, kv_bytes_per_seq: float,
                       attention_data_parallel: bool) -> float:
    """:func:`max_concurrent_sequences` for a caller that already has one sequence's cache bytes
    (:func:`kv_bytes_per_sequence_at`) and uses them again: MLA copies counted."""
    copies = mla_cache_copies(arch, num_gpus, attention_data_parallel)
    return max_batch_that_fits(pool_per_gpu_bytes, num_gpus, kv_bytes_per_seq, copies)


@dataclass(frozen=True)
class LlmFit:
    """Whether one sequence of the full context fits in the KV pool (numbers for the message)."""

    weight_bytes_per_gpu: float
    activation_and_other_bytes_per_gpu: float
    pool_per_gpu_bytes: float
    context_tokens: float
    sequence_gb: float
    fits: bool


def llm_fit_full_context(arch: ArchitectureSpec, gpu: GPUSpec, precision: str, num_gpus: int, data_parallel: int,
                         input_tokens: float, output_tokens: float, *, tensor_parallel: int = 1,
                         max_num_seqs: float = 1.0, kv_cache_dtype: str = "auto") -> LlmFit:
    """One sequence of input + output tokens must fit in the pool (:func:`llm_kv_pool_bytes_per_gpu`), with the
    same cache accounting as :func:`max_concurrent_sequences` (MLA copies counted)."""
    weights = weight_bytes_per_gpu(arch, precision, num_gpus, data_parallel)
    pool = llm_kv_pool_bytes_per_gpu(arch, gpu, weights, tensor_parallel, max_num_seqs)
    context = input_tokens + output_tokens
    per_seq = kv_bytes_per_sequence_at(arch, context, kv_cache_dtype)
    sequences = sequences_that_fit(arch, pool, num_gpus, per_seq, data_parallel > 1)
    other = GPU_MEMORY_UTILIZATION * usable_memory_bytes(gpu) - weights - pool
    return LlmFit(weights, other, pool, context, per_seq / BILLION, fits=sequences >= 1.0)


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
