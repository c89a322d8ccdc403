"""Drive one SweepSpec: engine start, idle power, one measured run per batch size, records to a sink.

A configuration that cannot run (out of memory) is reported as skipped with its error; a run that ran is
always written, stable or not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure.harness import Engine, measure_idle_power_watts, run_one
from measure.meter import EnergyMeter, NvmlReader, PowerSampler, make_meter
from measure.schema import RunConfig, RunRecord, SweepSpec
from measure.sink import RunSink, collect_provenance, now_iso
from measure.workloads import request_stream


def make_engine(spec: SweepSpec, comm: Any = None) -> Engine:
    """The backend named by ``spec.engine`` (imports nothing heavy until it is used)."""
    if spec.engine == "torch-cudagraph" and spec.torch.batching == "continuous":
        from measure.backends.continuous_batching import ContinuousBatchingEngine

        return ContinuousBatchingEngine(seed=spec.workload.seed, comm=comm)
    if spec.engine == "torch-cudagraph":
        from measure.backends.torch_backend import TorchCudaGraphEngine

        return TorchCudaGraphEngine(seed=spec.workload.seed, comm=comm)
    from measure.backends.vllm_backend import VllmEngine

    return VllmEngine()


@dataclass
class SweepResult:
    """Records written, configurations skipped (key -> error) and sweep-level facts."""

    records: list[RunRecord] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def _tokens_per_s(trace: Any) -> float:
    steps = trace.steps
    return sum(s.new_tokens for s in steps) / (steps[-1].end_s - steps[0].start_s) if steps else float("nan")


def sampler_overhead_fraction(run: RunConfig, engine: Any, sampler: PowerSampler, seconds: float) -> dict:
    """Throughput with the sampler stopped vs running (same engine, same batch): what polling costs.

    Arms alternate off, on, off, on (``seconds`` each) so warm-up drift does not favour either side.
    Returns both mean throughputs (tokens/s) and ``overhead_fraction = 1 - on / off``.
    """
    requests = request_stream(run.spec.workload, chunk=run.max_num_seqs)
    engine.load(run)
    arms: dict[str, list[float]] = {"off": [], "on": []}
    try:
        engine.warm_up(requests, run.spec.harness.warmup_s)
        for arm in ("off", "on", "off", "on"):
            sampler.stop() if arm == "off" else sampler.start()
            arms[arm].append(_tokens_per_s(engine.generate(requests, seconds)))
    finally:
        engine.release()
        sampler.start()
    off, on = sum(arms["off"]) / 2, sum(arms["on"]) / 2
    return {"key": run.key, "tokens_per_s_sampler_off": arms["off"], "tokens_per_s_sampler_on": arms["on"],
            "overhead_fraction": 1 - on / off}


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    *,
    engine: Any | None = None,
    reader: Any | None = None,
    meter: EnergyMeter | None = None,
    sampler: PowerSampler | None = None,
    idle_s: float = 5.0,
    overhead_check_s: float = 0.0,
    on_run: Callable[[str, RunRecord | None, str], None] | None = None,
) -> SweepResult:
    """Run every configuration of ``spec``; write records, timelines and ``sweep.json`` under ``out_dir``.

    Args:
        idle_s: seconds of idle (context held) to measure before the first run; 0 skips it.
        overhead_check_s: if > 0, seconds per arm of the sampler on/off throughput check (first config).
        on_run: called after each configuration with (key, record or None, error message or "").
    """
    gpu = spec.gpu_indices[0]
    engine = engine or make_engine(spec)
    reader = reader or NvmlReader()
    sync = getattr(engine, "sync", None)
    if hasattr(engine, "init_device"):
        engine.init_device(spec.torch.device, gpu)
    sampler = sampler or PowerSampler(reader, spec.gpu_indices, period_s=spec.harness.sample_period_s)
    meter = meter or make_meter(
        spec.harness.meter, spec.gpu_indices, reader=reader, sampler=sampler, sync=sync
    )
    sink = RunSink(out_dir)
    result = SweepResult()
    gpu_model = reader.gpu_name(gpu)
    sampler.start()
    try:
        idle = measure_idle_power_watts(meter, idle_s) if idle_s > 0 else float("nan")
        result.info = {
            "spec": spec.model_dump(mode="json"),
            "spec_hash": spec.spec_hash(),
            "gpu_model": gpu_model,
            "idle_power_watts_context_held": idle,
            "idle_seconds": idle_s,
            "meter": meter.name,
            "started_at": now_iso(),
        }
        runs = spec.expand()
        if overhead_check_s > 0:
            result.info["sampler_overhead"] = sampler_overhead_fraction(
                runs[0], engine, sampler, overhead_check_s
            )
        for run in runs:
            provenance = collect_provenance(reader, gpu, engine=engine, spec=spec, meter=meter.name)
            try:
                outcome = run_one(
                    run,
                    engine,
                    meter,
                    gpu_model=gpu_model,
                    idle_power_watts=idle,
                    provenance=provenance,
                    sampler=sampler,
                )
            except Exception as err:  # noqa: BLE001 - an OOM (torch or ours) skips one configuration
                if not _is_oom(err):
                    raise
                result.skipped[run.key] = f"{type(err).__name__}: {err}"[:300]
                if on_run:
                    on_run(run.key, None, result.skipped[run.key])
                continue
            sink.append(outcome.record)
            sink.append_timeline(run.key, outcome.timeline)
            result.records.append(outcome.record)
            if on_run:
                on_run(run.key, outcome.record, "")
    finally:
        sampler.stop()
        result.info["skipped"] = result.skipped
        result.info["finished_at"] = now_iso()
        sink.write_sweep(result.info)
    return result


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or "out of memory" in str(err).lower()


def default_out_dir() -> Path:
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")
