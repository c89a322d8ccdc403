"""FP8 checkpoints with 128 x 128 block scales pay a fixed kernel time per layer and decode step.

vLLM runs such checkpoints (DeepSeek-V3/R1, the Qwen3 -FP8 releases) with a per-token-group activation quantization
kernel before every FP8 GEMM and block-scaled GEMM kernels, and ML.ENERGY's matched pairs show those models costing
more than their BF16 twins at batch 8-16 although they read half the weight bytes. Before this term the roofline
had only the halved bytes, so a held-out block-FP8 model was predicted too cheap at small batch (Qwen3-VL-235B-FP8
at x0.5). These tests fail if the term is lost from the decode step (either GPU's roofline), applied to a BF16 run
or to an FP8 checkpoint with per-tensor or per-channel scales, or if config.json's ``weight_block_size`` stops
reaching the catalog spec of a user's model.
"""

import pytest

from estimator.catalog.catalog import load_catalog
from estimator.catalog.hf_config import architecture_from_hf_config
from estimator.physics import memory, serving, step

QWEN_FP8, QWEN_BF16 = "Qwen/Qwen3-235B-A22B-Thinking-2507-FP8", "Qwen/Qwen3-235B-A22B-Thinking-2507"
MAVERICK_FP8, LLAMA_FP8 = "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8", "meta-llama/Llama-3.1-405B-Instruct-FP8"


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_hand_value_for_qwen3_235b_fp8(catalog):
    """94 layers x 40 us = 3.76 ms per decode step (hand arithmetic)."""
    arch = catalog.models[QWEN_FP8]
    assert arch.num_layers == 94 and arch.weight_block_scaled
    assert serving.block_fp8_overhead_s(arch, "fp8") == pytest.approx(94 * 40e-6)


def test_no_overhead_without_block_scales_or_in_bf16(catalog):
    """BF16 twin, the FP8 checkpoint run in bf16, and per-channel FP8 checkpoints (Maverick, Llama 405B) pay 0."""
    assert serving.block_fp8_overhead_s(catalog.models[QWEN_BF16], "bfloat16") == 0.0
    assert serving.block_fp8_overhead_s(catalog.models[QWEN_FP8], "bfloat16") == 0.0
    for model in (MAVERICK_FP8, LLAMA_FP8):
        assert not catalog.models[model].weight_block_scaled
        assert serving.block_fp8_overhead_s(catalog.models[model], "fp8") == 0.0


def test_decode_step_roofline_carries_the_overhead_on_both_gpus(catalog):
    """The configuration's and the reference GPU's roofline step both include the same 3.76 ms (plus the floor)."""
    arch, gpu, ref = catalog.models[QWEN_FP8], catalog.gpus["B200"], catalog.gpus["H100-SXM"]
    pool = memory.llm_kv_pool_bytes_per_gpu(arch, gpu, memory.weight_bytes_per_gpu(arch, "fp8", 4), 1, 8)
    s = step.decode_step(arch, gpu, ref, precision="fp8", num_gpus=4, max_num_seqs=8, kv_pool_per_gpu_bytes=pool,
                         data_parallel=1, tensor_parallel=1, expert_parallel=4, input_tokens=200.0,
                         output_tokens=1000.0)
    fixed = 3.76e-3 + 94 * serving.DECODE_FLOOR_PER_BLOCK_S  # block-FP8 time + the per-block floor (94 layers)
    assert s.kernel_overhead_s == pytest.approx(fixed)
    assert s.roofline_step_s - (s.compute_s + s.memory_s + s.comm_s) == pytest.approx(fixed)
    assert s.ref_roofline_step_s - (s.ref_compute_s + s.ref_memory_s + s.ref_comm_s) == pytest.approx(fixed)


def test_catalog_flags_exactly_the_block_scaled_checkpoints(catalog):
    """Each flagged entry cites where its block scales are documented."""
    flagged = sorted(m for m, a in catalog.models.items() if a.weight_block_scaled)
    assert flagged == sorted([
        "deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-R1-0528",
        "deepseek-ai/DeepSeek-V3.1", "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8", QWEN_FP8,
        "Qwen/Qwen3-VL-235B-A22B-Instruct-FP8", "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8"])
    for model in flagged:
        assert catalog.models[model].native_precision == "fp8"
        assert any("weight_block_scaled" in source for source in catalog.models[model].sources), model


def _config(quantization: dict) -> dict:
    return {"model_type": "qwen3", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": 1000, "intermediate_size": 512, "quantization_config": quantization}


def test_hf_config_reads_weight_block_size():
    """DeepSeek-V3 README_WEIGHTS.md's quantization_config -> flagged; per-channel compressed-tensors -> not."""
    block = architecture_from_hf_config(_config({"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                                 "weight_block_size": [128, 128]}), model_id="x/block", source="t")
    assert (block.native_precision, block.weight_block_scaled) == ("fp8", True)
    assert "128 x 128 block scales" in block.notes
    channel = architecture_from_hf_config(_config({
        "quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {
            "num_bits": 8, "type": "float", "strategy": "channel"}}}}), model_id="x/channel", source="t")
    assert (channel.native_precision, channel.weight_block_scaled) == ("fp8", False)


def test_assumptions_state_the_overhead_only_for_block_scaled_fp8():
    """A user sees the 3.8 ms per step in the printed assumptions of the FP8 checkpoint, not of its BF16 twin."""
    from estimator import estimate

    fp8 = estimate(QWEN_FP8, "gpqa", "b200", num_gpus=4, batch=[8])
    bf16 = estimate(QWEN_BF16, "gpqa", "b200", num_gpus=4, batch=[8])
    line = next(a for a in fp8.assumptions if a.startswith("precision:"))
    assert "block scales" in line and "3.8 ms per decode step (94 layers x 40 us)" in line
    assert not any("block scales" in a for a in bf16.assumptions)
