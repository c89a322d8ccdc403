"""The new torch paths on a real GPU (marked ``gpu``; run on the lent H200s, results in
benchmarks/measure_selfcheck.md): the ragged Triton attention and the grouped-GEMM MoE against plain references,
inside CUDA graphs, and tiny sweeps through continuous batching, MoE, tensor parallelism, the DiT and the UNet."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu

TINY = {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
        "head_dim": 128, "intermediate_size": 512, "vocab_size": 1024}


def _rel(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_ragged_kernel_matches_masked_sdpa_in_a_graph():
    """The kernel must compute masked attention over each row's own length (bf16 error < 1e-2), also when
    replayed from a CUDA graph after the lengths changed on the device."""
    import torch

    from measure.backends.ragged_attention import ragged_decode_attention, reference_decode_attention

    torch.manual_seed(0)
    b, nh, nkv, d, smax = 24, 32, 8, 128, 1100
    q = torch.randn(b, nh, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, smax, nkv, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(b, smax, nkv, d, device="cuda", dtype=torch.bfloat16)
    pos = torch.randint(0, smax, (b,), device="cuda")
    assert _rel(ragged_decode_attention(q, k, v, pos), reference_decode_attention(q, k, v, pos)) < 1e-2
    out = torch.empty_like(q)
    ragged_decode_attention(q, k, v, pos)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out.copy_(ragged_decode_attention(q, k, v, pos))
    pos.copy_(torch.randint(0, smax, (b,), device="cuda"))
    graph.replay()
    assert _rel(out, reference_decode_attention(q, k, v, pos)) < 1e-2


def test_grouped_moe_matches_reference_on_cuda_in_a_graph():
    """torch._grouped_mm with padded groups must equal the token-by-token expert loop (Qwen3-30B-A3B widths),
    eagerly and replayed from a CUDA graph with new inputs."""
    import torch

    from measure.backends.torch_moe import build_moe_layer, moe_ffn, moe_ffn_reference
    from measure.schema import ModelShape

    shape = ModelShape(hidden_size=2048, num_hidden_layers=1, num_attention_heads=32, num_key_value_heads=4,
                       head_dim=128, intermediate_size=0, vocab_size=1000, num_experts=128, num_experts_per_tok=8,
                       moe_intermediate_size=768)
    gen = torch.Generator(device="cuda").manual_seed(0)
    layer = build_moe_layer(
        shape, lambda *d: torch.randn(*d, device="cuda", dtype=torch.bfloat16, generator=gen) * 0.02)
    x = torch.randn(12, 2048, device="cuda", dtype=torch.bfloat16)
    ref = moe_ffn_reference(x.float(), {k: t.float() for k, t in layer.items()}, shape)
    assert _rel(moe_ffn(x, layer, shape), ref) < 2e-2
    stats = torch.zeros((), dtype=torch.long, device="cuda")
    out = torch.empty_like(x)
    moe_ffn(x, layer, shape, stats)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out.copy_(moe_ffn(x, layer, shape, stats))
    x.copy_(torch.randn(12, 2048, device="cuda", dtype=torch.bfloat16))
    graph.replay()
    ref = moe_ffn_reference(x.float(), {k: t.float() for k, t in layer.items()}, shape)
    assert _rel(out, ref) < 2e-2


def _spec(tmp_name: str, **kw):
    from measure.schema import SweepSpec

    d = {"name": tmp_name, "batch_sizes": [16], "model": {"model_id": "tiny", "config": TINY},
         "workload": {"forced_output_len": 64}, "harness": {"warmup_s": 0.5, "min_steady_state_s": 2.0}}
    for k, v in kw.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    return SweepSpec.model_validate(d)


def test_continuous_and_moe_sweeps_on_cuda(tmp_path):
    """Continuous batching (ragged attention, one graph) keeps the batch full and reports TTFT; an MoE shape
    runs through graphs and reports experts touched."""
    from measure.sweep import run_sweep

    cb = _spec("gpu-cb", workload={"forced_output_len": None, "output_len_median": 60, "output_len_sigma": 0.8,
                                   "output_len_max": 400}, torch={"batching": "continuous", "attention": "ragged"})
    rec = run_sweep(cb, tmp_path / "cb", idle_s=0.5).records[0]
    assert rec.avg_batch_size > 14 and rec.median_ttft_ms > 0 and "CUDA graph" in rec.notes
    moe = {**TINY, "intermediate_size": 0, "num_experts": 16, "num_experts_per_tok": 4, "moe_intermediate_size": 128}
    rec = run_sweep(_spec("gpu-moe", model={"config": moe}), tmp_path / "moe", idle_s=0.5).records[0]
    assert 4 <= rec.avg_experts_touched_per_layer_step <= 16 and rec.output_tokens_in_window > 0


def test_tensor_parallel_two_gpus(tmp_path):
    """TP 2 over NCCL with the all-reduces captured in graphs: rank 0's record sums both GPUs' energy and
    keeps each GPU's power."""
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    from measure.tp_sweep import run_sweep_tp

    spec = _spec("gpu-tp", gpu_indices=[0, 1], tensor_parallel=2)
    rec = run_sweep_tp(spec, tmp_path / "tp", idle_s=0.5).records[0]
    assert rec.num_gpus == 2 and len(rec.power_per_gpu_watts) == 2
    assert sum(rec.power_per_gpu_watts) == pytest.approx(rec.avg_power_watts, rel=1e-6)


def test_dit_on_cuda(tmp_path):
    """A small DiT runs whole CFG batches on the GPU and yields a record with energy."""
    from measure.diffusion_schema import DiffusionSweepSpec
    from measure.diffusion_sweep import run_diffusion_sweep

    spec = DiffusionSweepSpec.model_validate({
        "name": "gpu-dit", "model_id": "stabilityai/stable-diffusion-3.5-medium", "batch_sizes": [2],
        "inference_steps": 4, "image_height": 512, "image_width": 512, "uses_cfg": True,
        "shape": {"hidden_size": 512, "num_attention_heads": 8, "num_joint_layers": 2, "dual_attention_layers": 1,
                  "num_single_layers": 1, "text_tokens": 77}, "harness": {"min_steady_state_s": 1.0}})
    rec = run_diffusion_sweep(spec, tmp_path / "dit", idle_s=0.5)[0]
    assert rec.window_energy_joules > 0 and rec.images_in_window >= 2


def test_unet_on_cuda(tmp_path):
    """A small UNet (two stages, cross-attention in the second) runs whole CFG batches on the GPU and yields a
    torch-unet record with energy."""
    from measure.diffusion_schema import DiffusionSweepSpec
    from measure.diffusion_sweep import run_diffusion_sweep

    spec = DiffusionSweepSpec.model_validate({
        "name": "gpu-unet", "engine": "torch-unet", "model_id": "stabilityai/stable-diffusion-xl-base-1.0",
        "batch_sizes": [2], "inference_steps": 4, "image_height": 512, "image_width": 512, "uses_cfg": True,
        "shape": {"block_out_channels": [320, 640], "transformer_layers_per_block": [0, 2],
                  "num_attention_heads": [5, 10], "mid_transformer_layers": 1, "cross_attention_dim": 2048,
                  "pooled_projection_dim": 1280}, "harness": {"min_steady_state_s": 1.0}})
    rec = run_diffusion_sweep(spec, tmp_path / "unet", idle_s=0.5)[0]
    assert rec.engine == "torch-unet" and rec.window_energy_joules > 0 and rec.images_in_window >= 2
