"""Warm-up -> steady-state window -> stability verdict -> RunRecord.

The steady-state window follows the ML.ENERGY Benchmark (arXiv 2505.06371; ``ml-energy/benchmark`` v3.0
``mlenergy/benchmark/llm/benchmark.py``, as used by arXiv 2601.22076): it starts when the running batch first
reaches the configured ``max_num_seqs`` and ends when the queue can no longer keep it full (the end of the
last step, or the last moment, at which the batch is full). Energy per token = window energy / output tokens
produced in the window; power = window energy / window time; energy per request = energy per token x mean
output length. A run whose window is too short, whose achieved batch is below 0.85 of the maximum, whose GPU
was starved or whose power drifted is kept and marked unstable, with the reasons.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from measure.meter import EnergyMeter, PowerSampler, WindowResult
from measure.schema import HarnessSection, Provenance, RunConfig, RunRecord
from measure.workloads import Request, request_stream


@dataclass(frozen=True)
class Step:
    """One engine step: wall-clock span (s), sequences in the batch, output tokens it produced."""

    start_s: float
    end_s: float
    batch_size: int
    new_tokens: int
    kind: Literal["prefill", "decode"] = "decode"

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class RequestTiming:
    """One finished request: admission, first-token and finish times (s), lengths in tokens."""

    request_id: int
    input_len: int
    output_len: int
    admitted_s: float
    first_token_s: float
    finished_s: float


@dataclass
class EngineTrace:
    """What an engine reports of one ``generate`` call. ``steps`` may be empty (offline vLLM)."""

    requests: list[RequestTiming]
    steps: list[Step] = field(default_factory=list)
    notes: str = ""
    extras: dict[str, float] = field(default_factory=dict)


class Engine(Protocol):
    """The interface every backend implements (the fakes in tests implement it too)."""

    name: str
    batching: Literal["static", "continuous"]
    weights: Literal["random", "pretrained"]

    def version(self) -> str: ...

    def versions(self) -> dict[str, str]: ...

    def load(self, run: RunConfig) -> None: ...

    def warm_up(self, requests: Iterator[Request], seconds: float) -> None: ...

    def generate(self, requests: Iterator[Request], min_seconds: float) -> EngineTrace: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class SteadyWindow:
    """The steady-state window [start_s, end_s] (s) and how it was found."""

    start_s: float
    end_s: float
    full_batch: int

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


def _running_events(requests: list[RequestTiming]) -> list[tuple[float, int]]:
    events = [(r.admitted_s, +1) for r in requests] + [(r.finished_s, -1) for r in requests]
    return sorted(events, key=lambda e: (e[0], e[1]))  # finishes before admissions at equal times


def steady_state_window(trace: EngineTrace, max_num_seqs: int) -> SteadyWindow | None:
    """The steady-state window of a trace, or None for an empty trace.

    The batch counts as full at ``max_num_seqs``; if it never gets there, at the largest batch reached
    (the achieved-batch criterion then marks the run unstable).
    """
    if trace.steps:
        peak = max(s.batch_size for s in trace.steps)
        full = min(max_num_seqs, peak)
        full_steps = [s for s in trace.steps if s.batch_size >= full]
        return SteadyWindow(full_steps[0].start_s, full_steps[-1].end_s, full)
    if not trace.requests:
        return None
    running, series = 0, []
    for t, delta in _running_events(trace.requests):
        running += delta
        series.append((t, running))
    full = min(max_num_seqs, max(n for _, n in series))
    start = next(t for t, n in series if n >= full)
    drops = [t for k, (t, n) in enumerate(series) if k > 0 and n < full <= series[k - 1][1]]
    return SteadyWindow(start, drops[-1], full)


@dataclass(frozen=True)
class WindowStats:
    """Engine-side figures over a window: tokens, time-weighted batch, ITLs (ms), lengths."""

    output_tokens: float
    avg_batch_size: float
    itl_ms: list[float]
    avg_input_len: float
    avg_output_len: float
    ttft_ms: list[float] = field(default_factory=list)


def window_stats(trace: EngineTrace, start_s: float, end_s: float, eps_s: float = 1e-6) -> WindowStats:
    """Tokens, achieved batch and ITLs inside [start_s, end_s]."""
    done = [r for r in trace.requests if r.finished_s >= start_s - eps_s] or trace.requests
    avg_in = float(np.mean([r.input_len for r in done])) if done else 0.0
    avg_out = float(np.mean([r.output_len for r in done])) if done else 0.0
    ttft = [1e3 * (r.first_token_s - r.admitted_s) for r in trace.requests
            if start_s - eps_s <= r.first_token_s <= end_s + eps_s]
    if trace.steps:
        inside = [s for s in trace.steps if s.start_s >= start_s - eps_s and s.end_s <= end_s + eps_s]
        tokens = float(sum(s.new_tokens for s in inside))
        busy = sum(s.seconds for s in inside)
        batch = sum(s.batch_size * s.seconds for s in inside) / busy if busy > 0 else 0.0
        itl = [1e3 * s.seconds for s in inside if s.kind == "decode"]
        return WindowStats(tokens, batch, itl, avg_in, avg_out, ttft)
    tokens, itl = 0.0, []
    for r in trace.requests:
        span = r.finished_s - r.first_token_s
        if span <= 0:
            continue
        overlap = max(0.0, min(r.finished_s, end_s) - max(r.first_token_s, start_s))
        tokens += r.output_len * overlap / span
        if r.output_len > 1 and overlap > 0:
            itl.append(1e3 * span / (r.output_len - 1))
    area, running, last_t = 0.0, 0, start_s
    for t, delta in _running_events(trace.requests):
        if t > start_s:
            area += running * (min(t, end_s) - last_t)
            last_t = min(t, end_s)
        if t >= end_s:
            break
        running += delta
    area += running * max(0.0, end_s - last_t)
    batch = area / (end_s - start_s) if end_s > start_s else 0.0
    return WindowStats(tokens, batch, itl, avg_in, avg_out, ttft)


def stability_reasons(
    *,
    steady_s: float,
    avg_batch_size: float,
    max_num_seqs: int,
    gpu_utilization_pct: float,
    power_drift_fraction: float,
    output_tokens: float,
    energy_joules: float,
    criteria: HarnessSection,
) -> list[str]:
    """Why a run is not stable (empty list: stable). NaN utilisation or drift means 'not measured'."""
    reasons = []
    if steady_s < criteria.min_steady_state_s:
        reasons.append(f"steady state too short: {steady_s:.2f} s < {criteria.min_steady_state_s:g} s")
    if avg_batch_size < criteria.min_batch_fraction * max_num_seqs:
        reasons.append(
            f"low batch utilization: achieved batch {avg_batch_size:.1f} < "
            f"{criteria.min_batch_fraction:g} x {max_num_seqs}"
        )
    if not math.isnan(gpu_utilization_pct) and gpu_utilization_pct < criteria.min_gpu_utilization_pct:
        reasons.append(
            f"GPU starved: utilization {gpu_utilization_pct:.0f}% < "
            f"{criteria.min_gpu_utilization_pct:g}% (CPU-bound loop?)"
        )
    if not math.isnan(power_drift_fraction) and power_drift_fraction > criteria.max_power_drift_fraction:
        reasons.append(f"power drifted {100 * power_drift_fraction:.1f}% between window halves")
    if output_tokens <= 0:
        reasons.append("no output tokens in the window")
    if energy_joules <= 0:
        reasons.append("no energy measured in the window")
    return reasons


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass(frozen=True)
class Measured:
    """The energy of the steady window (J, s), per GPU (J), and where it came from."""

    seconds: float
    joules: float
    source: str
    joules_per_gpu: tuple[float, ...] = ()

    @property
    def power_per_gpu_watts(self) -> list[float] | None:
        if not self.joules_per_gpu or self.seconds <= 0:
            return None
        return [j / self.seconds for j in self.joules_per_gpu]


#: the meter's window counts as the steady window when their edges differ by at most this much: 50 ms (half the
#: ~100 ms update period of NVML's energy counter, see measure/meter.py) or 0.5% of the window, whichever is larger
WINDOW_EDGE_TOLERANCE_S = 0.05
WINDOW_EDGE_TOLERANCE_SHARE = 0.005


def steady_energy(
    window: SteadyWindow, meter_window: WindowResult, sampler: PowerSampler | None, tolerance_s: float
) -> Measured:
    """Energy of the steady window: the meter's own window when the two agree within ``tolerance_s`` at both
    edges, else the sampler's power integral over the steady sub-window."""
    if (
        window.start_s - meter_window.start_s <= tolerance_s
        and meter_window.end_s - window.end_s <= tolerance_s
    ):
        per_gpu = tuple(meter_window.joules_per_gpu[i] for i in sorted(meter_window.joules_per_gpu))
        return Measured(meter_window.seconds, meter_window.total_joules, "meter window", per_gpu)
    if sampler is None:
        raise RuntimeError("the steady window is a sub-span of the meter window and no sampler is running")
    per_gpu = tuple(sampler.energy_joules(i, window.start_s, window.end_s) or 0.0 for i in sampler.gpu_indices)
    return Measured(window.seconds, sum(per_gpu), "power-sample integral over the steady sub-window", per_gpu)


