"""The UNet denoiser backend (engine ``torch-unet``): tiny shapes on the CPU, the SDXL, SD 1.5 and SD 2.1 shapes'
parameter counts on the meta device against the physics walk and the catalog, and a sweep through the harness with
a fake meter."""

from __future__ import annotations

import pytest
from measure_fakes import FakeClock, FakeMeter, FakeNvml

from measure.diffusion_schema import DiffusionRecord, DiffusionSweepSpec, UNetShape
from measure.diffusion_sweep import DenoiserEngine, run_diffusion_sweep
from measure.meter import NvmlReader, PowerSampler
from measure.sink import import_run_dir

SDXL_SPEC = "measure/specs/sdxl-unet-h200.toml"
SD_SPECS = {"sdxl": SDXL_SPEC, "sd15": "measure/specs/sd15-unet-h200.toml",
            "sd21": "measure/specs/sd21-unet-h200.toml"}
TINY = {"block_out_channels": [32, 64], "transformer_layers_per_block": [0, 2], "num_attention_heads": [1, 2],
        "mid_transformer_layers": 1, "cross_attention_dim": 24, "pooled_projection_dim": 16, "text_tokens": 5}
# SD 1.x-like: attention in every stage but the last, conv projections, no add-embedding
TINY_SD1 = {"block_out_channels": [32, 64, 64], "transformer_layers_per_block": [1, 1, 0],
            "num_attention_heads": [8, 8, 8], "cross_attention_dim": 24, "text_tokens": 5,
            "use_linear_projection": False}


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


@pytest.mark.parametrize("model", sorted(SD_SPECS))
def test_weights_count_what_the_physics_and_catalog_say(model):
    """Each spec's weights (built on the meta device: shapes only) must count the catalog's parameter count (SDXL
    2.567B diffusers count, SD 1.5 0.86B and SD 2.1 0.865B model-card / derived counts) within 0.5% and
    estimator.physics.unet's walk (norms and biases left out there) within 2%; a missing or doubled block, or a
    wrong context width (768 vs 1024 changes SD's count by 1.5%), moves the count by more than that."""
    torch = pytest.importorskip("torch")
    from estimator.catalog.catalog import load_catalog
    from estimator.physics.unet import unet_cost
    from measure.backends.torch_unet import build_unet_weights, count_parameters

    spec = DiffusionSweepSpec.from_toml(SD_SPECS[model])
    params = count_parameters(build_unet_weights(spec.shape, "meta", torch.bfloat16))
    arch = load_catalog().models[spec.model_id]
    assert params == pytest.approx(arch.denoiser_params_billions * 1e9, rel=0.005)
    assert params == pytest.approx(unet_cost(arch, spec.image_height, spec.image_width).params, rel=0.02)


@pytest.mark.parametrize("model", sorted(SD_SPECS))
def test_spec_matches_the_catalog_entry(model):
    """The measured shape and pipeline settings must be the catalog's (the predictor's view of the model): stage
    widths, transformer depths, ResNets per stage, mid depth, context width, latent channels, steps, size, CFG."""
    from estimator.catalog.catalog import load_catalog

    spec = DiffusionSweepSpec.from_toml(SD_SPECS[model])
    arch, s = load_catalog().models[spec.model_id], spec.shape
    assert arch.denoiser_type == "unet" and spec.engine == "torch-unet"
    assert list(s.block_out_channels) == list(arch.unet_block_out_channels)
    assert list(s.transformer_layers_per_block) == list(arch.unet_transformer_layers_per_block)
    assert (s.layers_per_block, s.mid_transformer_layers) == (arch.unet_layers_per_block,
                                                              arch.unet_mid_transformer_layers)
    assert (s.cross_attention_dim, s.in_channels) == (arch.unet_cross_attention_dim, arch.latent_channels)
    assert (spec.inference_steps, spec.image_height, spec.image_width, spec.uses_cfg) == (
        arch.default_steps, arch.default_height, arch.default_width, arch.uses_cfg)


