"""Serving-engine physics: usable memory and vLLM's KV-capacity rule, collectives, layouts, prefill and TTFT.

Each step is a named function with its unit and source. Bytes are bytes, times seconds, FLOPs floating-point
operations (a multiply-add is 2). Nothing here is fitted to data.
"""

from __future__ import annotations

from estimator import physics
from estimator.catalog import ArchitectureSpec, GPUSpec
from estimator.physics_params import moe_layer_count, param_breakdown

MIB = 1024 * 1024
#: vLLM's default ``gpu_memory_utilization``: the share of TOTAL device memory the engine may use
#: (vllm/config/cache.py, CacheConfig.gpu_memory_utilization = 0.9)
GPU_MEMORY_UTILIZATION = 0.9
#: vLLM V1's default ``max_num_batched_tokens`` for the OpenAI server: 8192 on GPUs with >= 70 GiB that are not
#: A100, else 2048 (vllm/engine/arg_utils.py, default_max_num_batched_tokens[UsageContext.OPENAI_API_SERVER]);
#: the profiling forward pass that measures the activation peak runs this many tokens
PROFILE_BATCHED_TOKENS, PROFILE_BATCHED_TOKENS_SMALL = 8192, 2048
#: memory outside PyTorch's allocator that vLLM's profiler subtracts too (CUDA context, cuBLAS workspaces, NCCL
#: buffers under tensor parallelism): an ESTIMATE of ~1 GiB per GPU (the CUDA context alone is several hundred MiB
#: on Hopper); CUDA-graph memory is allocated after the KV cache is sized, from the 10% vLLM leaves unused
NON_TORCH_BYTES = 1.0 * 1024**3
#: KV-cache bytes per value by ``kv_cache_dtype`` ('auto' follows the bf16 model dtype; fp8 halves it)
KV_DTYPE_BYTES = {"auto": 2.0, "bfloat16": 2.0, "float16": 2.0, "fp8": 1.0, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0}
#: small-message all-reduce latency over NVLink on an HGX 8x H100: ~6 us at 2 GPUs with NVLS, rising with the GPU
#: count (NVIDIA/nccl#1259, nccl-tests all_reduce_perf with CUDA graphs). Used as the fixed cost per collective
#: on NVLink parts; PCIe parts pay the same startup plus their lower bandwidth in the volume term.
ALLREDUCE_LATENCY_S = 6e-6


def usable_memory_bytes(gpu: GPUSpec) -> float:
    """Device memory as the driver reports it (nvidia-smi total, MiB x 2^20), else the datasheet GB x 10^9.

    The parts hold more than the vendor's round "GB" (H100 SXM: 81,559 MiB = 85.5 GB against "80GB").
    """
    return gpu.memory_mib * MIB if gpu.memory_mib else gpu.memory_gb * 1e9


def kv_dtype_bytes(kv_cache_dtype: str = "auto") -> float:
    """Bytes per cached key/value element for vLLM's ``kv_cache_dtype`` ('auto' = model dtype, bf16)."""
    try:
        return KV_DTYPE_BYTES[kv_cache_dtype]
    except KeyError as exc:
        raise ValueError(f"unknown kv_cache_dtype {kv_cache_dtype!r}; known: {', '.join(KV_DTYPE_BYTES)}") from exc


def profile_batched_tokens(gpu: GPUSpec) -> int:
    """Tokens of vLLM's profiling pass on this GPU (its default ``max_num_batched_tokens``, OpenAI server)."""
    large = usable_memory_bytes(gpu) >= 70 * 1024**3 and gpu.architecture != "ampere"
    return PROFILE_BATCHED_TOKENS if large else PROFILE_BATCHED_TOKENS_SMALL


def kv_bytes_per_sequence_at(arch: ArchitectureSpec, context_tokens: float, kv_cache_dtype: str = "auto") -> float:
    """Cache bytes of one sequence with the KV cache stored as ``kv_cache_dtype`` (fp8 halves the attention
    cache; a hybrid's recurrent Mamba state keeps its own dtype)."""
    recurrent = physics.recurrent_state_bytes_per_sequence(arch)
    attention = physics.kv_bytes_per_sequence(arch, context_tokens) - recurrent
    return attention * kv_dtype_bytes(kv_cache_dtype) / physics.KV_CACHE_BYTES + recurrent


def activation_peak_bytes(arch: ArchitectureSpec, tensor_parallel: int, max_num_seqs: float,
                          batched_tokens: int = PROFILE_BATCHED_TOKENS) -> float:
    """Peak activation memory of vLLM's profiling pass on one GPU (bytes, bf16 activations).

    The profile run pushes ``batched_tokens`` through the model; the largest live buffers are one layer's MLP
    gate/up output (2 x intermediate / TP per token, or top-k expert widths for MoE), the residual stream and
    q/k/v, plus the sampler's fp32 logits for ``max_num_seqs`` sequences (``vocab_size`` x 4 bytes each). An
    estimate of the profiler's reading, not a copy of it.
    """
    if arch.kind == "diffusion" or not arch.hidden_size:
        return 0.0
    tp = max(tensor_parallel, 1)
    if arch.architecture == "moe":
        mlp_width = arch.num_experts_per_token * arch.moe_intermediate_size
    else:
        mlp_width = arch.intermediate_size
    head_dim = arch.head_dim or arch.hidden_size // max(arch.num_attention_heads, 1)
    qkv = (arch.num_attention_heads + 2 * (arch.num_kv_heads or arch.num_attention_heads)) * head_dim
    per_token = 2.0 * (2 * mlp_width / tp + qkv / tp + 4 * arch.hidden_size)
    logits = max_num_seqs * arch.vocab_size * 4.0
    return batched_tokens * per_token + logits