def build_record(
    run: RunConfig,
    trace: EngineTrace,
    meter_window: WindowResult,
    *,
    engine: Engine,
    gpu_model: str,
    idle_power_watts: float,
    provenance: Provenance,
    sampler: PowerSampler | None = None,
    harness_overhead_fraction: float | None = None,
    extra_notes: str = "",
) -> RunRecord:
    """Turn one measured ``generate`` call into a RunRecord with its verdict (never dropped)."""
    spec, criteria = run.spec, run.spec.harness
    window = steady_state_window(trace, run.max_num_seqs)
    if window is None:
        window = SteadyWindow(meter_window.start_s, meter_window.end_s, run.max_num_seqs)
    tolerance_s = max(WINDOW_EDGE_TOLERANCE_S, WINDOW_EDGE_TOLERANCE_SHARE * meter_window.seconds)
    measured = steady_energy(window, meter_window, sampler, tolerance_s)
    stats = window_stats(trace, window.start_s, window.end_s)
    lo, hi = meter_window.start_s, meter_window.end_s
    if measured.source != "meter window":
        lo, hi = window.start_s, window.end_s
    util = sampler.mean("gpu_utilization_pct", lo, hi) if sampler else float("nan")
    clock = sampler.mean("sm_clock_mhz", lo, hi) if sampler else float("nan")
    drift = sampler.power_drift_fraction(lo, hi) if sampler else float("nan")
    sampled = None
    if sampler is not None:
        parts = [sampler.energy_joules(i, lo, hi) for i in sampler.gpu_indices]
        sampled = None if any(p is None for p in parts) else float(sum(parts))
    reasons = stability_reasons(
        steady_s=measured.seconds,
        avg_batch_size=stats.avg_batch_size,
        max_num_seqs=run.max_num_seqs,
        gpu_utilization_pct=util,
        power_drift_fraction=drift,
        output_tokens=stats.output_tokens,
        energy_joules=measured.joules,
        criteria=criteria,
    )
    seconds, joules, tokens = measured.seconds, measured.joules, stats.output_tokens
    power = joules / seconds if seconds > 0 else 0.0
    ept = joules / tokens if tokens > 0 else 0.0
    throughput = tokens / seconds if seconds > 0 else 0.0
    notes = [f"energy: {measured.source}"]
    if engine.batching == "static" and spec.workload.forced_output_len:
        notes.append(
            f"static batches with forced output length {spec.workload.forced_output_len} "
            "(every request decodes exactly that many tokens; prefill included in the window)"
        )
    if engine.batching == "continuous":
        notes.append(f"continuous batching up to max_num_seqs {run.max_num_seqs}; TTFT from admission into the "
                     "running batch to the first token (queueing before admission excluded)")
    if engine.weights == "random":
        notes.append("random weights with the model's exact shape")
    if trace.notes:
        notes.append(trace.notes)
    if extra_notes:
        notes.append(extra_notes)
    return RunRecord(
        model_id=spec.model.model_id,
        task=spec.workload.task,
        gpu_model=gpu_model,
        num_gpus=len(spec.gpu_indices),
        max_num_seqs=run.max_num_seqs,
        tensor_parallel=spec.tensor_parallel,
        weight_precision=spec.model.weight_precision,
        avg_batch_size=stats.avg_batch_size,
        avg_input_len=stats.avg_input_len,
        avg_output_len=stats.avg_output_len,
        avg_power_watts=power,
        energy_per_token_joules=ept,
        energy_per_request_joules=ept * stats.avg_output_len,
        output_throughput_tokens_per_sec=throughput,
        median_itl_ms=_pct(stats.itl_ms, 50),
        p90_itl_ms=_pct(stats.itl_ms, 90),
        p95_itl_ms=_pct(stats.itl_ms, 95),
        p99_itl_ms=_pct(stats.itl_ms, 99),
        median_ttft_ms=_or_none(_pct(stats.ttft_ms, 50)),
        p90_ttft_ms=_or_none(_pct(stats.ttft_ms, 90)),
        p99_ttft_ms=_or_none(_pct(stats.ttft_ms, 99)),
        power_per_gpu_watts=measured.power_per_gpu_watts,
        avg_experts_touched_per_layer_step=trace.extras.get("avg_experts_touched_per_layer_step"),
        engine=engine.name,
        engine_version=engine.version(),
        batching=engine.batching,
        weights=engine.weights,
        is_stable=not reasons,
        unstable_reason="; ".join(reasons),
        steady_state_duration_s=seconds,
        gpu_utilization_pct=_or_none(util),
        sm_clock_mhz=_or_none(clock),
        idle_power_watts=idle_power_watts,
        window_energy_joules=joules,
        output_tokens_in_window=int(round(tokens)),
        sampled_energy_joules=sampled,
        harness_overhead_fraction=harness_overhead_fraction,
        notes="; ".join(notes),
        provenance=provenance,
    )


