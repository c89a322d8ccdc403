"""Fakes built on the real interfaces: a fake clock, a meter whose energy is power x time exactly, an NVML
module that speaks raw NVML units (mJ, mW), and an engine with scripted token timings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from measure.harness import EngineTrace, RequestTiming, RunOutcome, Step, run_one
from measure.meter import WindowResult
from measure.schema import Provenance, RunConfig, SweepSpec
from measure.workloads import Request


@dataclass
class FakeClock:
    """A clock that moves only when told to."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeMeter:
    """EnergyMeter whose energy is exactly ``power_watts x elapsed`` on the fake clock."""

    clock: FakeClock
    power_watts: float = 500.0
    gpu_indices: list[int] = field(default_factory=lambda: [0])
    name: str = "fake"
    _open: dict[str, float] = field(default_factory=dict)

    def begin_window(self, key: str) -> None:
        self._open[key] = self.clock()

    def end_window(self, key: str) -> WindowResult:
        start = self._open.pop(key)
        seconds = self.clock() - start
        return WindowResult(seconds, {i: self.power_watts * seconds for i in self.gpu_indices}, start)


class FakeNvml:
    """The subset of pynvml the meter uses, in NVML's own units: energy in mJ, power in mW.

    Power is a function of the fake clock; the energy counter is its exact integral for a constant power.
    """

    class NVMLError(Exception):
        pass

    def __init__(
        self, clock: FakeClock, power_watts: float = 400.0, has_counter: bool = True, has_instant: bool = True
    ):
        self.clock, self.power_watts = clock, power_watts
        self.has_counter, self.has_instant = has_counter, has_instant
        self.energy_mj0 = 5_000_000.0

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("handle", i)

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlSystemGetDriverVersion(self):
        return "580.159.04"

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return 700_000

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.has_counter:
            raise self.NVMLError("Not Supported")
        return int(round(self.energy_mj0 + self.power_watts * 1000.0 * self.clock()))

    def nvmlDeviceGetFieldValues(self, handle, field_ids):
        if not self.has_instant:
            raise self.NVMLError("Not Supported")

        class Union:
            ullVal = int(self.power_watts * 1000)

        class Value:
            nvmlReturn = 0
            value = Union()

        return [Value()]

    def nvmlDeviceGetPowerUsage(self, handle):
        return int(self.power_watts * 1000)

    def nvmlDeviceGetUtilizationRates(self, handle):
        class U:
            gpu = 99

        return U()

    def nvmlDeviceGetMemoryInfo(self, handle):
        class M:
            used = 40e9

        return M()

    def nvmlDeviceGetClockInfo(self, handle, kind):
        return 1980


class FakeStaticEngine:
    """A static-batch engine with scripted timings on the fake clock.

    Each round: one prefill of ``prefill_s``, then ``output_len - 1`` decode steps of ``itl_s`` each, all at
    the full batch. ``batch_override`` scripts the batch size reported per round (to test low occupancy).
    """

    name = "fake-static"
    batching = "static"
    weights = "random"

    def __init__(self, clock: FakeClock, itl_s: float = 0.02, prefill_s: float = 0.1, batch_override=None):
        self.clock, self.itl_s, self.prefill_s = clock, itl_s, prefill_s
        self.batch_override = batch_override
        self.loaded: RunConfig | None = None
        self.released = 0

    def version(self) -> str:
        return "fake 1.0"

    def versions(self) -> dict[str, str]:
        return {"torch_version": "none", "cuda_version": "none"}

    def load(self, run: RunConfig) -> None:
        self.loaded = run

    def release(self) -> None:
        self.released += 1

    def warm_up(self, requests: Iterator[Request], seconds: float) -> None:
        self.clock.advance(seconds)

    def generate(self, requests: Iterator[Request], min_seconds: float) -> EngineTrace:
        b = self.loaded.max_num_seqs
        steps, timings, start = [], [], self.clock()
        while not steps or steps[-1].end_s - start < min_seconds:
            batch = [next(requests) for _ in range(b)]
            size = self.batch_override or b
            t0 = self.clock()
            self.clock.advance(self.prefill_s)
            steps.append(Step(t0, self.clock(), size, size, "prefill"))
            for _ in range(batch[0].output_len - 1):
                t = self.clock()
                self.clock.advance(self.itl_s)
                steps.append(Step(t, self.clock(), size, size, "decode"))
            timings += [
                RequestTiming(r.request_id, r.input_len, r.output_len, t0, t0 + self.prefill_s, self.clock())
                for r in batch
            ]
        return EngineTrace(requests=timings, steps=steps)


def make_spec(**overrides) -> SweepSpec:
    """A small valid spec (Llama-3.1-8B shape, forced output 50 tokens, 1 s minimum window)."""
    data = {
        "name": "test",
        "batch_sizes": [8, 16],
        "model": {"model_id": "meta-llama/Llama-3.1-8B-Instruct"},
        "workload": {"forced_output_len": 50, "seed": 3},
        "harness": {"warmup_s": 0.5, "min_steady_state_s": 1.0},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return SweepSpec.model_validate(data)


def fake_provenance(spec: SweepSpec, *, engine: str = "fake-static", engine_version: str = "fake 1.0") -> Provenance:
    """Provenance for records made with fakes (an H100-like GPU, a fake meter)."""
    return Provenance(gpu_name="NVIDIA H100 80GB HBM3", driver_version="580", power_limit_watts=700.0, engine=engine,
                      engine_version=engine_version, spec_hash=spec.spec_hash(),
                      started_at="2026-11-23T00:00:00+00:00", meter="fake")


def run_first(spec: SweepSpec, engine, meter, clock: FakeClock, **overrides) -> RunOutcome:
    """:func:`measure.harness.run_one` on the spec's first configuration with fake provenance (GPU name 'g', no idle
    power unless ``overrides`` say otherwise)."""
    kwargs = {"gpu_model": "g", "idle_power_watts": 0.0, "provenance": fake_provenance(spec), **overrides}
    return run_one(spec.expand()[0], engine, meter, clock=clock, **kwargs)
