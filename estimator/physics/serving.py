"""Serving-engine physics of a decode step: collectives, attention-DP layout, compute/memory overlap, prefill, TTFT.

(vLLM's KV-capacity rule and usable memory live in ``estimator/physics/memory.py``.)

Each step is a named function with its unit and source. Bytes are bytes, times seconds, FLOPs floating-point
operations (a multiply-add is 2). Nothing here is fitted to data.
"""

from __future__ import annotations

from estimator.catalog.catalog import ArchitectureSpec, GPUSpec

#: small-message all-reduce latency over NVLink on an HGX 8x H100: ~6 us at 2 GPUs with NVLS, rising with the GPU
#: count (NVIDIA/nccl#1259, nccl-tests all_reduce_perf with CUDA graphs). Used as the fixed cost per collective
#: on NVLink parts; PCIe parts pay the same startup plus their lower bandwidth in the volume term.
ALLREDUCE_LATENCY_S = 6e-6


#: fixed time per decoder block and decode step beyond the roofline, s, on every GPU. A decode layer is a chain of
#: about ten kernels (norms, QKV, rotary, attention, output projection, residual, gate/up, activation, down), each
#: with a few microseconds of latency beyond its bytes even under CUDA graphs. Set from ML.ENERGY v3's batch-8 runs
#: of Llama-3.1-8B (32 layers): median ITL 7.3 ms on H100 and 4.6 ms on B200 against weight-read rooflines of 4.8
#: and 2.0 ms, i.e. 79 and 81 us per layer beyond the roofline on both GPUs; across the v3 models at batch 8 the
#: time per layer is 140-230 us on B200 and 200-280 us on H100. Measured on the lent H200 for one Qwen3-32B layer,
#: the four BF16 GEMMs alone take 54 us beyond their weight-read time at 16 tokens (benchmarks/fp8_gemm_overhead.md).
#: Chosen before evaluation from those rows (all models, the held-out ones included), not fitted by the trainer.
DECODE_FLOOR_PER_BLOCK_S = 80e-6


def decoder_blocks(arch: ArchitectureSpec) -> int:
    """Blocks a decode step runs through in sequence: the transformer layers, plus, in a hybrid, its Mamba and MLP
    blocks, which are layers of their own (Nemotron-H: 4 attention + 27 Mamba + 25 MLP = 56 for Nano-9B-v2)."""
    if arch.architecture == "hybrid":
        return arch.num_layers + arch.num_mamba_layers + arch.num_mlp_layers
    return arch.num_layers


def decode_floor_s(arch: ArchitectureSpec) -> float:
    """Fixed time (s) of one decode step beyond the roofline: :func:`decoder_blocks` x
    :data:`DECODE_FLOOR_PER_BLOCK_S`, the same on every GPU (it is what keeps small models at small batch from
    speeding up by the full bandwidth ratio of a faster GPU)."""
    return decoder_blocks(arch) * DECODE_FLOOR_PER_BLOCK_S


#: fixed time per layer and decode step of an FP8 checkpoint with block scales, s. Each of a layer's four GEMM
#: groups (QKV, attention output, gate/up, down) first quantizes its activations per token and 128-wide group, a
#: separate kernel of ~3-4 us at decode sizes on H100 (vllm-project/vllm#25427, H100 benchmark of
#: per-token-group quantization); the block-scaled GEMMs themselves run below the bandwidth roofline at decode
#: batch sizes (vllm-project/vllm#48035: a block-scaled FP8 checkpoint decodes slower than FP16 at batch 1). Set to
#: 40 us (4 x ~3.5 us of quantization plus as much again of GEMM shortfall, rounded) before evaluation, not fitted.
#: For scale: ML.ENERGY's matched FP8/BF16 pairs of the 94-layer Qwen3-235B put the FP8 step 4-6 ms longer at
#: batch 8 (45-65 us per layer; docs: ../shared/docs/paper-notes.md row 38: FP8 costs more at batch 8-16 in 7 of 7).
#: Measured on the lent H200 with PyTorch's kernels for one Qwen3-32B layer (benchmarks/fp8_gemm_overhead.md): FP8
#: block GEMMs plus a fused quantization exceed the FP8 roofline at BF16's efficiency by 38-82 us per layer.
BLOCK_FP8_OVERHEAD_PER_LAYER_S = 40e-6


def block_fp8_overhead_s(arch: ArchitectureSpec, precision: str) -> float:
    """Fixed time (s) a decode step spends on the kernels of block-scaled FP8 weights (activation quantization and
    the block-scaled GEMMs' shortfall): layers x :data:`BLOCK_FP8_OVERHEAD_PER_LAYER_S` when the checkpoint has
    128 x 128 block scales (``arch.weight_block_scaled``) and runs in fp8; 0 otherwise (BF16, or FP8 with
    per-tensor / per-channel scales, whose GEMMs take one scale per row)."""
    if precision != "fp8" or not arch.weight_block_scaled:
        return 0.0
    return arch.num_layers * BLOCK_FP8_OVERHEAD_PER_LAYER_S


def allreduces_per_decode_step(arch: ArchitectureSpec, tensor_parallel: int) -> int:
    """Tensor-parallel all-reduces one decode step runs: two per transformer layer (attention output, MLP output);
    in a hybrid, one per block (each attention, Mamba and MLP block ends in its own row-parallel projection)."""
    if tensor_parallel <= 1:
        return 0
    if arch.architecture == "hybrid":
        return decoder_blocks(arch)
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


def vision_encoder_flops(arch: ArchitectureSpec, visual_tokens: float) -> float:
    """FLOPs (per request) of the vision encoder that turns the request's image or video into ``visual_tokens``
    prompt tokens: 2 x encoder parameters x patches, with ``arch.vision_patches_per_token`` patches behind each
    token (Qwen3-VL merges 2x2 patches of 16 px into one token: 4; Gemma 3's SigLIP sees 4096 patches of an
    896 x 896 image and pools them to 256 tokens: 16). Linear layers only: the encoder's own self-attention over
    its patches is left out (a lower bound; e.g. +~60% for Gemma 3's 27-layer SigLIP at 4096 patches). 0 for a
    model without those fields or a request without an image or video."""
    patches = max(visual_tokens, 0.0) * arch.vision_patches_per_token
    return 2.0 * arch.vision_params_billions * 1e9 * patches


def ttft_physics_s(prefill_flops_per_prompt: float, weight_bytes_read: float, prompts: float, peak_flops: float,
                   bandwidth_bytes_per_s: float, num_gpus: int) -> float:
    """Time to first token from prefill physics alone (labelled "physics only": nothing fitted; checked against
    the project's measured runs in ``benchmarks/ttft.md``).

    ``prompts`` prompts are prefilled together (a batch arriving at once); the step is compute bound unless the
    prompts are short: max(prefill FLOPs / peak, weights / bandwidth), spread over ``num_gpus``.
    """
    compute = prompts * prefill_flops_per_prompt / (peak_flops * num_gpus)
    memory = weight_bytes_read / (bandwidth_bytes_per_s * num_gpus)
    return max(compute, memory)
