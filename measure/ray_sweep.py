"""``measure run --ray``: every configuration of one or more sweeps as a Ray task on whichever host has its GPUs.

Each configuration (one spec at one batch size) is one task asking for ``num_gpus`` = its GPU count (and, with
``gpu_type``, Ray's ``accelerator_type`` label); a task's resources always come from one node, so a multi-GPU
configuration stays on one host. Results come back to this driver, which appends each record through
:class:`measure.sink.RunSink` as it arrives, so killing the driver loses nothing already measured. A failed
attempt is retried on another node (Ray's own ``max_retries`` covers a dead worker or node first), then written
to ``failed.jsonl`` with its reason; an out-of-memory configuration is skipped, as in a sequential sweep.
``resume=True`` skips every configuration whose key (:func:`measure.config_key.config_key`) is recorded.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure.config_key import config_key, recorded_key
from measure.ray_worker import BackendFactory, Job, Outcome, SweepBoard, gpu_backend, measure_configuration
from measure.schema import RunRecord, SweepSpec
from measure.sink import RECORDS_FILE, RunSink, git_sha, now_iso

FAILED_FILE = "failed.jsonl"
NODE_CHECK_S = 10.0  # how often the driver looks for configurations no live node can host
INSTALL_HINT = "pip install 'joules-estimate[cluster]'  (or: pip install 'ray>=2.9,<2.56')"
#: the backend every task builds (tests swap in fakes; it is pickled to the workers with each task)
BACKEND_FACTORY: BackendFactory = gpu_backend


class RayUnavailable(RuntimeError):
    """Ray is missing or cannot be imported here; the message says how to install it, in one line."""


def import_ray() -> Any:
    """``import ray``, turning a missing or broken install into :class:`RayUnavailable` with the install line."""
    try:
        import ray
    except ImportError as err:
        raise RayUnavailable(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from err
    except Exception as err:  # ray>=2.56 imports amdsmi, whose import raises KeyError without ROCm's library
        raise RayUnavailable(f"ray cannot be imported here ({type(err).__name__}: {err}); "
                             f"ray<2.56 does not need ROCm: {INSTALL_HINT}") from err
    return ray


def connect(address: str | None) -> bool:
    """Join the Ray instance at ``address`` ("local"/None: the running local one or a new one; "auto";
    "HOST:PORT"; "ray://HOST:PORT"). Returns True when this call connected (and the caller should shut down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    sha = git_sha()
    warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
    ray.init(address=None if address in (None, "local") else address, logging_level="WARNING",
             log_to_driver=False, runtime_env={"env_vars": {"JOULES_GIT_SHA": sha}} if sha else None)
    return True


@dataclass
class NodeView:
    """A Ray node as the driver labels it: host label, GPU count and resources."""

    node_id: str
    label: str
    num_gpus: float
    resources: dict[str, float]


def cluster_nodes() -> dict[str, NodeView]:
    """Alive nodes, labelled by host name (with a short node id where several nodes share a host name)."""
    ray = import_ray()
    alive = [n for n in ray.nodes() if n.get("Alive")]
    names = Counter(n["NodeManagerHostname"] for n in alive)
    return {n["NodeID"]: NodeView(n["NodeID"], n["NodeManagerHostname"] if names[n["NodeManagerHostname"]] == 1
                                  else f"{n['NodeManagerHostname']}#{n['NodeID'][:6]}",
                                  n["Resources"].get("GPU", 0.0), dict(n["Resources"])) for n in alive}


def _gpus(n: int) -> str:
    return f"{n} GPU" if n == 1 else f"{n} GPUs"


def can_host(node: NodeView, num_gpus: int, gpu_type: str | None) -> bool:
    """Whether ``node`` has ``num_gpus`` GPUs (of Ray accelerator type ``gpu_type`` when given)."""
    return node.num_gpus >= num_gpus and (gpu_type is None or f"accelerator_type:{gpu_type}" in node.resources)


@dataclass
class RaySweepResult:
    """What the sweep did: records written now, configurations failed or skipped, attempts per key, facts."""

    records: list[RunRecord] = field(default_factory=list)
    already_recorded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, list[Outcome]] = field(default_factory=lambda: defaultdict(list))
    info: dict[str, Any] = field(default_factory=dict)


