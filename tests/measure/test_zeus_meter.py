"""ZeusMeter driven through fake GPU classes that subclass zeus's own GPU/GPUs ABCs."""

from __future__ import annotations

import pytest
from measure_fakes import FakeClock

zeus_gpu = pytest.importorskip("zeus.device.gpu.common")


def _fake_gpu_class(clock: FakeClock, power_watts: float, has_counter: bool = True):
    """A zeus ``GPU`` whose counter (mJ) integrates a constant power over the fake clock."""

    def unsupported(self, *args, **kwargs):
        raise NotImplementedError

    namespace = {name: unsupported for name in zeus_gpu.GPU.__abstractmethods__}
    namespace.update(
        supports_nonblocking_setters=property(lambda self: False),
        get_name=lambda self: "NVIDIA H100 80GB HBM3",
        supports_get_total_energy_consumption=lambda self: has_counter,
        get_total_energy_consumption=lambda self: int(round(1e6 + power_watts * 1000.0 * clock())),
        get_instant_power_usage=lambda self: int(power_watts * 1000),
    )
    return type("FakeZeusGPU", (zeus_gpu.GPU,), namespace)


def _fake_gpus(gpu_class, count: int):
    class FakeZeusGPUs(zeus_gpu.GPUs):
        def __init__(self, ensure_homogeneous: bool = False) -> None:
            self._gpus = [gpu_class(i) for i in range(count)]

        def __del__(self) -> None:
            pass

        @property
        def gpus(self):
            return self._gpus

    return FakeZeusGPUs()


@pytest.fixture
def zeus_env(monkeypatch):
    """Point zeus's monitor at fake GPUs and a fake clock; no CPUs, no SoC."""
    import zeus.monitor.energy as energy
    from zeus.device.cpu.common import ZeusCPUInitError
    from zeus.device.soc.common import ZeusSoCInitError

    clock = FakeClock()

    def install(power_watts: float, count: int = 1):
        gpus = _fake_gpus(_fake_gpu_class(clock, power_watts), count)
        monkeypatch.setattr(energy, "get_gpus", lambda *a, **k: gpus)
        monkeypatch.setattr(energy, "get_cpus", lambda *a, **k: (_ for _ in ()).throw(ZeusCPUInitError("no")))
        monkeypatch.setattr(energy, "get_soc", lambda *a, **k: (_ for _ in ()).throw(ZeusSoCInitError("no")))
        monkeypatch.setattr(energy, "time", clock)
        return clock

    return install


def test_zeus_meter_reports_joules_per_gpu(zeus_env):
    """zeus converts mJ to J itself; our wrapper must not convert again and must keep per-GPU energy."""
    from measure.meter import ZeusMeter

    clock = zeus_env(power_watts=600.0, count=2)
    synced = []
    meter = ZeusMeter([0, 1], sync=lambda: synced.append(clock()))
    meter.begin_window("w")
    clock.advance(12.5)
    result = meter.end_window("w")
    assert result.seconds == pytest.approx(12.5)
    assert result.joules_per_gpu == {0: pytest.approx(7500.0), 1: pytest.approx(7500.0)}
    assert result.avg_power_watts == pytest.approx(1200.0)
    assert result.start_s == pytest.approx(1000.0)
    assert len(synced) == 2  # we synchronise, zeus does not import a framework to do it


def test_make_meter_auto_picks_zeus_when_installed(zeus_env):
    """ "auto" must prefer zeus (the counter, exactly) whenever zeus is importable."""
    from measure.meter import make_meter

    zeus_env(power_watts=100.0)
    assert make_meter("auto", [0]).name == "zeus"
