"""Energy meters and a power/utilisation sampler.

``EnergyMeter`` follows zeus: ``begin_window(key)`` / ``end_window(key) -> WindowResult``. Raw NVML units
(mJ, mW) are converted to J and W once, in :class:`NvmlReader`; everything above it speaks J, W, s.

* :class:`ZeusMeter` wraps ``zeus.monitor.ZeusMonitor`` (zeus>=0.16, imported lazily).
* :class:`NvmlMeter` reads NVML's total-energy counter at the window edges and falls back to integrating
  power samples for a GPU without the counter.
* :class:`PowerSampler` polls power, GPU utilisation, memory and SM clock on a thread for timelines.

Measured on the project's H100 while building this (raw numbers not kept in the repo; the resulting window error
is checked in benchmarks/measure_selfcheck.md): the counter updates every ~100 ms and a read costs 3-4 ms, so it
is read at window edges only and windows should last >= 10 s for < 1% quantisation error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Clock = Callable[[], float]

# NVML field id of the instantaneous power reading (nvml.h NVML_FI_DEV_POWER_INSTANT).
_NVML_FI_DEV_POWER_INSTANT = 186


@dataclass(frozen=True)
class WindowResult:
    """One measurement window.

    Attributes:
        seconds: wall time of the window (s).
        joules_per_gpu: energy per GPU index (J).
        start_s: window start on the meter's clock (s since the epoch for the default clock).
    """

    seconds: float
    joules_per_gpu: dict[int, float]
    start_s: float = 0.0

    @property
    def total_joules(self) -> float:
        """Energy summed over GPUs (J)."""
        return float(sum(self.joules_per_gpu.values()))

    @property
    def end_s(self) -> float:
        return self.start_s + self.seconds

    @property
    def avg_power_watts(self) -> float:
        """Mean power summed over GPUs (W); 0 for an empty window."""
        return self.total_joules / self.seconds if self.seconds > 0 else 0.0


@runtime_checkable
class EnergyMeter(Protocol):
    """A zeus-style window meter over a fixed set of GPUs."""

    name: str
    gpu_indices: list[int]

    def begin_window(self, key: str) -> None: ...

    def end_window(self, key: str) -> WindowResult: ...


class NvmlReader:
    """NVML queries in SI units (J, W, MHz, %, GB). pynvml is imported on first use.

    Args:
        nvml: an object with pynvml's functions (tests pass a fake); ``None`` imports ``pynvml``.
    """

    def __init__(self, nvml: Any | None = None):
        self._nvml = nvml
        self._handles: dict[int, Any] = {}
        self._instant_power_ok: dict[int, bool] = {}

    @property
    def nvml(self) -> Any:
        if self._nvml is None:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
        return self._nvml

    def _handle(self, gpu_index: int) -> Any:
        if gpu_index not in self._handles:
            self._handles[gpu_index] = self.nvml.nvmlDeviceGetHandleByIndex(gpu_index)
        return self._handles[gpu_index]

    def gpu_name(self, gpu_index: int) -> str:
        name = self.nvml.nvmlDeviceGetName(self._handle(gpu_index))
        return name.decode() if isinstance(name, bytes) else str(name)

    def driver_version(self) -> str:
        version = self.nvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)

    def power_limit_watts(self, gpu_index: int) -> float:
        return self.nvml.nvmlDeviceGetEnforcedPowerLimit(self._handle(gpu_index)) / 1000.0

    def energy_joules(self, gpu_index: int) -> float | None:
        """Total energy since driver load (J), or None when the GPU has no energy counter."""
        try:
            return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle(gpu_index)) / 1000.0
        except self.nvml.NVMLError:  # NVMLError_NotSupported on pre-Volta GPUs (no counter)
            return None

    def power_watts(self, gpu_index: int) -> float:
        """Instantaneous power (W); NVML's averaged reading where the instant field is missing."""
        handle = self._handle(gpu_index)
        if self._instant_power_ok.get(gpu_index, True):
            try:
                (value,) = self.nvml.nvmlDeviceGetFieldValues(handle, [_NVML_FI_DEV_POWER_INSTANT])
                if getattr(value, "nvmlReturn", 0) == 0:
                    return _field_value(value) / 1000.0
            except self.nvml.NVMLError:  # NotSupported / FunctionNotFound: the driver lacks the instant field
                pass
            self._instant_power_ok[gpu_index] = False
        return self.nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0

    def utilization_pct(self, gpu_index: int) -> float:
        return float(self.nvml.nvmlDeviceGetUtilizationRates(self._handle(gpu_index)).gpu)

    def memory_used_gb(self, gpu_index: int) -> float:
        return self.nvml.nvmlDeviceGetMemoryInfo(self._handle(gpu_index)).used / 1e9

    def sm_clock_mhz(self, gpu_index: int) -> float:
        return float(self.nvml.nvmlDeviceGetClockInfo(self._handle(gpu_index), 1))  # NVML_CLOCK_SM = 1