def test_sd_specs_carry_their_configs_heads_projections_and_guidance():
    """SD 1.5 and SD 2.1 differ from SDXL and from each other in what the catalog does not hold (unet/config.json
    of each, cited in the specs): SD 1.5 has 8 heads everywhere (head width 40/80/160) and conv projections, SD 2.1
    64-wide heads and linear ones; neither has SDXL's add-embedding; both use StableDiffusionPipeline's 7.5."""
    sd15, sd21 = (DiffusionSweepSpec.from_toml(SD_SPECS[m]) for m in ("sd15", "sd21"))
    assert list(sd15.shape.num_attention_heads) == [8] * 4 and not sd15.shape.use_linear_projection
    shape = sd21.shape
    assert [c // h for c, h in zip(shape.block_out_channels, shape.num_attention_heads, strict=True)] == [64] * 4
    assert sd21.shape.use_linear_projection
    for spec in (sd15, sd21):
        assert spec.shape.pooled_projection_dim == 0 and spec.shape.text_tokens == 77
        assert spec.guidance_scale == 7.5 and spec.inference_steps == 50


def test_conv_projection_equals_the_linear_one_with_the_same_weights():
    """A 1x1 conv proj_in / proj_out (SD 1.x) is the per-pixel linear map: with the conv weights reshaped into the
    linear layout the UNet must give the same prediction, so the two paths cannot differ in more than layout (a
    transposed or mis-reshaped projection fails this)."""
    torch = pytest.importorskip("torch")
    from measure.backends import torch_unet

    conv_shape = UNetShape.model_validate(TINY_SD1)
    w = torch_unet.build_unet_weights(conv_shape, torch.device("cpu"), torch.float32)

    def to_linear(tree):
        if isinstance(tree, list):
            return [to_linear(v) for v in tree]
        if not isinstance(tree, dict):
            return tree
        out = {k: to_linear(v) for k, v in tree.items()}
        if out.get("linear") is False:
            out["linear"] = True
            for key in ("proj_in", "proj_out"):
                out[key] = {"w": out[key]["w"][:, :, 0, 0], "b": out[key]["b"]}
        return out

    lin = to_linear(w)
    assert w["down"][0]["layers"][0]["attn"]["proj_in"]["w"].dim() == 4
    assert lin["down"][0]["layers"][0]["attn"]["proj_in"]["w"].dim() == 2
    g = torch.Generator().manual_seed(1)
    latents, context = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 5, 24, generator=g)
    t, empty = torch.tensor([999.0, 999.0]), torch.zeros(2, 0)
    a = torch_unet.denoise(w, conv_shape, latents, t, context, empty, empty)
    b = torch_unet.denoise(lin, conv_shape, latents, t, context, empty, empty)
    assert a.shape == latents.shape and torch.allclose(a, b, atol=1e-5)


def test_engine_passes_the_specs_guidance():
    """The engine must run the spec's guidance_scale (SD's 7.5) where given and the engine default (SDXL's 5.0)
    otherwise; the work is the same, but the recorded pipeline setting must be what ran."""
    pytest.importorskip("torch")
    from measure.backends import torch_unet

    seen, real = [], torch_unet.generate_images

    def spy(*args):
        seen.append(args[7])
        return real(*args)

    torch_unet.generate_images = spy
    try:
        DenoiserEngine(_spec(batch_sizes=[1], guidance_scale=7.5)).run_batch(1)
        DenoiserEngine(_spec(batch_sizes=[1])).run_batch(1)
    finally:
        torch_unet.generate_images = real
    assert seen == [7.5, 5.0]


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


@pytest.mark.parametrize("shape", [TINY, TINY_SD1], ids=["sdxl-like", "sd1-like"])
def test_unet_sweep_writes_records_that_import(tmp_path, shape):
    """Through the harness with the fake meter at 500 W and 2 s per image, the real (tiny, CPU) UNet engine (SDXL-
    like: add-embedding, linear projections; SD 1.x-like: neither, attention in all stages but the last) must
    yield torch-unet records with 1000 J/image, whole batches, and notes naming the UNet; they must import."""
    pytest.importorskip("torch")
    clock = FakeClock()
    spec = _spec(shape=shape)
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
