"""Measure a diffusion sweep (a DiT or a UNet denoiser, by the spec's ``engine``): per batch size, whole batches
(every step of the pipeline) back to back inside one meter window of at least ``min_steady_state_s``, after a
warm-up batch; one :class:`DiffusionRecord` each.

``batch_latency_s`` = window time / batches, ``avg_power_watts`` = window energy / window time (summed over
GPUs, nothing subtracted), ``energy_per_image_joules`` = power x latency / batch (ML.ENERGY's identity). The
stability verdict reuses :func:`measure.harness.stability_reasons` (window length, GPU utilisation, power drift).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

from measure.diffusion_schema import DiffusionRecord, DiffusionSweepSpec
from measure.harness import measure_idle_power_watts, stability_reasons
from measure.meter import NvmlReader, PowerSampler, make_meter
from measure.schema import Provenance
from measure.sink import RECORDS_FILE, RunSink, git_sha, now_iso

# diffusers' default guidance_scale of each engine's pipeline (models/catalog/architectures.toml sources):
# StableDiffusion3Pipeline 7.0, StableDiffusionXLPipeline 5.0; a spec's guidance_scale overrides it
# (StableDiffusionPipeline's 7.5 for SD 1.5 / 2.1). Any value > 1 runs the same work.
GUIDANCE = {"torch-dit": 7.0, "torch-unet": 5.0}
BACKENDS = {"torch-dit": ("measure.backends.torch_dit", "build_dit_weights"),
            "torch-unet": ("measure.backends.torch_unet", "build_unet_weights")}


class DenoiserEngine:
    """Runs the ``generate_images`` of the spec's backend (``torch-dit``: :mod:`measure.backends.torch_dit`,
    ``torch-unet``: :mod:`measure.backends.torch_unet`) with random bf16 weights of the spec's shape."""

    def __init__(self, spec: DiffusionSweepSpec, denoise_batch: Any = None):
        self.spec, self._w, self._gen = spec, None, None
        self.name = spec.engine
        self._run = denoise_batch  # tests pass a fake: (batch) -> None

    def version(self) -> str:
        import torch

        return f"torch {torch.__version__}"

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch_version": torch.__version__, "cuda_version": torch.version.cuda or ""}

    def device(self) -> Any:
        import torch

        return torch.device(f"cuda:{self.spec.gpu_indices[0]}" if self.spec.device == "cuda" else "cpu")

    def init_device(self) -> None:
        import torch

        if self.spec.device == "cuda":
            torch.cuda.set_device(self.device())
            torch.zeros(1, device="cuda")
            torch.cuda.synchronize()

    def sync(self) -> None:
        import torch

        if self.spec.device == "cuda":
            torch.cuda.synchronize()

    def run_batch(self, batch: int) -> None:
        """Generate one batch of ``batch`` images (all steps), synchronised."""
        if self._run is not None:
            self._run(batch)
            return
        import importlib

        import torch

        s, dev = self.spec, self.device()
        module_name, build = BACKENDS[s.engine]
        backend = importlib.import_module(module_name)
        if self._w is None:
            self._w = getattr(backend, build)(s.shape, dev, torch.bfloat16, s.seed)
            self._gen = torch.Generator(device=dev).manual_seed(s.seed)
        with torch.inference_mode():
            backend.generate_images(self._w, s.shape, batch, s.inference_steps, s.image_height, s.image_width,
                                    s.uses_cfg, s.guidance_scale or GUIDANCE[s.engine], self._gen, dev, torch.bfloat16)
        self.sync()


def _describe(spec: DiffusionSweepSpec) -> str:
    """What the denoiser is, for a record's notes."""
    if spec.engine == "torch-unet":
        return (f"UNet2DConditionModel shape (stages {list(spec.shape.block_out_channels)}, transformer depths "
                f"{list(spec.shape.transformer_layers_per_block)}, mid {spec.shape.mid_transformer_layers}), eager "
                "bf16, Euler steps")
    return "MMDiT shape, eager bf16, flow-matching Euler steps"


