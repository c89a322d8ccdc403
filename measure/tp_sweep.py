"""Run a sweep with tensor parallelism: one process per GPU (torch.multiprocessing, spawn), one sweep per rank.

Every rank runs the same seeded sweep (:func:`measure.sweep.run_sweep`) with its own shard of the model; the
engines keep their time-driven loops in lockstep through one tiny all-reduce per round
(``TorchCudaGraphEngine.agree``). Rank 0 owns the meter, which reads every GPU of ``gpu_indices`` (energy is
the sum over them, each GPU's power kept on the record) and writes the run directory; the other ranks measure
nothing and write to a scratch directory under it (``rank<k>/``, records marked unstable for lack of energy).
NVLink multicast stays off in every process (:data:`measure.backends.torch_tp.NO_MULTICAST_ENV`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from measure.backends.torch_tp import NO_MULTICAST_ENV, TensorParallel, init_process_group
from measure.meter import NvmlReader, PowerSampler, WindowResult
from measure.schema import RunRecord, SweepSpec
from measure.sink import RECORDS_FILE, SWEEP_FILE
from measure.sweep import SweepResult, make_engine, run_sweep


class NullMeter:
    """The meter of a rank that measures nothing: windows with wall time and no energy."""

    name = "fake"

    def __init__(self, gpu_indices: list[int]):
        self.gpu_indices, self._open = gpu_indices, {}

    def begin_window(self, key: str) -> None:
        self._open[key] = time.time()

    def end_window(self, key: str) -> WindowResult:
        start = self._open.pop(key)
        return WindowResult(time.time() - start, {}, start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, spec_json: str, out_dir: str, idle_s: float, port: int, reader: Any = None) -> None:
    import torch
    import torch.distributed as dist

    spec = SweepSpec.model_validate_json(spec_json)
    cuda = spec.torch.device == "cuda"
    device = torch.device(f"cuda:{spec.gpu_indices[rank]}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    init_process_group(rank, spec.tensor_parallel, "nccl" if cuda else "gloo", port)
    engine = make_engine(spec, TensorParallel(rank, spec.tensor_parallel, device))
    try:
        if rank == 0:
            run_sweep(spec, out_dir, engine=engine, reader=reader, idle_s=idle_s)
        else:
            reader = reader or NvmlReader()
            run_sweep(spec, Path(out_dir) / f"rank{rank}", engine=engine, reader=reader,
                      meter=NullMeter(spec.gpu_indices), sampler=PowerSampler(reader, []), idle_s=idle_s)
    finally:
        dist.destroy_process_group()


def run_sweep_tp(spec: SweepSpec, out_dir: str | Path, *, idle_s: float = 5.0, reader: Any = None) -> SweepResult:
    """Spawn ``spec.tensor_parallel`` ranks, run the sweep, and read rank 0's records back.

    ``reader``: an NVML reader for every rank (tests pass a fake; it must be picklable).
    """
    import torch.multiprocessing as mp

    os.environ.update(NO_MULTICAST_ENV)
    mp.spawn(_worker, args=(spec.model_dump_json(), str(out_dir), idle_s, free_port(), reader),
             nprocs=spec.tensor_parallel, join=True)
    return read_result(out_dir)


def read_result(out_dir: str | Path) -> SweepResult:
    """The records and sweep facts a run directory holds."""
    out = Path(out_dir)
    result = SweepResult()
    records = out / RECORDS_FILE
    if records.exists():
        result.records = [RunRecord.model_validate_json(line) for line in records.read_text().splitlines() if line]
    if (out / SWEEP_FILE).exists():
        result.info = json.loads((out / SWEEP_FILE).read_text())
        result.skipped = result.info.get("skipped", {})
    return result
