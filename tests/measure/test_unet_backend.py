"""The UNet denoiser backend (engine ``torch-unet``): tiny shapes on the CPU, the SDXL shape's parameter count on
the meta device against the physics walk and the catalog, and a sweep through the harness with a fake meter."""

from __future__ import annotations

import pytest
from measure_fakes import FakeClock, FakeMeter, FakeNvml

from measure.diffusion_schema import DiffusionRecord, DiffusionSweepSpec, UNetShape
from measure.diffusion_sweep import DenoiserEngine, run_diffusion_sweep
from measure.meter import NvmlReader, PowerSampler
from measure.sink import import_run_dir

SDXL_SPEC = "measure/specs/sdxl-unet-h200.toml"
TINY = {"block_out_channels": [32, 64], "transformer_layers_per_block": [0, 2], "num_attention_heads": [1, 2],
        "mid_transformer_layers": 1, "cross_attention_dim": 24, "pooled_projection_dim": 16, "text_tokens": 5}


def _spec(**kw) -> DiffusionSweepSpec:
    d = {"name": "unet", "engine": "torch-unet", "model_id": "stabilityai/stable-diffusion-xl-base-1.0",
         "batch_sizes": [1, 2], "inference_steps": 2, "image_height": 64, "image_width": 64, "uses_cfg": True,
         "device": "cpu", "shape": TINY, "harness": {"min_steady_state_s": 10.0, "meter": "nvml"}}
    return DiffusionSweepSpec.model_validate({**d, **kw})


def test_tiny_unet_keeps_latent_shape_and_cfg_doubles_rows():
    """The UNet must map latents to a same-shape, finite noise prediction through every stage (a skip-connection
    or channel mistake fails the concatenation or the shape); with CFG each step runs it on 2x the batch."""
    torch = pytest.importorskip("torch")
    from measure.backends import torch_unet

    shape = _spec().shape
    w = torch_unet.build_unet_weights(shape, torch.device("cpu"), torch.float32)
    rows, real = [], torch_unet.denoise

    def counting(w_, shape_, latents, *args):
        out = real(w_, shape_, latents, *args)
        rows.append(latents.shape[0])
        assert out.shape == latents.shape
        return out

    torch_unet.denoise = counting
    try:
        out = torch_unet.generate_images(w, shape, 3, 2, 64, 64, True, 5.0, torch.Generator().manual_seed(0),
                                         torch.device("cpu"), torch.float32)
    finally:
        torch_unet.denoise = real
    assert out.shape == (3, 4, 8, 8) and rows == [6, 6] and torch.isfinite(out).all()


def test_sdxl_weights_count_what_the_physics_and_catalog_say():
    """The backend's SDXL weights (built on the meta device: shapes only) must count the catalog's diffusers
    parameter count (2.567B) within 0.5% and estimator.physics.unet's walk (norms and biases left out there) within
    2%; a missing or doubled block moves the count by far more than that."""
    torch = pytest.importorskip("torch")
    from estimator.catalog.catalog import load_catalog
    from estimator.physics.unet import unet_cost
    from measure.backends.torch_unet import build_unet_weights, count_parameters

    spec = DiffusionSweepSpec.from_toml(SDXL_SPEC)
    params = count_parameters(build_unet_weights(spec.shape, "meta", torch.bfloat16))
    arch = load_catalog().models[spec.model_id]
    assert params == pytest.approx(arch.denoiser_params_billions * 1e9, rel=0.005)
    assert params == pytest.approx(unet_cost(arch, 1024, 1024).params, rel=0.02)


def test_sdxl_spec_matches_the_catalog_entry():
    """The measured shape and pipeline settings must be the catalog's (the predictor's view of the model): stage
    widths, transformer depths, ResNets per stage, mid depth, context width, latent channels, steps, size, CFG."""
    from estimator.catalog.catalog import load_catalog

    spec = DiffusionSweepSpec.from_toml(SDXL_SPEC)
    arch, s = load_catalog().models[spec.model_id], spec.shape
    assert arch.denoiser_type == "unet" and spec.engine == "torch-unet"
    assert list(s.block_out_channels) == list(arch.unet_block_out_channels)
    assert list(s.transformer_layers_per_block) == list(arch.unet_transformer_layers_per_block)
    assert (s.layers_per_block, s.mid_transformer_layers) == (arch.unet_layers_per_block,
                                                              arch.unet_mid_transformer_layers)
    assert (s.cross_attention_dim, s.in_channels) == (arch.unet_cross_attention_dim, arch.latent_channels)
    assert (spec.inference_steps, spec.image_height, spec.image_width, spec.uses_cfg) == (
        arch.default_steps, arch.default_height, arch.default_width, arch.uses_cfg)


def test_engine_and_shape_must_agree():
    """A UNet engine with a DiT shape (or a shape whose lists disagree in length) is refused at load time,
    not deep inside a device run."""
    with pytest.raises(ValueError, match="UNetShape"):
        _spec(shape={"hidden_size": 64, "num_attention_heads": 4, "num_joint_layers": 1, "text_tokens": 7})
    with pytest.raises(ValueError, match="one entry per stage"):
        UNetShape.model_validate({**TINY, "num_attention_heads": [1]})


class _ClockedUNet(DenoiserEngine):
    """The real CPU UNet engine; each batch also moves the fake clock by 2 s per image."""

    def __init__(self, spec: DiffusionSweepSpec, clock: FakeClock):
        super().__init__(spec)
        self.clock, self.batches = clock, []

    def run_batch(self, batch: int) -> None:
        super().run_batch(batch)
        self.batches.append(batch)
        self.clock.advance(2.0 * batch)


def test_unet_sweep_writes_records_that_import(tmp_path):
    """Through the harness with the fake meter at 500 W and 2 s per image, the real (tiny, CPU) UNet engine must
    yield torch-unet records with 1000 J/image, whole batches, and notes naming the UNet; they must import."""
    pytest.importorskip("torch")
    clock = FakeClock()
    spec = _spec()
    engine = _ClockedUNet(spec, clock)
    reader = NvmlReader(FakeNvml(clock, power_watts=500.0))
    records = run_diffusion_sweep(spec, tmp_path / "run", engine=engine, reader=reader,
                                  meter=FakeMeter(clock, power_watts=500.0), sampler=PowerSampler(reader, [0],
                                                                                                  clock=clock),
                                  idle_s=0, clock=clock)
    assert engine.batches == [1] * 6 + [2] * 4  # warm-up + 5 timed (10 s); warm-up + 3 timed (12 s)
    for r in records:
        assert r.engine == r.provenance.engine == "torch-unet"
        assert r.energy_per_image_joules == pytest.approx(1000.0)
        assert "UNet2DConditionModel" in r.notes and r.inference_steps == 2
    result = import_run_dir(tmp_path / "run", "unet", tmp_path / "local")
    assert result.written + result.unstable_left_out == 2
    lines = (tmp_path / "local" / "unet.jsonl").read_text().splitlines()
    assert all(DiffusionRecord.model_validate_json(x).engine == "torch-unet" for x in lines)