def repair_tail(path: Path) -> None:
    """Cut a last line without its newline (a write the driver was killed inside): it was never a record."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def recorded_keys(out_dir: Path, specs: list[SweepSpec]) -> set[str]:
    """Configuration keys of the records already in ``out_dir/records.jsonl``."""
    from measure.sink import read_records

    path = out_dir / RECORDS_FILE
    repair_tail(path)
    if not path.exists():
        return set()
    return {k for r in read_records(path) if (k := recorded_key(r, specs)) is not None}


def plan_jobs(specs: list[SweepSpec], done: set[str], idle_s: float) -> tuple[list[Job], list[str]]:
    """One job per configuration not in ``done`` (each key once, whichever spec names it first), and the
    run keys of configurations skipped because they are already recorded."""
    jobs, seen, skipped = [], set(done), []
    for spec in specs:
        for batch in spec.batch_sizes:
            key = config_key(spec, batch)
            if key in done:
                skipped.append(f"{spec.name}-bs{batch}")
            if key not in seen:
                seen.add(key)
                jobs.append(Job(spec, batch, key, idle_s=idle_s))
    return jobs, skipped


_BOARDS: dict[str, Any] = {}


def sweep_board(ray: Any, idle_watts: dict[str, float]) -> Any:
    """This driver's :class:`SweepBoard` actor, reset for a new sweep (one actor per Ray job: starting an actor
    process costs seconds, a reset nothing)."""
    job = ray.get_runtime_context().get_job_id()
    if job not in _BOARDS:
        _BOARDS[job] = ray.remote(SweepBoard).options(num_cpus=0).remote()
    ray.get(_BOARDS[job].reset.remote(idle_watts))
    return _BOARDS[job]


def _previous_idle(out_dir: Path) -> dict[str, float]:
    try:
        return json.loads((out_dir / "sweep.json").read_text()).get("idle_power_watts_by_node_gpu", {})
    except (OSError, ValueError, AttributeError):
        return {}


@dataclass
class HostStatus:
    """Per-host counts for the progress line and the summary."""

    gpu_names: set[str] = field(default_factory=set)
    done: int = 0
    failed_attempts: int = 0
    skipped: int = 0


class SweepDriver:
    """Submits jobs, collects outcomes, retries away from failed nodes, and writes every result at once."""

    def __init__(self, ray: Any, out_dir: Path, factory: BackendFactory, retries: int, gpu_type: str | None,
                 done: set[str], result: RaySweepResult):
        self.ray, self.out_dir, self.factory = ray, out_dir, factory
        self.retries, self.gpu_type, self.done, self.result = retries, gpu_type, done, result
        self.sink = RunSink(out_dir)
        self.nodes = cluster_nodes()
        self.remote = ray.remote(measure_configuration)
        self.board = sweep_board(ray, _previous_idle(out_dir))
        self.pending: dict[Any, Job] = {}
        self.hosts: dict[str, HostStatus] = defaultdict(HostStatus)

    def drop_infeasible(self) -> None:
        """Re-read the cluster; a pending configuration no live node can host any more (its host died) is
        cancelled and recorded as failed, instead of waiting forever."""
        alive = cluster_nodes()
        self.nodes.update(alive)
        for ref, job in list(self.pending.items()):
            if not any(can_host(n, job.num_gpus, self.gpu_type) for n in alive.values()):
                self.ray.cancel(ref, force=True)
                del self.pending[ref]
                self.fail(job, f"no live node has {_gpus(job.num_gpus)} any more")

    def label(self, node_id: str) -> str:
        view = self.nodes.get(node_id)
        return view.label if view else (node_id[:6] or "unknown host")

    def submit(self, job: Job, avoid: set[str] = frozenset()) -> None:
        """Start ``job`` as a task; a retry goes (softly) to a capable node that has not failed it."""
        capable = [n for n in self.nodes.values() if can_host(n, job.num_gpus, self.gpu_type)]
        if not capable:
            most = max((n.num_gpus for n in self.nodes.values()), default=0)
            kind = f" of type {self.gpu_type}" if self.gpu_type else ""
            self.fail(job, f"no node has {_gpus(job.num_gpus)}{kind} (the largest has {most:g})")
            return
        options: dict[str, Any] = {"num_gpus": job.num_gpus, "max_retries": 1, "retry_exceptions": False,
                                   "name": f"measure {job.run.key}"}
        if self.gpu_type:
            options["accelerator_type"] = self.gpu_type
        others = [n for n in capable if n.node_id not in avoid]
        if avoid and others:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            target = others[job.attempt % len(others)].node_id
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=target, soft=True)
        self.pending[self.remote.options(**options).remote(job, self.factory, self.board)] = job

    def fail(self, job: Job, reason: str) -> None:
        tried = [self.label(o.node_id) for o in self.result.attempts[job.key]]
        self.result.failed[job.run.key] = reason
        self.sink.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / FAILED_FILE, "a") as f:
            f.write(json.dumps({"key": job.run.key, "config_key": job.key, "reason": reason, "attempts": len(tried),
                                "hosts": tried, "at": now_iso()}, sort_keys=True) + "\n")

    def collect(self, ref: Any) -> Outcome:
        job = self.pending.pop(ref)
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as err:  # the worker or its node died, after Ray's own retry
            started = self.ray.get(self.board.snapshot.remote())["started"].get(job.key, (0, "", ""))
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            return Outcome(job.key, job.attempt, started[1], started[2], [], error=f"{type(err).__name__}: {first}")

    def handle(self, job: Job, outcome: Outcome) -> None:
        """Write a record at once (never one key twice); retry a failure elsewhere, or record it as failed."""
        self.result.attempts[job.key].append(outcome)
        host = self.hosts[self.label(outcome.node_id)]
        if outcome.gpu_name:
            host.gpu_names.add(outcome.gpu_name)
        if outcome.record is not None:
            if job.key not in self.done:
                record = RunRecord.model_validate(outcome.record)
                self.sink.append(record)
                self.sink.append_timeline(job.run.key, outcome.timeline)
                self.done.add(job.key)
                self.result.records.append(record)
                host.done += 1
            return
        host.failed_attempts += 1
        if outcome.out_of_memory:
            host.skipped += 1
            self.result.skipped[job.run.key] = outcome.error
        elif job.attempt < self.retries:
            avoid = {o.node_id for o in self.result.attempts[job.key] if o.error and o.node_id}
            self.submit(Job(job.spec, job.max_num_seqs, job.key, job.attempt + 1, job.idle_s), avoid)
        else:
            self.fail(job, outcome.error)

    def board_snapshot(self) -> dict[str, Any]:
        return self.ray.get(self.board.snapshot.remote())

    def status_line(self) -> str:
        """``host: n running, n done[, n failed]`` for every host seen."""
        started = self.board_snapshot()["started"]
        running = Counter(self.label(node) for (_, node, _) in
                          (started[j.key] for j in self.pending.values() if j.key in started))
        parts = []
        for label in sorted(set(self.hosts) | set(running)):
            h = self.hosts[label]
            fails = f", {h.failed_attempts} failed" if h.failed_attempts else ""
            parts.append(f"{label}: {running[label]} running, {h.done} done{fails}")
        return " | ".join(parts) or "waiting for workers"


def run_ray_sweep(
    specs: list[SweepSpec],
    out_dir: str | Path,
    *,
    address: str | None = None,
    resume: bool = False,
    idle_s: float = 5.0,
    retries: int = 2,
    gpu_type: str | None = None,
    factory: BackendFactory | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> RaySweepResult:
    """Measure every configuration of ``specs`` on a Ray cluster; records go to ``out_dir/records.jsonl``.

    Args:
        address: Ray address ("local"/None, "auto", "HOST:PORT", "ray://HOST:PORT").
        resume: skip configurations already recorded in ``out_dir`` (else an ``out_dir`` with records is refused).
        idle_s: seconds of idle power per GPU, measured once per (node, GPU index) and reused.
        retries: attempts after the first for a failed configuration, each on another node when there is one.
        gpu_type: Ray accelerator type every task asks for (e.g. "H100"), or None for any GPU.
        factory: builds each task's engine, meter and sampler (default :data:`BACKEND_FACTORY`).
        on_progress: called with (configurations finished, total, per-host status line).

    Raises:
        RayUnavailable: Ray is missing or cannot be imported.
        FileExistsError: ``out_dir`` has records and ``resume`` is False.
    """
    out = Path(out_dir)
    done = recorded_keys(out, specs)
    if done and not resume:
        raise FileExistsError(f"{out} already has {len(done)} recorded configurations: pass --resume to continue "
                              f"that sweep, or choose another --out")
    ray = import_ray()
    started_here = connect(address)
    result = RaySweepResult()
    jobs, result.already_recorded = plan_jobs(specs, done, idle_s)
    try:
        driver = SweepDriver(ray, out, factory or BACKEND_FACTORY, retries, gpu_type, done, result)
        result.info = {"specs": [{"name": s.name, "spec_hash": s.spec_hash(), "spec": s.model_dump(mode="json")}
                                 for s in specs], "ray_address": address or "local", "started_at": now_iso(),
                       "already_recorded": result.already_recorded, "idle_seconds": idle_s}
        _drive(driver, jobs, on_progress)
    finally:
        if started_here:
            ray.shutdown()
    return result


def _drive(driver: SweepDriver, jobs: list[Job], on_progress: Callable[[int, int, str], None] | None) -> None:
    for job in jobs:
        driver.submit(job)
    total, last_tick, last_check = len(jobs), 0.0, time.monotonic()
    while True:
        if time.monotonic() - last_check > NODE_CHECK_S:
            driver.drop_infeasible()
            last_check = time.monotonic()
        finished = total - len({j.key for j in driver.pending.values()})
        if on_progress and (time.monotonic() - last_tick > 1.0 or not driver.pending):
            on_progress(finished, total, driver.status_line())
            last_tick = time.monotonic()
        if not driver.pending:
            break
        ready, _ = driver.ray.wait(list(driver.pending), num_returns=1, timeout=1.0)
        for ref in ready:
            job = driver.pending[ref]
            driver.handle(job, driver.collect(ref))
            _write_info(driver)
    _write_info(driver, finished=True)


def _write_info(driver: SweepDriver, finished: bool = False) -> None:
    """sweep.json: specs, hosts, idle power per node and GPU, failures; rewritten after every outcome."""
    board = driver.board_snapshot()
    info = driver.result.info
    info.update({
        "hosts": {label: {"gpu_names": sorted(h.gpu_names), "done": h.done, "failed_attempts": h.failed_attempts,
                          "skipped": h.skipped} for label, h in sorted(driver.hosts.items())},
        "nodes": {n.label: {"node_id": n.node_id, "num_gpus": n.num_gpus} for n in driver.nodes.values()},
        "idle_power_watts_by_node_gpu": board["idle_watts"],
        "idle_measurements": board["idle_measurements"],
        "failed": driver.result.failed,
        "skipped": driver.result.skipped,
    })
    if finished:
        info["finished_at"] = now_iso()
    driver.sink.write_sweep(info)


def split_arguments(tokens: list[str]) -> tuple[list[Path], str | None]:
    """Spec files and the Ray address among ``measure run``'s positional arguments (``--ray [ADDRESS]``).

    An address is "local", "auto", "HOST:PORT" or "ray://HOST:PORT" and not an existing file; at most one.

    Raises:
        ValueError: two addresses, or no spec file.
    """
    address = [t for t in tokens if not Path(t).exists() and
               (t in ("local", "auto") or t.startswith("ray://") or re.fullmatch(r"[\w.-]+:\d+", t))]
    specs = [Path(t) for t in tokens if t not in address]
    if len(address) > 1 or not specs:
        raise ValueError(f"give spec files, then at most one Ray address; got {' '.join(tokens)}")
    return specs, (address[0] if address else None)


def summary_table(result: RaySweepResult) -> Any:
    """A rich table: one row per host (GPUs, configurations done, failed attempts, skipped)."""
    from rich.table import Table

    table = Table(title="Ray sweep")
    for col in ("host", "GPU", "done", "failed attempts", "skipped (OOM)"):
        table.add_column(col, justify="left" if col in ("host", "GPU") else "right")
    for label, h in result.info.get("hosts", {}).items():
        table.add_row(label, ", ".join(h["gpu_names"]) or "-", str(h["done"]), str(h["failed_attempts"]),
                      str(h["skipped"]))
    return table


def run_from_cli(tokens: list[str], out: Path | None, *, ray: bool, resume: bool, gpu_type: str | None,
                 idle_s: float, as_json: bool, console: Any) -> int:
    """What ``measure run --ray`` does: read the specs, run the sweep with one progress bar, print the summary.

    Returns the exit code: 0 all configurations recorded, 1 some failed, 2 a usage error (printed in one line).
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from measure.sweep import default_out_dir

    try:
        spec_paths, address = split_arguments(tokens)
        if not ray:
            raise ValueError("--resume, several spec files and an ADDRESS need --ray (a sequential run takes one spec)")
        specs = [SweepSpec.from_toml(p) for p in spec_paths]
        out_dir = out or default_out_dir()
        import_ray()
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console, disable=as_json) as progress:
            bar = progress.add_task("starting Ray", total=None)

            def on_progress(finished: int, total: int, status: str) -> None:
                progress.update(bar, completed=finished, total=total, description=status)

            result = run_ray_sweep(specs, out_dir, address=address, resume=resume, idle_s=idle_s,
                                   gpu_type=gpu_type, on_progress=on_progress)
    except (RayUnavailable, FileExistsError, ValueError, OSError) as err:
        console.print(f"error: {' '.join(str(err).split())}", soft_wrap=True, markup=False, highlight=False)
        return 2
    if as_json:
        for r in result.records:
            print(r.model_dump_json())
    else:
        console.print(summary_table(result))
        for key, reason in result.failed.items():
            console.print(f"failed: {key}: {reason}", soft_wrap=True, markup=False, highlight=False)
        console.print(f"{len(result.records)} new records, {len(result.already_recorded)} already recorded, "
                      f"{len(result.failed)} failed; records in {out_dir}/{RECORDS_FILE}", soft_wrap=True, markup=False)
    return 1 if result.failed else 0