def _field_value(value: Any) -> float:
    """The numeric payload of an ``nvmlFieldValue_t``, read by its ``valueType`` (nvml.h order)."""
    attrs = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal"}
    union = value.value
    attr = attrs.get(getattr(value, "valueType", 3), "ullVal")
    return float(getattr(union, attr, getattr(union, "ullVal", 0)))


@dataclass(frozen=True)
class Sample:
    """One poll of one GPU: time (s), power (W), GPU utilisation (%), memory used (GB), SM clock (MHz)."""

    t_s: float
    gpu_index: int
    power_watts: float
    gpu_utilization_pct: float
    memory_used_gb: float
    sm_clock_mhz: float


@dataclass
class PowerSampler:
    """Polls each GPU every ``period_s`` on a daemon thread; integrates and averages the timeline.

    Power reads cost microseconds (measured on the project's H100; the sampler's effect on ITL is measured in
    benchmarks/measure_selfcheck.md), so a 100 ms period costs well under 0.1% of a core.
    """

    reader: Any
    gpu_indices: Sequence[int]
    period_s: float = 0.1
    clock: Clock = time.time
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def sample_once(self) -> None:
        """Take one sample of every GPU now."""
        for i in self.gpu_indices:
            self.samples.append(
                Sample(
                    t_s=self.clock(),
                    gpu_index=i,
                    power_watts=self.reader.power_watts(i),
                    gpu_utilization_pct=self.reader.utilization_pct(i),
                    memory_used_gb=self.reader.memory_used_gb(i),
                    sm_clock_mhz=self.reader.sm_clock_mhz(i),
                )
            )

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.period_s)

    def start(self) -> PowerSampler:
        """Start polling (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="power-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling and join the thread."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def clear(self) -> None:
        self.samples.clear()

    def _series(self, gpu_index: int) -> list[Sample]:
        return sorted((s for s in self.samples if s.gpu_index == gpu_index), key=lambda s: s.t_s)

    def energy_joules(self, gpu_index: int, start_s: float, end_s: float) -> float | None:
        """Trapezoid integral of power over [start_s, end_s] (J), interpolating at the edges.

        Returns None when fewer than two samples exist or they do not cover the window.
        """
        series = self._series(gpu_index)
        if len(series) < 2 or series[0].t_s > start_s or series[-1].t_s < end_s or end_s <= start_s:
            return None
        ts = [s.t_s for s in series]
        ps = [s.power_watts for s in series]
        points = [(start_s, _interp(ts, ps, start_s))]
        points += [(t, p) for t, p in zip(ts, ps, strict=True) if start_s < t < end_s]
        points.append((end_s, _interp(ts, ps, end_s)))
        return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(points, points[1:], strict=False))

    def mean(self, attribute: str, start_s: float, end_s: float, *, summed: bool = False) -> float:
        """Mean of a sample attribute over samples inside the window (per GPU, or summed over GPUs).

        Returns NaN when no sample falls inside the window.
        """
        per_gpu = []
        for i in self.gpu_indices:
            values = [getattr(s, attribute) for s in self._series(i) if start_s <= s.t_s <= end_s]
            if values:
                per_gpu.append(sum(values) / len(values))
        if not per_gpu:
            return float("nan")
        return sum(per_gpu) if summed else sum(per_gpu) / len(per_gpu)

    def power_drift_fraction(self, start_s: float, end_s: float) -> float:
        """|mean power of the second half - first half| / mean power, summed over GPUs (NaN if unknown)."""
        mid = (start_s + end_s) / 2
        first = self.mean("power_watts", start_s, mid, summed=True)
        second = self.mean("power_watts", mid, end_s, summed=True)
        total = (first + second) / 2
        return abs(second - first) / total if total > 0 else float("nan")

    def timeline(self) -> list[dict[str, float]]:
        """The samples as plain dicts (for JSON)."""
        return [s.__dict__.copy() for s in self.samples]


def _interp(ts: list[float], ys: list[float], t: float) -> float:
    for k in range(1, len(ts)):
        if ts[k] >= t:
            t0, t1 = ts[k - 1], ts[k]
            if t1 == t0:
                return ys[k]
            return ys[k - 1] + (ys[k] - ys[k - 1]) * (t - t0) / (t1 - t0)
    return ys[-1]


class NvmlMeter:
    """Window meter on NVML's total-energy counter; power-sample integration where it is missing.

    Args:
        gpu_indices: GPUs to meter (NVML indices).
        reader: an :class:`NvmlReader` (or a fake with the same methods).
        sampler: a running :class:`PowerSampler`; needed only for GPUs without the energy counter.
        sync: called before each edge to wait for queued GPU work (e.g. ``torch.cuda.synchronize``).
        clock: wall clock (s).
    """

    name = "nvml"

    def __init__(
        self,
        gpu_indices: Sequence[int],
        reader: Any | None = None,
        sampler: PowerSampler | None = None,
        sync: Callable[[], None] | None = None,
        clock: Clock = time.time,
    ):
        self.gpu_indices = list(gpu_indices)
        self.reader = reader if reader is not None else NvmlReader()
        self.sampler = sampler
        self.sync = sync
        self.clock = clock
        self._open: dict[str, tuple[float, dict[int, float | None]]] = {}

    def begin_window(self, key: str) -> None:
        if key in self._open:
            raise ValueError(f"measurement window {key!r} already exists")
        if self.sync:
            self.sync()
        start_s = self.clock()
        self._open[key] = (start_s, {i: self.reader.energy_joules(i) for i in self.gpu_indices})

    def end_window(self, key: str) -> WindowResult:
        try:
            start_s, start_j = self._open.pop(key)
        except KeyError:
            raise ValueError(f"measurement window {key!r} does not exist") from None
        if self.sync:
            self.sync()
        end_s = self.clock()
        joules: dict[int, float] = {}
        for i in self.gpu_indices:
            end_j = self.reader.energy_joules(i)
            if start_j[i] is not None and end_j is not None:
                joules[i] = end_j - start_j[i]
                continue
            integrated = self.sampler.energy_joules(i, start_s, end_s) if self.sampler else None
            if integrated is None:
                raise RuntimeError(f"GPU {i} has no energy counter and no power samples cover the window")
            joules[i] = integrated
        return WindowResult(seconds=end_s - start_s, joules_per_gpu=joules, start_s=start_s)


class ZeusMeter:
    """Window meter over ``zeus.monitor.ZeusMonitor`` (zeus>=0.16), created on first use.

    zeus returns joules and seconds already. We synchronise with ``sync`` ourselves and call zeus with
    ``sync_execution=False`` so zeus never imports a framework on its own.
    """

    name = "zeus"

    def __init__(self, gpu_indices: Sequence[int], sync: Callable[[], None] | None = None):
        self.gpu_indices = list(gpu_indices)
        self.sync = sync
        self._monitor: Any | None = None
        self._starts: dict[str, float] = {}

    @property
    def monitor(self) -> Any:
        if self._monitor is None:
            from zeus.monitor import ZeusMonitor

            self._monitor = ZeusMonitor(gpu_indices=self.gpu_indices, cpu_indices=[])
        return self._monitor

    def begin_window(self, key: str) -> None:
        monitor = self.monitor
        if self.sync:
            self.sync()
        monitor.begin_window(key, sync_execution=False)
        self._starts[key] = monitor.measurement_states[key].time

    def end_window(self, key: str) -> WindowResult:
        if self.sync:
            self.sync()
        measurement = self.monitor.end_window(key, sync_execution=False)
        joules = {int(i): float(j) for i, j in measurement.gpu_energy.items()}
        return WindowResult(
            seconds=float(measurement.time), joules_per_gpu=joules, start_s=self._starts.pop(key)
        )


def zeus_available() -> bool:
    """Whether ``zeus.monitor`` can be imported (without importing it at module import time)."""
    import importlib.util

    return importlib.util.find_spec("zeus") is not None


def make_meter(
    name: str,
    gpu_indices: Sequence[int],
    reader: Any | None = None,
    sampler: PowerSampler | None = None,
    sync: Callable[[], None] | None = None,
) -> EnergyMeter:
    """Build the meter named ``name`` ("zeus", "nvml", or "auto": zeus when installed, else NVML)."""
    if name == "auto":
        name = "zeus" if zeus_available() else "nvml"
    if name == "zeus":
        return ZeusMeter(gpu_indices, sync=sync)
    if name == "nvml":
        return NvmlMeter(gpu_indices, reader=reader, sampler=sampler, sync=sync)
    raise ValueError(f"unknown meter {name!r} (expected auto, zeus or nvml)")
