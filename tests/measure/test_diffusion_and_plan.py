"""The diffusion harness with a fake denoiser, the DiT model's shapes, the device-time plan, and the
histogram workload."""

from __future__ import annotations

import json

import numpy as np
import pytest
from measure_fakes import FakeClock, FakeMeter, FakeNvml

from measure.diffusion_schema import DiffusionRecord, DiffusionSweepSpec
from measure.diffusion_sweep import run_diffusion_sweep
from measure.meter import NvmlReader, PowerSampler
from measure.sink import import_run_dir

SHAPE = {"hidden_size": 64, "num_attention_heads": 4, "num_joint_layers": 2, "num_single_layers": 1,
         "dual_attention_layers": 1, "text_tokens": 7, "joint_attention_dim": 32, "pooled_projection_dim": 16}


def _spec(**kw) -> DiffusionSweepSpec:
    d = {"name": "dit", "model_id": "stabilityai/stable-diffusion-3.5-medium", "batch_sizes": [1, 4],
         "inference_steps": 28, "image_height": 1024, "image_width": 1024, "uses_cfg": True, "device": "cpu",
         "shape": SHAPE, "harness": {"min_steady_state_s": 10.0, "meter": "nvml"}}
    return DiffusionSweepSpec.model_validate({**d, **kw})


class FakeDenoiser:
    """A denoiser whose batch takes ``seconds_per_image x batch`` on the fake clock."""

    name = "fake-dit"

    def __init__(self, clock: FakeClock, seconds_per_image: float):
        self.clock, self.per_image, self.batches = clock, seconds_per_image, []

    def version(self) -> str:
        return "fake 1"

    def versions(self) -> dict[str, str]:
        return {"torch_version": "none", "cuda_version": "none"}

    def run_batch(self, batch: int) -> None:
        self.batches.append(batch)
        self.clock.advance(self.per_image * batch)


def test_diffusion_records_follow_mlenergy_identity_and_import(tmp_path):
    """At 600 W and 3 s per image, J/image must be 1800 at every batch size, latency = 3 s x batch, whole
    batches only (a warm-up batch outside the window), and the stable records must import like LLM ones."""
    clock = FakeClock()
    engine = FakeDenoiser(clock, 3.0)
    reader = NvmlReader(FakeNvml(clock, power_watts=600.0))
    meter = FakeMeter(clock, power_watts=600.0)
    sampler = PowerSampler(reader, [0], clock=clock)
    records = run_diffusion_sweep(_spec(), tmp_path / "run", engine=engine, reader=reader, meter=meter,
                                  sampler=sampler, idle_s=0, clock=clock)
    assert [r.batch_size for r in records] == [1, 4]
    for r in records:
        assert r.energy_per_image_joules == pytest.approx(1800.0)
        assert r.batch_latency_s == pytest.approx(3.0 * r.batch_size)
        assert r.avg_power_watts * r.batch_latency_s / r.batch_size == pytest.approx(r.energy_per_image_joules)
    assert engine.batches == [1] * 5 + [4] * 2  # 1 warm-up + 4 timed (12 s >= 10 s); 1 warm-up + 1 timed
    result = import_run_dir(tmp_path / "run", "dit", tmp_path / "local")
    assert result.written + result.unstable_left_out == 2
    line = (tmp_path / "local" / "dit.jsonl").read_text().splitlines()
    assert all(DiffusionRecord.model_validate_json(x).task == "text-to-image" for x in line)


def test_dit_denoiser_keeps_latent_shape_and_cfg_doubles_rows():
    """The MMDiT maps latents to a same-shape velocity; with CFG the pipeline runs it on 2x the batch."""
    torch = pytest.importorskip("torch")
    from measure.backends import torch_dit

    spec = _spec(image_height=64, image_width=64, inference_steps=2)
    w = torch_dit.build_dit_weights(spec.shape, torch.device("cpu"), torch.float32)
    rows = []
    real = torch_dit.denoise

    def counting(w_, shape, latents, *args):
        rows.append(latents.shape[0])
        return real(w_, shape, latents, *args)

    torch_dit.denoise = counting
    try:
        out = torch_dit.generate_images(w, spec.shape, 3, 2, 64, 64, True, 7.0, torch.Generator().manual_seed(0),
                                        torch.device("cpu"), torch.float32)
    finally:
        torch_dit.denoise = real
    assert out.shape == (3, 16, 8, 8) and rows == [6, 6] and torch.isfinite(out).all()
    assert spec.shape.image_tokens(1024, 1024) == 4096


def test_dry_run_plans_whole_rounds_and_prints_a_total(tmp_path):
    """The plan must round static windows up to whole rounds (the engine never stops mid-round), count weight
    building once, and the CLI must print a total without touching a GPU."""
    from typer.testing import CliRunner

    from measure.cli import app
    from measure.plan import plan_sweep
    from measure.schema import SweepSpec

    spec = SweepSpec.from_toml("measure/specs/llama31-8b-lmarena.toml")
    plans = plan_sweep(spec, "H200")
    for p, run in zip(plans, spec.expand(), strict=True):
        round_s = run.spec.workload.forced_output_len * p.step_ms / 1e3
        assert p.measure_s >= spec.harness.min_steady_state_s
        assert p.measure_s / round_s == pytest.approx(round(p.measure_s / round_s))
    assert plans[0].setup_s > plans[1].setup_s  # weights built once
    out = CliRunner().invoke(app, ["run", "measure/specs/qwen3-30b-a3b-moe-h200.toml", "--dry-run"])
    assert out.exit_code == 0 and "expected total" in out.output


def test_moe_plan_reads_fewer_experts_at_small_batch():
    """Batch 8 with top-8 of 128 experts touches ~52 experts per layer: its step must be planned shorter
    than batch 256's, which reads (nearly) all of them."""
    from measure.plan import decode_step_seconds
    from measure.schema import SweepSpec

    spec = SweepSpec.from_toml("measure/specs/qwen3-30b-a3b-moe-h200.toml")
    runs = {r.max_num_seqs: r for r in spec.expand()}
    assert decode_step_seconds(runs[8], "H200", 500) < 0.6 * decode_step_seconds(runs[256], "H200", 500)


def test_output_lengths_follow_the_published_histogram():
    """Continuous batching draws output lengths from ML.ENERGY's histogram: the sample mean must land near the
    histogram's own mean (Llama 3.1 8B lm-arena-chat, ~390 tokens)."""
    from measure.schema import WorkloadSection
    from measure.workloads import load_histogram, make_requests

    path = "datasets/mlenergy-v3/models/meta-llama__Llama-3.1-8B-Instruct__lm-arena-chat.json"
    bins, counts = load_histogram(path)
    mids = (np.array(bins[:-1]) + np.array(bins[1:])) / 2
    expected = float((mids * np.array(counts)).sum() / np.sum(counts))
    w = WorkloadSection(output_len_histogram=path, output_len_max=4096)
    got = np.mean([r.output_len for r in make_requests(w, 20000)])
    assert got == pytest.approx(expected, rel=0.03)
    with open(path) as f:
        assert json.load(f)["output_length_distribution"]["counts"] == counts
