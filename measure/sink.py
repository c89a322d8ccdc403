"""Where measured runs go: JSONL files of RunRecords with provenance, and their import into the datasets.

A run directory (``runs/<stamp>/``) holds ``records.jsonl`` (one RunRecord per line, stable or not),
``timelines.jsonl`` (the power/utilisation samples behind each record) and ``sweep.json`` (spec, idle
power, self-checks). ``import_run_dir`` validates every record (as a RunRecord and with the rules
``estimator.learn.data.load_runs()`` applies) and adds the stable ones to ``datasets/local/<name>.jsonl``
atomically: never shrinking a dataset unless asked, never importing one run twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
from dataclasses import dataclass, field
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


class DatasetImportError(ValueError):
    """An import that would lose data, count a run twice or add a record ``load_runs()`` rejects (nothing written)."""


#: a dataset name is one plain file name: no separators, no leading dot, no '..'
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: the configuration part of a record's identity (with the spec hash and provenance, below)
KEY_FIELDS = ("model_id", "task", "gpu_model", "num_gpus", "max_num_seqs", "tensor_parallel", "expert_parallel",
              "data_parallel", "weight_precision", "engine", "engine_version", "batching", "weights", "batch_size",
              "inference_steps", "image_height", "image_width", "video_height", "video_width", "num_frames")
KEY_PROVENANCE = ("spec_hash", "started_at", "hostname", "gpu_name")


def check_dataset_name(name: str) -> str:
    """Return ``name`` if it is a plain file name (letters, digits, '.', '_', '-'; no path, no '..').

    Raises:
        DatasetImportError: naming the value and the rule.
    """
    if not DATASET_NAME.match(name) or ".." in name or name.endswith(".jsonl"):
        raise DatasetImportError(f"dataset name {name!r} is not a plain file name (letters, digits, '.', '_', '-'; "
                                 f"no '/', no '..', no .jsonl suffix)")
    return name


def record_key(row: dict[str, Any]) -> str:
    """A record's identity: spec hash + configuration + provenance (host, GPU, start time), as 16 hex digits.

    The same run imported under two names has the same key; two measurements of one configuration do not.
    """
    provenance = row.get("provenance") or {}
    identity = [row.get(k) for k in KEY_FIELDS] + [provenance.get(k) for k in KEY_PROVENANCE]
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def existing_keys(dest: Path) -> dict[str, str]:
    """Record key -> ``file:line`` for every record already in ``dest/*.jsonl``."""
    seen: dict[str, str] = {}
    for path in sorted(dest.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # load_runs names malformed lines; they cannot duplicate anything
            if isinstance(row, dict):
                seen.setdefault(record_key(row), f"{path.name}:{n}")
    return seen


def read_catalog_entries(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a TOML of new catalog entries (``[gpus."KEY"]`` / ``[models."ID"]`` tables, catalog format) and
    validate each entry with the catalog's own rules (sources required).

    Raises:
        DatasetImportError: not TOML, unknown tables, or an invalid entry (naming it).
    """
    import tomllib

    from estimator.catalog.catalog import ArchitectureSpec, GPUSpec
    from estimator.safe_io import read_text_checked

    try:
        raw = tomllib.loads(read_text_checked(path))
    except (tomllib.TOMLDecodeError, ValueError) as err:
        raise DatasetImportError(f"{path}: not a catalog entry file: {' '.join(str(err).split())}") from err
    unknown = set(raw) - {"gpus", "models"}
    if unknown or not raw:
        raise DatasetImportError(f"{path}: expected [gpus.\"KEY\"] or [models.\"ID\"] tables, got "
                                 f"{', '.join(sorted(unknown)) or 'nothing'}")
    out: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    for table, spec_type, bucket in (("gpus", GPUSpec, out[0]), ("models", ArchitectureSpec, out[1])):
        for key, entry in raw.get(table, {}).items():
            try:
                bucket[key] = spec_type.model_validate(entry)
            except ValueError as err:
                first = str(err).splitlines()[1:3]
                raise DatasetImportError(f"{path}: [{table}.{key!r}] is invalid: {' '.join(first)}") from err
    return out


def _merged_catalog(base: Any, gpus: dict[str, Any], models: dict[str, Any]) -> Any:
    """The catalog plus new entries; each new GPU also answers to its lower-cased display name (NVML's name)."""
    from estimator.catalog.catalog import Catalog

    clash = [k for k in gpus if k in base.gpus] + [k for k in models if k in base.models]
    if clash:
        raise DatasetImportError(f"catalog entries already exist: {', '.join(clash)} (edit models/catalog instead)")
    aliases = {kind: dict(table) for kind, table in base.aliases.items()}
    for key, gpu in gpus.items():
        aliases.setdefault("gpu", {})[gpu.display_name.lower()] = key
    return Catalog(gpus={**base.gpus, **gpus}, models={**base.models, **models}, tasks=base.tasks, aliases=aliases,
                   ambiguous=base.ambiguous, taken=base.taken)


def _toml_table(table: str, key: str, entry: Any) -> str:
    lines = [f"\n[{table}.{json.dumps(key)}]"]
    for field_name, value in entry.model_dump().items():
        if value is not None:
            lines.append(f"{field_name} = {json.dumps(value)}")  # JSON scalars and string lists are valid TOML
    return "\n".join(lines) + "\n"


def add_catalog_entries(gpus: dict[str, Any], models: dict[str, Any], catalog_dir: Path) -> None:
    """Append new entries to ``gpus.toml`` / ``architectures.toml`` atomically, after checking the result loads."""
    import shutil
    import tempfile

    from estimator.catalog.catalog import _load_catalog_cached, load_catalog
    from estimator.safe_io import write_text_atomic

    texts = {}
    for file, table, entries in (("gpus.toml", "gpus", gpus), ("architectures.toml", "models", models)):
        if entries:
            texts[file] = (catalog_dir / file).read_text(encoding="utf-8") + "".join(
                _toml_table(table, k, v) for k, v in entries.items())
    with tempfile.TemporaryDirectory() as scratch:
        for name in ("gpus.toml", "architectures.toml", "tasks.toml", "aliases.toml"):
            shutil.copy(catalog_dir / name, Path(scratch) / name)
        for file, text in texts.items():
            (Path(scratch) / file).write_text(text, encoding="utf-8")
        load_catalog(Path(scratch))  # raises CatalogError before anything real is touched
    for file, text in texts.items():
        write_text_atomic(catalog_dir / file, text)
    _load_catalog_cached.cache_clear()


@dataclass
class ImportResult:
    """What an import did: the dataset file, records added, unstable and duplicate records left out."""

    path: Path
    written: int
    unstable_left_out: int
    already_present: int
    records_in_file: int
    catalog_entries_added: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _dataset_lock(dest: Path):
    """Serialise imports into one folder (read, check and write happen under one exclusive lock)."""
    import fcntl

    with open(dest / ".import.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _training_rows(records: list[RunRecord], source: Path, catalog: Any, new_keys: set[str]) -> list[dict]:
    """Each stable record as written to the dataset, after the rules ``load_runs()`` applies."""
    from estimator.learn.data import RunDataError, validate_local_record

    rows = []
    for n, record in enumerate(records, start=1):
        row = record.model_dump(mode="json")
        try:
            canonical = validate_local_record(row, source, line_number=n, catalog=catalog)
        except RunDataError as err:
            hint = ""
            if "unknown gpu" in str(err) or "unknown model" in str(err):
                hint = (" (a GPU or model outside the catalog: pass --catalog-entries FILE.toml with its "
                        "[gpus.\"KEY\"] / [models.\"ID\"] entry and sources)")
            raise DatasetImportError(f"{' '.join(str(err).split())}{hint}; nothing written") from err
        for name in ("gpu_model", "model_id"):
            if canonical[name] in new_keys:  # a new entry: store the key load_runs will resolve
                row[name] = canonical[name]
        rows.append(row)
    return rows


def import_run_dir(run_dir: str | Path, name: str, dest_dir: str | Path, *, replace: bool = False,
                   catalog_entries: str | Path | None = None, catalog_dir: str | Path | None = None) -> ImportResult:
    """Add the stable records of ``run_dir`` to ``dest_dir/<name>.jsonl``, atomically and without losing data.

    Records are validated as ``RunRecord``s and with the rules ``load_runs()`` applies (positive energy, power
    and throughput, energy identities, known GPU/model/task). An existing dataset is appended to, never shrunk;
    ``replace=True`` writes exactly this run's stable records instead. A record already imported (same spec hash,
    configuration and provenance) in another dataset file stops the import; one already in this file is skipped.
    The file is written beside and renamed over (a crash leaves the old or the new file).

    Args:
        catalog_entries: a TOML of new ``[gpus."KEY"]`` / ``[models."ID"]`` entries (with sources) for
            hardware or models outside the catalog; they are added to ``catalog_dir`` with the records.
        catalog_dir: the catalog folder to extend (default ``models/catalog``).

    Raises:
        DatasetImportError: bad name, no stable record, invalid or duplicate record; nothing is written.
    """
    from estimator.catalog.catalog import load_catalog
    from estimator.paths import catalog_dir as default_catalog_dir
    from estimator.safe_io import atomic_writer, check_input_file

    check_dataset_name(name)
    source = check_input_file(Path(run_dir) / RECORDS_FILE)
    records = read_records(source)
    stable = [r for r in records if r.is_stable]
    if not stable:
        why = records[0].unstable_reason if records else "the file is empty"
        raise DatasetImportError(f"{source}: no stable record to import ({len(records)} unstable; first: {why}); "
                                 f"nothing written")
    catalog_folder = Path(catalog_dir) if catalog_dir else default_catalog_dir()
    new_gpus, new_models = read_catalog_entries(catalog_entries) if catalog_entries else ({}, {})
    catalog = load_catalog(catalog_folder)
    if new_gpus or new_models:
        catalog = _merged_catalog(catalog, new_gpus, new_models)
    rows = _training_rows(stable, source, catalog, set(new_gpus) | set(new_models))
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{name}.jsonl"
    with _dataset_lock(dest):
        seen = existing_keys(dest)
        kept = [] if replace or not target.exists() else target.read_text(encoding="utf-8").splitlines()
        added, present, keys = [], 0, set()
        for row in rows:
            key = record_key(row)
            where = seen.get(key, "")
            if where and not where.startswith(f"{target.name}:"):
                batch = row.get("max_num_seqs", row.get("batch_size"))
                raise DatasetImportError(f"record {row['model_id']} batch {batch} (key {key}) is "
                                         f"already imported in {dest / where}; nothing written")
            if (where and not replace) or key in keys:
                present += 1
                continue
            keys.add(key)
            added.append(json.dumps(row, sort_keys=True))
        if added or replace:
            if new_gpus or new_models:
                add_catalog_entries(new_gpus, new_models, catalog_folder)
            with atomic_writer(target) as handle:
                for line in [*(line for line in kept if line.strip()), *added]:
                    handle.write(line + "\n")
        total = len([line for line in kept if line.strip()]) + len(added)
    return ImportResult(target, len(added), len(records) - len(stable), present, total,
                        sorted(new_gpus) + sorted(new_models) if added or replace else [])
