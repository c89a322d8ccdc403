"""Physics steps, each against a hand calculation from the catalog's published config values."""

import math

import pytest

from estimator.physics import memory, step


def test_weight_bytes_bf16_fp8_and_per_gpu(catalog):
    """70B in bf16 is ~141 GB; FP8 halves the linear layers; tensor parallel divides by the GPU count."""
    arch = catalog.models["meta-llama/Llama-3.1-70B-Instruct"]
    bf16 = memory.weight_bytes_total(arch, "bfloat16")
    assert bf16 / 1e9 == pytest.approx(141.1, rel=0.01)
    assert memory.weight_bytes_total(arch, "fp8") < 0.55 * bf16
    assert memory.weight_bytes_per_gpu(arch, "bfloat16", 4) == pytest.approx(bf16 / 4)


def test_kv_bytes_per_token_gqa_and_mla(catalog):
    """GQA: 2 x layers x kv_heads x head_dim x 2 bytes; MLA stores (kv_lora_rank + rope dim) per layer."""
    llama = catalog.models["meta-llama/Llama-3.1-8B-Instruct"]
    assert memory.kv_bytes_per_token(llama) == 2 * 32 * 8 * 128 * 2
    deepseek = catalog.models["deepseek-ai/DeepSeek-V3.1"]
    assert memory.kv_bytes_per_token(deepseek) == deepseek.num_layers * (512 + 64) * 2


def test_sliding_window_caps_cache_growth(catalog):
    """Gemma 3 keeps only the window on its sliding layers, so long contexts grow the cache more slowly."""
    gemma = catalog.models["google/gemma-3-12b-it"]
    short = memory.kv_bytes_per_sequence(gemma, 2000)  # both beyond the 1024-token window
    long = memory.kv_bytes_per_sequence(gemma, 10_000)
    full_layers_only = memory.kv_bytes_per_token(gemma) * 8000
    assert long - short == pytest.approx(full_layers_only)


def test_hybrid_state_is_per_sequence_not_per_token(catalog):
    """Mamba layers add a fixed state per sequence, independent of the context length. Hand calculation from
    the published config (27 Mamba2 layers, 128 heads x 80 dims, d_state 128, 8 groups, conv kernel 4): fp32 SSM
    state 128 x 80 x 128 x 4 B plus a bf16 conv window (10240 + 2 x 8 x 128) x 3 x 2 B, per layer."""
    nemotron = catalog.models["nvidia/NVIDIA-Nemotron-Nano-9B-v2"]
    state = memory.recurrent_state_bytes_per_sequence(nemotron)
    assert state == 27 * (128 * 80 * 128 * 4 + (128 * 80 + 2 * 8 * 128) * 3 * 2)
    assert memory.kv_bytes_per_sequence(nemotron, 0) == pytest.approx(state)


def test_max_batch_that_fits(catalog):
    """Batch = pool per GPU x GPUs / cache per sequence (x copies); zero when the weights alone do not fit."""
    pool = 50e9
    assert memory.max_batch_that_fits(pool, 2, 1e9) == pytest.approx(100)
    assert memory.max_batch_that_fits(-1.0, 8, 1e9) == 0.0
    assert memory.max_batch_that_fits(pool, 2, 1e9, cache_copies=2) == pytest.approx(50)


def test_expected_distinct_experts():
    """One token touches top-k experts; a huge batch touches them all; uniform routing in between."""
    assert step.expected_distinct_experts(128, 1, 1) == pytest.approx(1.0)
    assert step.expected_distinct_experts(128, 8, 10_000) == pytest.approx(128.0)
    assert step.expected_distinct_experts(128, 1, 128) == pytest.approx(128 * (1 - (127 / 128) ** 128))


def test_sparse_moe_reads_fewer_weight_bytes_at_small_batch(catalog):
    """Maverick routes each token to 1 of 128 experts: a batch of 1 reads a small share of its 400B weights."""
    maverick = catalog.models["meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8"]
    one = step.weight_bytes_read_per_step(maverick, "fp8", 1)
    many = step.weight_bytes_read_per_step(maverick, "fp8", 4096)
    assert one < 0.1 * many


