"""Serving physics fixes of issue 18, each against a hand calculation from published config values."""

import pandas as pd
import pytest

from estimator.catalog.params import param_breakdown
from estimator.physics import memory, serving, step


def test_tied_embedding_models_keep_their_lm_head(catalog):
    """The LM head is a vocab x hidden matmul per token whether or not it shares the input embedding matrix.

    Qwen3-4B (tied): 36 x (attention 2560x(2x4096 + 2x1024) + MLP 3 x 2560 x 9728) + 151936 x 2560, all matmuls.
    """
    qwen = catalog.models["Qwen/Qwen3-4B"]
    per_layer = 2560 * (2 * 32 * 128 + 2 * 8 * 128) + 3 * 2560 * 9728
    hand = 2.0 * (36 * per_layer + 151936 * 2560)
    assert step.linear_flops_per_token(qwen) == pytest.approx(hand, rel=1e-6)
    assert step.lm_head_params(qwen) == 151936 * 2560
    # untied Llama-3.1-8B: only the input table is free (one row looked up per token)
    llama = catalog.models["meta-llama/Llama-3.1-8B-Instruct"]
    per_layer = 4096 * (2 * 32 * 128 + 2 * 8 * 128) + 3 * 4096 * 14336
    assert step.linear_flops_per_token(llama) == pytest.approx(2.0 * (32 * per_layer + 128256 * 4096), rel=1e-6)
    # the tied matrix is streamed by the LM head every step, so a decode step reads it
    read = step.weight_bytes_read_per_step(qwen, "bfloat16", 1)
    assert read == pytest.approx(memory.weight_bytes_total(qwen, "bfloat16"))


def test_fp4_formats_size_dense_models_and_use_the_fp4_peak(catalog):
    """MXFP4 is 4.25 bits (a shared 8-bit scale per 32 values), NVFP4 4.5 bits (an FP8 scale per 16); on a dense
    model every linear layer is quantised. Llama-3.1-405B: (405.9B - 2 x 128256 x 16384 embedding) x 4.25/8 bytes
    + the bf16 embeddings = ~221 GB, ~55 GB per GPU on 4 GPUs (not 203 GB as bf16 sizing gave)."""
    assert memory.bytes_per_param("mxfp4") == 4.25 / 8
    assert memory.bytes_per_param("nvfp4") == 4.5 / 8
    arch = catalog.models["meta-llama/Llama-3.1-405B-Instruct"]
    embedding = 2 * 128256 * 16384
    linear = memory.weight_bytes_total(arch, "bfloat16") / 2 - embedding
    hand = linear * 4.25 / 8 + embedding * 2
    assert memory.weight_bytes_total(arch, "mxfp4") == pytest.approx(hand, rel=1e-9)
    assert memory.weight_bytes_per_gpu(arch, "mxfp4", 4) / 1e9 == pytest.approx(55.4, rel=0.02)
    assert step.peak_flops(catalog.gpus["B200"], "mxfp4") == 9000e12
    assert step.peak_flops(catalog.gpus["H100-SXM"], "nvfp4") == 1979e12  # no FP4 on Hopper: FP8 peak


def test_mxfp4_moe_quantises_experts_only(catalog):
    """gpt-oss ships MXFP4 experts and bf16 attention: experts x 4.25/8 bytes + everything else x 2 bytes."""
    arch = catalog.models["openai/gpt-oss-120b"]
    parts = param_breakdown(arch)
    experts = (parts.routed_experts_billions + parts.shared_experts_billions) * 1e9
    rest = (parts.total_billions - arch.other_params_billions) * 1e9 - experts
    assert memory.weight_bytes_total(arch, "mxfp4") == pytest.approx(experts * 4.25 / 8 + rest * 2, rel=1e-9)


def test_usable_memory_is_what_the_driver_reports(catalog):
    """nvidia-smi totals, not the vendor's round GB: H100 81,559 MiB = 85.52 GB; B200 183,359 MiB = 192.3 GB."""
    assert memory.usable_memory_bytes(catalog.gpus["H100-SXM"]) == 81559 * 2**20
    assert memory.usable_memory_bytes(catalog.gpus["B200"]) / 1e9 == pytest.approx(192.27, rel=1e-3)
    assert memory.usable_memory_bytes(catalog.gpus["H100-PCIe"]) == 80e9  # no driver figure: datasheet GB