def measure_idle_power_watts(
    meter: EnergyMeter, seconds: float, sleep: Callable[[float], None] = time.sleep
) -> float:
    """Mean power (W, summed over the meter's GPUs) over ``seconds`` of doing nothing.

    Call it with a CUDA context held (the engine initialised): that is the idle a serving process sees
    (``benchmarks/measure_selfcheck.md``, 'Idle power': 119-123 W on the H100 with a context, 71.9 W before any).
    """
    meter.begin_window("idle")
    sleep(seconds)
    return meter.end_window("idle").avg_power_watts


@dataclass
class RunOutcome:
    """A record plus the raw material behind it (power timeline, trace summary)."""

    record: RunRecord
    timeline: list[dict[str, Any]]


def run_one(
    run: RunConfig,
    engine: Engine,
    meter: EnergyMeter,
    *,
    gpu_model: str,
    idle_power_watts: float,
    provenance: Provenance,
    sampler: PowerSampler | None = None,
    clock: Callable[[], float] = time.time,
) -> RunOutcome:
    """Load, warm up, measure one steady window around ``generate``, and build the record.

    ``harness_overhead_fraction`` is the wall time spent inside the meter's begin/end calls over the
    window's time: what metering adds to the run.
    """
    h = run.spec.harness
    requests = request_stream(run.spec.workload, chunk=run.max_num_seqs)
    engine.load(run)
    try:
        engine.warm_up(requests, h.warmup_s)
        if sampler is not None:
            sampler.clear()
            sampler.sample_once()  # a sample on each side of the window, so the integral covers it
        t0 = clock()
        meter.begin_window(run.key)
        t1 = clock()
        trace = engine.generate(requests, h.min_steady_state_s)
        t2 = clock()
        meter_window = meter.end_window(run.key)
        t3 = clock()
        if sampler is not None:
            sampler.sample_once()
    finally:
        engine.release()
    overhead = ((t1 - t0) + (t3 - t2)) / meter_window.seconds if meter_window.seconds > 0 else None
    record = build_record(
        run,
        trace,
        meter_window,
        engine=engine,
        gpu_model=gpu_model,
        idle_power_watts=idle_power_watts,
        provenance=provenance,
        sampler=sampler,
        harness_overhead_fraction=overhead,
    )
    timeline = sampler.timeline() if sampler is not None else []
    return RunOutcome(record, timeline)
