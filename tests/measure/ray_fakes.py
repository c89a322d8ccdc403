"""A backend factory for Ray tasks built from the measure fakes: each task gets its own fake clock, so records
do not depend on which worker or in which order a configuration ran. Importable by Ray workers (the tests put
this folder on their PYTHONPATH)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from measure_fakes import FakeClock, FakeMeter, FakeNvml, FakeStaticEngine

from measure.meter import NvmlReader, PowerSampler
from measure.ray_worker import Backend, TaskContext
from measure.schema import SweepSpec


class SlowFakeEngine(FakeStaticEngine):
    """The fake static engine, plus ``delay_s`` of real time per generate (so a sweep can be killed mid-way)."""

    def __init__(self, clock: FakeClock, delay_s: float):
        super().__init__(clock)
        self.delay_s = delay_s

    def generate(self, requests, min_seconds):
        time.sleep(self.delay_s)
        return super().generate(requests, min_seconds)


@dataclass(frozen=True)
class FakeFactory:
    """Fake engine, NVML and meter (400 W per GPU) on a fresh fake clock per task.

    ``fail_first`` / ``fail_always``: batch sizes whose first attempt / every attempt raises a scripted fault.
    """

    delay_s: float = 0.0
    fail_first: tuple[int, ...] = ()
    fail_always: tuple[int, ...] = ()
    power_watts: float = 400.0

    def __call__(self, spec: SweepSpec, context: TaskContext) -> Backend:
        clock = FakeClock()
        reader = NvmlReader(FakeNvml(clock, self.power_watts))
        engine = SlowFakeEngine(clock, self.delay_s) if self.delay_s else FakeStaticEngine(clock)
        engine.fault = (self.fail_first, self.fail_always, context.attempt)
        engine.load = _faulty_load(engine)
        meter = FakeMeter(clock, self.power_watts, gpu_indices=list(context.gpu_indices))
        return Backend(engine, reader, meter, PowerSampler(reader, context.gpu_indices, clock=clock), clock.advance)


def _faulty_load(engine):
    first, always, attempt = engine.fault
    original = engine.load

    def load(run):
        if run.max_num_seqs in always or (run.max_num_seqs in first and attempt == 0):
            raise RuntimeError(f"scripted fault at batch {run.max_num_seqs}, attempt {attempt}")
        original(run)

    return load
