"""Meters: unit conversion at the NVML boundary, the counter path, the power-integration fallback, zeus."""

from __future__ import annotations

import math

import pytest
from measure_fakes import FakeClock, FakeNvml

from measure.meter import NvmlMeter, NvmlReader, PowerSampler, WindowResult, make_meter


def test_nvml_meter_converts_mj_to_joules_once():
    """The counter speaks mJ; a 10 s window at 400 W must read 4000 J, not 4e6 or 4."""
    clock = FakeClock()
    meter = NvmlMeter([0], reader=NvmlReader(FakeNvml(clock, 400.0)), clock=clock)
    meter.begin_window("w")
    clock.advance(10.0)
    result = meter.end_window("w")
    assert result.seconds == 10.0
    assert result.total_joules == pytest.approx(4000.0, abs=1e-3)
    assert result.avg_power_watts == pytest.approx(400.0, rel=1e-6)


def test_reader_power_in_watts_with_and_without_instant_field():
    """Power reads mW from NVML; both the instant field and the averaged fallback must give watts."""
    clock = FakeClock()
    assert NvmlReader(FakeNvml(clock, 321.0)).power_watts(0) == pytest.approx(321.0)
    assert NvmlReader(FakeNvml(clock, 321.0, has_instant=False)).power_watts(0) == pytest.approx(321.0)
    reader = NvmlReader(FakeNvml(clock))
    assert reader.gpu_name(0) == "NVIDIA H100 80GB HBM3" and reader.power_limit_watts(0) == 700.0


def test_fallback_integrates_power_samples_without_counter():
    """GPUs without the energy counter: the window energy comes from the sampler's power integral."""
    clock = FakeClock()
    nvml = FakeNvml(clock, 250.0, has_counter=False)
    reader = NvmlReader(nvml)
    sampler = PowerSampler(reader, [0], clock=clock)
    meter = NvmlMeter([0], reader=reader, sampler=sampler, clock=clock)
    sampler.sample_once()
    meter.begin_window("w")
    for _ in range(20):
        clock.advance(0.5)
        sampler.sample_once()
    result = meter.end_window("w")
    assert result.total_joules == pytest.approx(250.0 * 10.0, rel=1e-9)


def test_fallback_without_samples_fails_loudly():
    """No counter and no samples must raise, never return 0 J."""
    clock = FakeClock()
    meter = NvmlMeter([0], reader=NvmlReader(FakeNvml(clock, has_counter=False)), clock=clock)
    meter.begin_window("w")
    clock.advance(1.0)
    with pytest.raises(RuntimeError, match="no energy counter"):
        meter.end_window("w")


def test_window_keys_are_checked():
    """zeus semantics: a key cannot be opened twice or closed unopened."""
    clock = FakeClock()
    meter = NvmlMeter([0], reader=NvmlReader(FakeNvml(clock)), clock=clock)
    meter.begin_window("a")
    with pytest.raises(ValueError):
        meter.begin_window("a")
    with pytest.raises(ValueError):
        meter.end_window("b")


class _ScriptedReader:
    """Power follows a script of (time, watts) breakpoints, linear in between."""

    def __init__(self, clock, script):
        self.clock, self.script = clock, script

    def power_watts(self, i):
        t = self.clock()
        for (t0, p0), (t1, p1) in zip(self.script, self.script[1:], strict=False):
            if t0 <= t <= t1:
                return p0 + (p1 - p0) * (t - t0) / (t1 - t0)
        return self.script[-1][1]

    def utilization_pct(self, i):
        return 50.0 if self.clock() < 1005 else 100.0

    def memory_used_gb(self, i):
        return 10.0

    def sm_clock_mhz(self, i):
        return 1980.0


def test_sampler_trapezoid_is_exact_on_piecewise_linear_power():
    """The self-check compares the counter with this integral; it must be exact on linear pieces, with
    interpolation at window edges that fall between samples."""
    clock = FakeClock(1000.0)
    sampler = PowerSampler(_ScriptedReader(clock, [(1000, 100.0), (1010, 600.0)]), [0], clock=clock)
    for _ in range(11):
        sampler.sample_once()
        clock.advance(1.0)
    # integral of 100 + 50 (t - 1000) over [1002.5, 1007.5] = 5 * (100 + 50 * 5) = 1750
    assert sampler.energy_joules(0, 1002.5, 1007.5) == pytest.approx(1750.0, rel=1e-12)
    assert sampler.energy_joules(0, 999.0, 1005.0) is None  # not covered
    assert sampler.mean("gpu_utilization_pct", 1005, 1010) == 100.0
    assert sampler.power_drift_fraction(1000, 1010) == pytest.approx(250 / 350, rel=1e-9)
    assert math.isnan(sampler.mean("power_watts", 2000, 2001))


def test_sampler_thread_starts_and_stops():
    """The background thread must take samples and join cleanly (no leaked thread)."""
    clock = FakeClock()
    sampler = PowerSampler(NvmlReader(FakeNvml(clock)), [0], period_s=0.001).start()
    import time

    time.sleep(0.02)
    sampler.stop()
    assert len(sampler.samples) >= 2 and sampler._thread is None


def test_window_result_sums_gpus():
    """Energy and power are sums over the run's GPUs (ML.ENERGY's avg_power_watts convention)."""
    r = WindowResult(2.0, {0: 800.0, 1: 1200.0})
    assert r.total_joules == 2000.0 and r.avg_power_watts == 1000.0


def test_make_meter_rejects_unknown_names():
    """A misspelt meter name must fail, not fall back silently."""
    with pytest.raises(ValueError, match="unknown meter"):
        make_meter("zeuss", [0])