def test_vllm_kv_pool_arithmetic(catalog):
    """vLLM: pool = 0.9 x total - weights - profiled activation peak - non-torch memory.

    Llama-3.1-8B, TP 1, max_num_seqs 256 on an H100: activation = 8192 tokens x 2 bytes x (2 x 14336 MLP +
    48 x 128 qkv + 4 x 4096) + 256 x 128256 x 4 bytes of logits = 838.9 MB + 131.3 MB.
    """
    llama = catalog.models["meta-llama/Llama-3.1-8B-Instruct"]
    gpu = catalog.gpus["H100-SXM"]
    assert memory.profile_batched_tokens(gpu) == 8192
    activation = memory.activation_peak_bytes(llama, 1, 256, 8192)
    assert activation == pytest.approx(8192 * 2 * (2 * 14336 + 48 * 128 + 4 * 4096) + 256 * 128256 * 4)
    weights = memory.weight_bytes_total(llama, "bfloat16")
    pool = memory.kv_pool_bytes_per_gpu(gpu, weights, activation)
    assert pool == pytest.approx(0.9 * 81559 * 2**20 - weights - activation - 2**30)
    assert 57e9 < pool < 60e9


def test_fp8_kv_cache_halves_attention_cache_bytes(catalog):
    """kv_cache_dtype fp8 stores one byte per value instead of two (bf16 'auto')."""
    llama = catalog.models["meta-llama/Llama-3.1-8B-Instruct"]
    auto = memory.kv_bytes_per_sequence_at(llama, 1000, "auto")
    assert auto == 1000 * 2 * 32 * 8 * 128 * 2
    assert memory.kv_bytes_per_sequence_at(llama, 1000, "fp8") == auto / 2
    with pytest.raises(ValueError, match="kv_cache_dtype"):
        memory.kv_dtype_bytes("int3")


def test_tensor_parallel_collectives_pay_latency(catalog):
    """Two all-reduces per layer per decode step, each 6 us plus 2 (n-1)/n x message / (900/2 GB/s) on H100."""
    llama70 = catalog.models["meta-llama/Llama-3.1-70B-Instruct"]
    gpu = catalog.gpus["H100-SXM"]
    assert serving.allreduces_per_decode_step(llama70, 1) == 0
    assert serving.allreduces_per_decode_step(llama70, 4) == 160
    message = 64 * 8192 * 2
    one = serving.allreduce_time_s(gpu, 4, message)
    assert one == pytest.approx(6e-6 + 1.5 * message / 450e9)
    assert serving.tensor_parallel_step_time_s(llama70, gpu, 4, 64) == pytest.approx(160 * one)
    assert serving.tensor_parallel_step_time_s(llama70, gpu, 1, 64) == 0.0


def test_attention_data_parallel_replicates_non_expert_reads(catalog):
    """Under DP attention each rank streams its own copy of the non-expert weights; experts are read once."""
    arch = catalog.models["Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8"]
    assert serving.attention_dp_weight_bytes_read(arch, 10e9, 100e9, 8) == 8 * 10e9 + 100e9
    from estimator.physics.step import _weights_read

    single, _ = _weights_read(arch, "fp8", 256, 1)
    replicated, _ = _weights_read(arch, "fp8", 256, 8)
    assert replicated > single


def test_decode_step_sums_compute_and_memory_and_prefill_counts_attention(catalog):
    """The step is the sum of roofline compute and memory time (kernels in series); prefill of a 1000-token
    Llama-3.1-8B prompt: 15.0 GFLOP/token x 1000 + 4 x 32 x 128 x 1000 x 32 layers x 500 = 15.27 TFLOP,
    ~15.4 ms at the H100's 989.5 TFLOP/s (the TTFT physics, compute bound)."""
    assert serving.decode_step_time_s(0.002, 0.005) == pytest.approx(0.007)
    llama = catalog.models["meta-llama/Llama-3.1-8B-Instruct"]
    linear = step.linear_flops_per_token(llama)
    flops = serving.prefill_flops(llama, linear, 1000)
    assert flops == pytest.approx(linear * 1000 + 4 * 32 * 128 * 1000 * 32 * 500)
    gpu = catalog.gpus["H100-SXM"]
    ttft = serving.ttft_physics_s(flops, 16e9, 1, step.peak_flops(gpu, "bfloat16"), 3.35e12, 1)
    assert ttft * 1e3 == pytest.approx(15.43, rel=0.01)