def kv_pool_bytes_per_gpu(gpu: GPUSpec, weight_bytes_on_gpu: float, activation_bytes: float) -> float:
    """vLLM's KV-cache pool on one GPU: 0.9 x total memory - weights - activation peak - non-torch memory.

    The single "does it fit" rule: a configuration fits when this pool, summed over the GPUs that share a
    sequence's cache, holds at least one sequence. Negative when the weights alone do not fit.
    """
    return (GPU_MEMORY_UTILIZATION * usable_memory_bytes(gpu) - weight_bytes_on_gpu - activation_bytes
            - NON_TORCH_BYTES)


def allreduces_per_decode_step(arch: ArchitectureSpec, tensor_parallel: int) -> int:
    """Tensor-parallel all-reduces one decode step runs: two per layer (attention output, MLP output)."""
    if tensor_parallel <= 1:
        return 0
    return 2 * arch.num_layers


def allreduce_time_s(gpu: GPUSpec, tensor_parallel: int, message_bytes: float) -> float:
    """One ring all-reduce: fixed latency plus 2 (n-1)/n x message / per-direction link bandwidth.

    The catalog's interconnect figure is bidirectional per GPU, so one direction is half of it.
    """
    if tensor_parallel <= 1:
        return 0.0
    per_direction = gpu.interconnect_bandwidth_gb_per_sec * 1e9 / 2
    return ALLREDUCE_LATENCY_S + 2 * (tensor_parallel - 1) / tensor_parallel * message_bytes / per_direction


def tensor_parallel_step_time_s(arch: ArchitectureSpec, gpu: GPUSpec, tensor_parallel: int,
                                batch_tokens: float) -> float:
    """Communication time of one decode step under tensor parallelism: all-reduces x (latency + volume), each
    message one bf16 hidden vector per token in the step."""
    message = batch_tokens * arch.hidden_size * 2.0
    return allreduces_per_decode_step(arch, tensor_parallel) * allreduce_time_s(gpu, tensor_parallel, message)


def attention_dp_weight_bytes_read(arch: ArchitectureSpec, non_expert_bytes: float, touched_expert_bytes: float,
                                   data_parallel: int) -> float:
    """Weight bytes a decode step reads over all GPUs under attention data parallelism (vLLM DP attention +
    expert parallel MoE): every DP rank reads its own replica of the non-expert weights (attention, dense
    layers, embeddings), while the sharded experts are read once, as many as the whole batch touches."""
    return non_expert_bytes * max(data_parallel, 1) + touched_expert_bytes


def decode_step_time_s(compute_s: float, memory_s: float) -> float:
    """Time of one decode step from its roofline compute and memory times: their SUM.

    Justification: a decode step is a chain of kernels (GEMMs, attention, norms, all-reduces) that run one after
    another; at decode batch sizes the weight GEMMs are memory bound and the attention kernel is KV-read bound,
    while the compute-bound share sits in other kernels. Overlap happens inside a kernel, not between kernels
    with different bottlenecks, so max(compute, memory) is the lower envelope and the sum the upper one; the sum is
    kept (the learned part scales it), and at small batch the two coincide within the compute share.
    """
    return compute_s + memory_s


def prefill_flops(arch: ArchitectureSpec, linear_flops_per_token: float, prompt_tokens: float) -> float:
    """FLOPs to prefill one prompt: linear layers per token plus causal attention (QK^T and AV over on average
    half the prompt, full-attention layers; sliding layers capped at their window)."""
    if prompt_tokens <= 0:
        return 0.0
    head_dim = arch.head_dim or arch.hidden_size // max(arch.num_attention_heads, 1)
    full_layers = max(arch.num_layers - arch.num_sliding_window_layers, 0)
    window = min(prompt_tokens, arch.sliding_window or prompt_tokens)
    attention = 4.0 * arch.num_attention_heads * head_dim * prompt_tokens * (
        full_layers * prompt_tokens / 2 + arch.num_sliding_window_layers * window / 2)
    return linear_flops_per_token * prompt_tokens + attention


def ttft_physics_s(prefill_flops_per_prompt: float, weight_bytes_read: float, prompts: float, peak_flops: float,
                   bandwidth_bytes_per_s: float, num_gpus: int) -> float:
    """Time to first token from prefill physics alone (labelled "physics only": no run records TTFT yet).

    ``prompts`` prompts are prefilled together (a batch arriving at once); the step is compute bound unless the
    prompts are short: max(prefill FLOPs / peak, weights / bandwidth), spread over ``num_gpus``.
    """
    compute = prompts * prefill_flops_per_prompt / (peak_flops * num_gpus)
    memory = weight_bytes_read / (bandwidth_bytes_per_s * num_gpus)
    return max(compute, memory)


def non_expert_fraction(arch: ArchitectureSpec) -> float:
    """Share of an MoE model's parameters outside the routed experts (1.0 for dense models)."""
    parts = param_breakdown(arch)
    if not moe_layer_count(arch) or parts.total_billions <= 0:
        return 1.0
    return 1.0 - parts.routed_experts_billions / parts.total_billions
