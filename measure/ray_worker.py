"""What runs on a Ray worker: one configuration measured on the GPUs Ray assigned, and the sweep's board.

Nothing here imports ray at module level; :mod:`measure.ray_sweep` wraps :func:`measure_configuration` and
:class:`SweepBoard` with ``ray.remote`` when a sweep starts. A task sees only the GPUs Ray gave it
(``CUDA_VISIBLE_DEVICES``), so the engine uses CUDA device 0.. while NVML, which ignores that variable,
reads the physical indices ``ray.get_gpu_ids()`` returns.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from measure.harness import run_one
from measure.schema import RunConfig, SweepSpec
from measure.sink import collect_provenance


@dataclass(frozen=True)
class TaskContext:
    """Where one attempt of a configuration runs: Ray node, host name, physical GPU indices, attempt (0-based)."""

    node_id: str
    hostname: str
    gpu_indices: list[int]
    attempt: int


@dataclass
class Backend:
    """What a task measures with: engine, NVML reader, meter, sampler, and the sleep used for idle power."""

    engine: Any
    reader: Any
    meter: Any
    sampler: Any
    sleep: Callable[[float], None] = time.sleep


BackendFactory = Callable[[SweepSpec, TaskContext], Backend]


def gpu_backend(spec: SweepSpec, context: TaskContext) -> Backend:
    """The real backend: the spec's engine, NVML on the assigned GPUs, the spec's meter (zeus or NVML)."""
    from measure.meter import NvmlReader, PowerSampler, make_meter
    from measure.sweep import make_engine

    engine = make_engine(spec)
    reader = NvmlReader()
    sampler = PowerSampler(reader, context.gpu_indices, period_s=spec.harness.sample_period_s)
    meter = make_meter(spec.harness.meter, context.gpu_indices, reader=reader, sampler=sampler,
                       sync=getattr(engine, "sync", None))
    return Backend(engine, reader, meter, sampler)


@dataclass(frozen=True)
class Job:
    """One configuration to measure: the spec as written (its hash goes on the record), one batch size, its key."""

    spec: SweepSpec
    max_num_seqs: int
    key: str
    attempt: int = 0
    idle_s: float = 5.0

    @property
    def run(self) -> RunConfig:
        """The configuration as the task runs it: on CUDA devices 0..n-1, the GPUs Ray made visible to it."""
        visible = self.spec.model_copy(update={"gpu_indices": list(range(self.num_gpus))})
        return RunConfig(spec=visible, max_num_seqs=self.max_num_seqs)

    @property
    def num_gpus(self) -> int:
        return len(self.spec.gpu_indices)


@dataclass
class Outcome:
    """What a task sends back: the record (JSON dict) and its timeline, or the error; where it ran."""

    key: str
    attempt: int
    node_id: str
    hostname: str
    gpu_indices: list[int]
    gpu_name: str = ""
    record: dict[str, Any] | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    out_of_memory: bool = False


class SweepBoard:
    """The sweep's shared state on the cluster (a Ray actor): idle power per (node, GPU index), measured once and
    reused by every later configuration on that GPU, and which attempt started where (for per-host status)."""

    def __init__(self, idle_watts: dict[str, float] | None = None):
        self.reset(idle_watts)

    def reset(self, idle_watts: dict[str, float] | None = None) -> None:
        """Start a new sweep, knowing ``idle_watts`` ("node_id/gpu_index" -> W, e.g. from the sweep resumed)."""
        self.idle_watts: dict[str, float] = dict(idle_watts or {})
        self.idle_measurements = 0
        self.started: dict[str, tuple[int, str, str]] = {}

    def known_idle(self, node_id: str, gpu_indices: list[int]) -> dict[int, float]:
        return {i: self.idle_watts[f"{node_id}/{i}"] for i in gpu_indices if f"{node_id}/{i}" in self.idle_watts}

    def put_idle(self, node_id: str, watts_per_gpu: dict[int, float]) -> None:
        self.idle_measurements += 1
        for i, watts in watts_per_gpu.items():
            self.idle_watts.setdefault(f"{node_id}/{i}", watts)

    def start(self, key: str, attempt: int, node_id: str, hostname: str) -> None:
        self.started[key] = (attempt, node_id, hostname)

    def snapshot(self) -> dict[str, Any]:
        return {"idle_watts": dict(self.idle_watts), "idle_measurements": self.idle_measurements,
                "started": dict(self.started)}


def idle_watts_per_gpu(backend: Backend, seconds: float) -> dict[int, float]:
    """Mean power (W) of each of the meter's GPUs over ``seconds`` of doing nothing, context held."""
    backend.meter.begin_window("idle")
    backend.sleep(seconds)
    window = backend.meter.end_window("idle")
    if window.seconds <= 0:
        return {i: float("nan") for i in window.joules_per_gpu}
    return {int(i): joules / window.seconds for i, joules in window.joules_per_gpu.items()}


def _idle_power_watts(job: Job, context: TaskContext, backend: Backend, board: Any) -> float:
    """Idle power summed over the task's GPUs, measuring only GPUs the board has no value for yet."""
    import ray

    if job.idle_s <= 0:
        return float("nan")
    known = ray.get(board.known_idle.remote(context.node_id, context.gpu_indices))
    if len(known) < len(context.gpu_indices):
        measured = idle_watts_per_gpu(backend, job.idle_s)
        ray.get(board.put_idle.remote(context.node_id, {i: w for i, w in measured.items() if i not in known}))
        known = {**measured, **known}
    return float(sum(known[i] for i in context.gpu_indices))


def _measure(job: Job, context: TaskContext, backend: Backend, board: Any) -> Outcome:
    engine, reader, sampler = backend.engine, backend.reader, backend.sampler
    if hasattr(engine, "init_device"):
        engine.init_device(job.spec.torch.device, 0)  # device 0 of the GPUs Ray made visible
    gpu = context.gpu_indices[0]
    gpu_name = reader.gpu_name(gpu)
    sampler.start()
    try:
        idle = _idle_power_watts(job, context, backend, board)
        provenance = collect_provenance(reader, gpu, engine=engine, spec=job.spec, meter=backend.meter.name)
        provenance = provenance.model_copy(update={"config_key": job.key})
        result = run_one(job.run, engine, backend.meter, gpu_model=gpu_name, idle_power_watts=idle,
                         provenance=provenance, sampler=sampler)
    finally:
        sampler.stop()
    return Outcome(job.key, job.attempt, context.node_id, context.hostname, context.gpu_indices, gpu_name,
                   record=result.record.model_dump(mode="json"), timeline=result.timeline)


def is_out_of_memory(err: BaseException) -> bool:
    """An out-of-memory error (torch's or ours): the configuration does not fit, retrying elsewhere will not help."""
    return isinstance(err, MemoryError) or "out of memory" in str(err).lower()


def measure_configuration(job: Job, factory: BackendFactory, board: Any) -> Outcome:
    """Body of the Ray task: measure ``job`` on the GPUs Ray assigned; a failure comes back as an Outcome."""
    import ray

    context = TaskContext(ray.get_runtime_context().get_node_id(), socket.gethostname(),
                          [int(i) for i in ray.get_gpu_ids()], job.attempt)
    board.start.remote(job.key, job.attempt, context.node_id, context.hostname)
    try:
        return _measure(job, context, factory(job.spec, context), board)
    except Exception as err:  # noqa: BLE001 - every failure goes back to the driver, which retries or records it
        return Outcome(job.key, job.attempt, context.node_id, context.hostname, context.gpu_indices,
                       error=f"{type(err).__name__}: {err}"[:500], out_of_memory=is_out_of_memory(err))