def test_one_fit_rule_for_features_and_prediction(catalog):
    """The featurizer's feasible batch and prediction's refusal use the same pool: a 405B model in bf16 on one
    B200 does not fit (weights alone exceed 0.9 x 192 GB) and the featurizer finds no feasible batch."""
    from estimator.learn.features import featurize
    from estimator.learn.prediction import memory_reason

    arch = catalog.models["meta-llama/Llama-3.1-405B-Instruct"]
    values = {"gpu_model": "B200", "num_gpus": 1, "weight_precision": "bfloat16", "data_parallel": 1,
              "tensor_parallel": 1, "max_num_seqs": 64, "avg_input_len": 100.0, "avg_output_len": 500.0}
    assert memory_reason(arch, values, catalog).startswith("does not fit")
    frame = pd.DataFrame([{**values, "model_id": "meta-llama/Llama-3.1-405B-Instruct", "task": "lm-arena-chat"}])
    assert featurize(frame, catalog)["fits_in_memory"].iloc[0] == 0.0
    fp4 = {**values, "gpu_model": "GB200", "num_gpus": 4, "tensor_parallel": 4, "weight_precision": "mxfp4"}
    assert memory_reason(arch, fp4, catalog) is None


def test_sdxl_unet_flops_match_a_hand_calculation(catalog):
    """SDXL at 1024 px runs attention only at 64x64 (640 ch, 10 transformer blocks) and 32x32 (1280 ch, 60
    blocks); the 128x128 stage is ResNets only. Hand count per sample and step: transformer blocks
    (36 C^2 N linear + 4 N^2 C attention) plus 3x3 ResNets (18 C^2 N each: 5 at 128^2, 5 at 64^2, 7 at 32^2)
    = ~5.5 TFLOP; the stage walk must land within 1.5x (it adds skip-widened ResNets, samplers, cross-attention),
    and far below the DiT reading of the same model (2 x 2.567B x 16384 tokens + full attention, ~180 TFLOP)."""
    from estimator.physics.unet import unet_cost, unet_flops_per_step

    sdxl = catalog.models["stabilityai/stable-diffusion-xl-base-1.0"]

    def block(c, n):
        return 36 * c * c * n + 4 * n * n * c

    hand = 10 * block(640, 64 * 64) + 60 * block(1280, 32 * 32)
    hand += 18 * (5 * 320**2 * 128**2 + 5 * 640**2 * 64**2 + 7 * 1280**2 * 32**2)
    cost = unet_cost(sdxl, 1024, 1024)
    assert 1 / 1.5 < cost.flops / hand < 1.5
    total, attention = unet_flops_per_step(sdxl, 1024, 1024, 1)
    assert total == pytest.approx(2 * cost.flops)  # classifier-free guidance doubles the batch
    assert total < 0.1 * step.diffusion_flops_per_step(sdxl, 128 * 128, 1)
    assert attention < 0.2 * total


@pytest.mark.parametrize("model, stated_billions", [("stabilityai/stable-diffusion-xl-base-1.0", 2.567),
                                                    ("stable-diffusion-v1-5/stable-diffusion-v1-5", 0.86),
                                                    ("stabilityai/stable-diffusion-2-1", 0.865)])
def test_unet_parameters_derived_from_config_match_the_stated_count(catalog, model, stated_billions):
    """The stage walk's parameter count checks the UNet fields against the published size (within 2%)."""
    from estimator.physics.unet import unet_cost

    arch = catalog.models[model]
    assert unet_cost(arch, arch.default_height, arch.default_width).params / 1e9 == pytest.approx(
        stated_billions, rel=0.02)


def test_static_batch_ttft_is_the_whole_padded_rounds_prefill(catalog):
    """The static harness's TTFT (measure/backends/torch_backend.py _round) is the whole round's prefill: 8
    Llama-3.1-8B prompts padded to 1000 tokens = 8 x 15.27 TFLOP = 122.2 TFLOP, 123.5 ms at 989.5 TFLOP/s on one
    H100. On 2 GPUs (TP 2) compute halves (61.7 ms) and 2 x 32 all-reduces of 8000 x 4096 x 2 B = 65.5 MB each
    add 64 x (6 us + 65.5 MB / 450 GB/s per direction) = 9.70 ms."""
    llama, gpu = catalog.models["meta-llama/Llama-3.1-8B-Instruct"], catalog.gpus["H100-SXM"]
    assert gpu.interconnect_bandwidth_gb_per_sec == 900
    one = step.static_batch_ttft_s(llama, gpu, precision="bfloat16", num_gpus=1, tensor_parallel=1, prompts=8,
                                   padded_prompt_tokens=1000)
    assert one * 1e3 == pytest.approx(8 * 15.43, rel=0.01)
    two = step.static_batch_ttft_s(llama, gpu, precision="bfloat16", num_gpus=2, tensor_parallel=2, prompts=8,
                                   padded_prompt_tokens=1000)
    assert two * 1e3 == pytest.approx(8 * 15.43 / 2 + 64 * (6e-3 + 65.536e6 / 450e9 * 1e3), rel=0.01)
