"""Where measured runs go: JSONL files of RunRecords with provenance, and their import into the datasets.

A run directory (``runs/<stamp>/``) holds ``records.jsonl`` (one RunRecord per line, stable or not),
``timelines.jsonl`` (the power/utilisation samples behind each record) and ``sweep.json`` (spec, idle
power, self-checks). ``import_run_dir`` validates every record and copies the stable ones to
``datasets/local/<name>.jsonl``, the file ``estimator.learn.data.load_runs()`` reads.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from measure.diffusion_schema import DiffusionRecord
from measure.schema import Provenance, RunRecord, SweepSpec

RECORDS_FILE = "records.jsonl"
TIMELINES_FILE = "timelines.jsonl"
SWEEP_FILE = "sweep.json"


def git_sha(repo_dir: str | Path | None = None) -> str:
    """The commit being measured: ``$JOULES_GIT_SHA`` if set (copies without .git), else ``git rev-parse``."""
    if os.environ.get("JOULES_GIT_SHA"):
        return os.environ["JOULES_GIT_SHA"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo_dir or Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def collect_provenance(
    reader: Any, gpu_index: int, *, engine: Any, spec: SweepSpec, meter: str, started_at: str | None = None
) -> Provenance:
    """Provenance for a record: GPU, driver, power limit (read, never changed), versions, sha, spec hash."""
    return Provenance(
        gpu_name=reader.gpu_name(gpu_index),
        driver_version=reader.driver_version(),
        power_limit_watts=reader.power_limit_watts(gpu_index),
        engine=engine.name,
        engine_version=engine.version(),
        git_sha=git_sha(),
        spec_hash=spec.spec_hash(),
        started_at=started_at or now_iso(),
        hostname=socket.gethostname(),
        meter=meter,
        **engine.versions(),
    )


class RunSink:
    """Appends records and timelines to a run directory (created on first write)."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)

    def _append(self, name: str, obj: dict[str, Any]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / name, "a") as f:
            f.write(json.dumps(obj, sort_keys=True) + "\n")

    def append(self, record: RunRecord) -> None:
        self._append(RECORDS_FILE, record.model_dump(mode="json"))

    def append_timeline(self, key: str, samples: list[dict[str, Any]]) -> None:
        self._append(TIMELINES_FILE, {"key": key, "samples": samples})

    def write_sweep(self, info: dict[str, Any]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / SWEEP_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def read_records(path: str | Path) -> list[RunRecord | DiffusionRecord]:
    """Parse and validate every line of a records JSONL file.

    Raises:
        ValueError: a line is not a valid RunRecord (the message names the line).
    """
    records = []
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            kind = DiffusionRecord if '"inference_steps"' in line else RunRecord
            records.append(kind.model_validate_json(line))
        except ValueError as err:
            raise ValueError(f"{path}:{n}: invalid run record: {err}") from err
    return records


def import_run_dir(run_dir: str | Path, name: str, dest_dir: str | Path) -> tuple[int, int]:
    """Copy the stable records of ``run_dir`` to ``dest_dir/<name>.jsonl`` (replacing it).

    Returns:
        (stable records written, unstable records left out).
    """
    records = read_records(Path(run_dir) / RECORDS_FILE)
    stable = [r for r in records if r.is_stable]
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / f"{name}.jsonl", "w") as f:
        for r in stable:
            f.write(json.dumps(r.model_dump(mode="json"), sort_keys=True) + "\n")
    return len(stable), len(records) - len(stable)
