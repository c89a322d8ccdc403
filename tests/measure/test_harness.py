"""Steady-state window, stability verdicts and record building on scripted timelines."""

from __future__ import annotations

import pytest
from measure_fakes import FakeMeter, FakeStaticEngine, fake_provenance, make_spec, run_first

from measure.harness import (
    EngineTrace,
    RequestTiming,
    Step,
    build_record,
    stability_reasons,
    steady_state_window,
    window_stats,
)
from measure.meter import PowerSampler, WindowResult
from measure.schema import HarnessSection


def _steps(sizes: list[int], dt: float = 1.0, t0: float = 0.0) -> list[Step]:
    return [Step(t0 + k * dt, t0 + (k + 1) * dt, b, b) for k, b in enumerate(sizes)]


def test_window_starts_when_full_and_ends_when_queue_runs_dry():
    """ML.ENERGY's window: ramp-up and drain are excluded; only the full-batch span counts."""
    trace = EngineTrace(requests=[], steps=_steps([2, 5, 8, 8, 8, 8, 6, 3]))
    window = steady_state_window(trace, max_num_seqs=8)
    assert (window.start_s, window.end_s) == (2.0, 6.0)
    stats = window_stats(trace, window.start_s, window.end_s)
    assert stats.output_tokens == 32 and stats.avg_batch_size == 8.0
    assert stats.itl_ms == [1000.0] * 4


def test_window_from_request_intervals_continuous_batching():
    """Offline engines give only per-request times: the running count must give the same window."""
    reqs = [
        RequestTiming(k, 10, 100, admitted_s=a, first_token_s=a + 0.1, finished_s=f)
        for k, (a, f) in enumerate([(0, 10), (1, 11), (2, 12), (10, 20), (11, 15), (12, 13)])
    ]
    trace = EngineTrace(requests=reqs)
    window = steady_state_window(trace, max_num_seqs=3)
    assert (window.start_s, window.end_s) == (2.0, 13.0)
    stats = window_stats(trace, window.start_s, window.end_s)
    assert stats.avg_batch_size == pytest.approx(3.0)


def test_never_full_uses_peak_and_is_flagged_low_batch():
    """A batch that never fills is not silently treated as full: the verdict says low utilisation."""
    trace = EngineTrace(requests=[], steps=_steps([3] * 20))
    window = steady_state_window(trace, max_num_seqs=8)
    stats = window_stats(trace, window.start_s, window.end_s)
    reasons = stability_reasons(
        steady_s=window.seconds,
        avg_batch_size=stats.avg_batch_size,
        max_num_seqs=8,
        gpu_utilization_pct=99,
        power_drift_fraction=0.0,
        output_tokens=60,
        energy_joules=1.0,
        criteria=HarnessSection(min_steady_state_s=10),
    )
    assert reasons == ["low batch utilization: achieved batch 3.0 < 0.85 x 8"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"steady_s": 4.0}, "steady state too short"),
        ({"gpu_utilization_pct": 40.0}, "GPU starved"),
        ({"power_drift_fraction": 0.2}, "power drifted"),
        ({"output_tokens": 0}, "no output tokens"),
    ],
)
def test_each_criterion_produces_its_reason(kwargs, expected):
    """Each stability criterion must fire alone, with a reason a reader can act on."""
    base = dict(
        steady_s=12.0,
        avg_batch_size=64.0,
        max_num_seqs=64,
        gpu_utilization_pct=99.0,
        power_drift_fraction=0.01,
        output_tokens=1000,
        energy_joules=10.0,
        criteria=HarnessSection(),
    )
    assert stability_reasons(**base) == []
    reasons = stability_reasons(**{**base, **kwargs})
    assert len(reasons) == 1 and reasons[0].startswith(expected)


def test_run_one_energy_is_power_times_time_exactly(clock):
    """With energy = P x T exactly, J/token must equal P x T / tokens and every identity must hold."""
    spec = make_spec(harness={"min_steady_state_s": 3.0, "warmup_s": 1.0})
    engine = FakeStaticEngine(clock, itl_s=0.02, prefill_s=0.1)
    meter = FakeMeter(clock, power_watts=500.0)
    outcome = run_first(spec, engine, meter, clock, gpu_model="NVIDIA H100 80GB HBM3", idle_power_watts=121.0)
    r = outcome.record
    # rounds of 0.1 + 49 x 0.02 = 1.08 s; three rounds reach 3 s: 3.24 s, 3 x 8 x 50 tokens
    assert r.steady_state_duration_s == pytest.approx(3.24)
    assert r.output_tokens_in_window == 1200
    assert r.energy_per_token_joules == pytest.approx(500.0 * 3.24 / 1200, rel=1e-12)
    assert r.avg_power_watts == pytest.approx(500.0, rel=1e-12)
    assert r.median_itl_ms == pytest.approx(20.0)
    assert r.is_stable and r.unstable_reason == ""
    assert engine.released == 1


def test_verdict_is_carried_not_dropped(clock):
    """An unstable run still yields a full record, with is_stable False and the reasons."""
    spec = make_spec(harness={"min_steady_state_s": 1.0})
    engine = FakeStaticEngine(clock, batch_override=4)
    meter = FakeMeter(clock)
    r = run_first(spec, engine, meter, clock).record
    assert not r.is_stable and "low batch utilization" in r.unstable_reason
    assert r.energy_per_token_joules > 0


def test_sub_window_energy_comes_from_power_samples(clock):
    """When ramp-up/drain sit inside the meter window, energy must be integrated over the steady part only."""
    spec = make_spec()
    run = spec.expand()[0]

    class Reader:
        def power_watts(self, i):
            return 300.0 if 1001 <= clock() <= 1009 else 100.0

        def utilization_pct(self, i):
            return 99.0

        def memory_used_gb(self, i):
            return 1.0

        def sm_clock_mhz(self, i):
            return 1980.0

    sampler = PowerSampler(Reader(), [0], clock=clock)
    for _ in range(101):
        sampler.sample_once()
        clock.advance(0.1)
    steps = _steps([4] * 2 + [8] * 6 + [4] * 2, dt=1.0, t0=1000.0)
    trace = EngineTrace(requests=[], steps=steps)
    meter_window = WindowResult(10.0, {0: 2000.0}, start_s=1000.0)
    r = build_record(
        run,
        trace,
        meter_window,
        engine=FakeStaticEngine(clock),
        gpu_model="g",
        idle_power_watts=0.0,
        provenance=fake_provenance(spec),
        sampler=sampler,
    )
    assert r.steady_state_duration_s == pytest.approx(6.0)
    assert r.window_energy_joules == pytest.approx(1800.0, rel=1e-9)
    assert r.energy_per_token_joules == pytest.approx(1800.0 / 48, rel=1e-9)
    assert "sub-window" in r.notes