def test_flops_per_token_and_attention_growth(catalog):
    """Linear FLOPs are 2 x active params (minus the input embedding); attention grows with context."""
    qwen = catalog.models["Qwen/Qwen3-32B"]
    linear = step.linear_flops_per_token(qwen)
    assert linear / 1e9 == pytest.approx(2 * (32.76 - 0.78), rel=0.02)
    assert step.decode_flops_per_token(qwen, 8000) > step.decode_flops_per_token(qwen, 1000)


def test_roofline_times(catalog):
    """Compute time = FLOPs / (peak x GPUs); memory time = bytes / (bandwidth x GPUs); FP8 uses the FP8 peak."""
    gpu = catalog.gpus["H100-SXM"]
    compute, memory = step.roofline_step_time_s(1e15, 3.35e12, gpu, "bfloat16", 1)
    assert compute == pytest.approx(1e15 / (gpu.peak_tflops_bf16 * 1e12))
    assert memory == pytest.approx(1.0)
    assert step.peak_flops(gpu, "fp8") == pytest.approx(2 * step.peak_flops(gpu, "bfloat16"), rel=0.01)


def test_parallel_communication_volumes(catalog):
    """No traffic on one GPU; tensor parallel all-reduces grow toward 2x activations per layer; EP only for MoE."""
    llama = catalog.models["meta-llama/Llama-3.1-70B-Instruct"]
    assert step.tensor_parallel_comm_bytes_per_token(llama, 1) == 0
    assert step.tensor_parallel_comm_bytes_per_token(llama, 8) > step.tensor_parallel_comm_bytes_per_token(
        llama, 2)
    assert step.expert_parallel_comm_bytes_per_token(llama, 8) == 0
    qwen = catalog.models["Qwen/Qwen3-235B-A22B-Instruct-2507"]
    # 94 MoE layers x top-8 copies x hidden 4096 x 2 B (bf16), dispatch + combine, 7/8 of copies leave the GPU
    assert step.expert_parallel_comm_bytes_per_token(qwen, 8) == pytest.approx(2 * 94 * 8 * 4096 * 2 * 7 / 8)


def test_diffusion_latent_tokens_and_flops(catalog):
    """FLUX at 1024^2: 8x VAE and 2x2 patches give 64 x 64 = 4096 tokens; video multiplies by latent frames."""
    flux = catalog.models["black-forest-labs/FLUX.1-dev"]
    assert step.latent_tokens(flux, 1024, 1024) == 4096
    per_step = step.diffusion_flops_per_step(flux, 4096, 1)
    assert per_step > 2 * flux.denoiser_params_billions * 1e9 * 4096
    wan = catalog.models["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]
    tokens = step.latent_tokens(wan, 480, 832, 81)
    assert tokens == pytest.approx(math.ceil(480 / 16) * math.ceil(832 / 16) * 21)


def test_sequence_parallel_comm(catalog):
    """One GPU sends nothing; Ulysses sends 4 all-to-alls per layer and Ring 2 K/V passes per layer, checked
    against a hand calculation for Wan 2.1 1.3B (hidden 1536, 30 layers, classifier-free guidance doubles)."""
    wan = catalog.models["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]
    activations = 32760 * 1536 * 2 * 2 * 30  # tokens x hidden x bf16 bytes x CFG passes x layers, batch 1
    assert step.sequence_parallel_comm_bytes_per_step(wan, 32760, 1, 1, 1) == 0
    assert step.sequence_parallel_comm_bytes_per_step(wan, 32760, 1, 4, 1) == pytest.approx(
        4 * activations / 4 * 3 / 4)
    assert step.sequence_parallel_comm_bytes_per_step(wan, 32760, 1, 1, 4) == pytest.approx(
        2 * activations * 3 / 4)


def test_unknown_precision_is_a_clear_error():
    """A typo in a precision name must not silently default to bf16."""
    with pytest.raises(ValueError, match="unknown precision"):
        memory.bytes_per_param("fp7")