def measure_batch_size(spec: DiffusionSweepSpec, engine: Any, meter: Any, sampler: PowerSampler | None, batch: int,
                       *, idle_watts: float, gpu_model: str, provenance: Provenance,
                       clock: Any = time.time) -> DiffusionRecord:
    """Warm up one batch, then whole batches until ``min_steady_state_s``; the record of that window."""
    h = spec.harness
    engine.run_batch(batch)
    if sampler is not None:
        sampler.clear()
        sampler.sample_once()
    meter.begin_window(f"{spec.name}-bs{batch}")
    start, batches = clock(), 0
    while batches == 0 or clock() - start < h.min_steady_state_s:
        engine.run_batch(batch)
        batches += 1
    window = meter.end_window(f"{spec.name}-bs{batch}")
    if sampler is not None:
        sampler.sample_once()
    lo, hi = window.start_s, window.end_s
    util = sampler.mean("gpu_utilization_pct", lo, hi) if sampler else float("nan")
    clock_mhz = sampler.mean("sm_clock_mhz", lo, hi) if sampler else float("nan")
    drift = sampler.power_drift_fraction(lo, hi) if sampler else float("nan")
    sampled = sampler.energy_joules(spec.gpu_indices[0], lo, hi) if sampler else None
    reasons = stability_reasons(steady_s=window.seconds, avg_batch_size=batch, max_num_seqs=batch,
                                gpu_utilization_pct=util, power_drift_fraction=drift, output_tokens=batches * batch,
                                energy_joules=window.total_joules, criteria=h)
    power = window.avg_power_watts
    latency = window.seconds / batches
    return DiffusionRecord(
        model_id=spec.model_id, task=spec.task, gpu_model=gpu_model, batch_size=batch,
        inference_steps=spec.inference_steps, image_height=spec.image_height, image_width=spec.image_width,
        batch_latency_s=latency, avg_power_watts=power, energy_per_image_joules=power * latency / batch,
        throughput_images_per_sec=batch / latency, uses_cfg=spec.uses_cfg, engine=engine.name,
        engine_version=engine.version(), is_stable=not reasons, unstable_reason="; ".join(reasons),
        steady_state_duration_s=window.seconds, gpu_utilization_pct=None if math.isnan(util) else util,
        sm_clock_mhz=None if math.isnan(clock_mhz) else clock_mhz, idle_power_watts=idle_watts,
        window_energy_joules=window.total_joules, images_in_window=batches * batch, sampled_energy_joules=sampled,
        notes=f"{batches} whole batches in the window after one warm-up batch; denoiser only (random bf16 weights "
              "of the shape; text encoders and VAE decode not run); "
              f"CFG {'on (2x denoiser batch)' if spec.uses_cfg else 'off'}; {_describe(spec)}",
        provenance=provenance)


def run_diffusion_sweep(
    spec: DiffusionSweepSpec, out_dir: str | Path, *, engine: Any = None, reader: Any = None, meter: Any = None,
    sampler: PowerSampler | None = None, idle_s: float = 5.0, clock: Any = time.time,
) -> list[DiffusionRecord]:
    """Every batch size of ``spec``; records and timelines under ``out_dir`` (records.jsonl, timelines.jsonl)."""
    gpu = spec.gpu_indices[0]
    engine = engine or DenoiserEngine(spec)
    reader = reader or NvmlReader()
    if hasattr(engine, "init_device"):
        engine.init_device()
    sampler = sampler or PowerSampler(reader, spec.gpu_indices, period_s=spec.harness.sample_period_s)
    meter = meter or make_meter(spec.harness.meter, spec.gpu_indices, reader=reader, sampler=sampler,
                                sync=getattr(engine, "sync", None))
    sink, records, idle = RunSink(out_dir), [], float("nan")
    sampler.start()
    try:
        idle = measure_idle_power_watts(meter, idle_s) if idle_s > 0 else float("nan")
        for batch in spec.batch_sizes:
            prov = Provenance(gpu_name=reader.gpu_name(gpu), driver_version=reader.driver_version(),
                              power_limit_watts=reader.power_limit_watts(gpu), engine=engine.name,
                              engine_version=engine.version(), git_sha=git_sha(),
                              spec_hash=hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16],
                              started_at=now_iso(),
                              meter=meter.name, **engine.versions())
            record = measure_batch_size(spec, engine, meter, sampler, batch, idle_watts=idle,
                                        gpu_model=reader.gpu_name(gpu), provenance=prov, clock=clock)
            sink._append(RECORDS_FILE, record.model_dump(mode="json"))
            sink.append_timeline(f"{spec.name}-bs{batch}", sampler.timeline())
            records.append(record)
    finally:
        sampler.stop()
        sink.write_sweep({"spec": spec.model_dump(mode="json"), "idle_power_watts_context_held": idle,
                          "finished_at": now_iso()})
    return records
