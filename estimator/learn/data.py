"""Every run source under ``datasets/`` -> one canonical run frame (one row per measured configuration).

Sources:
- ``datasets/mlenergy-v3/tasks/*.json``: the published ML.ENERGY v3 results (vLLM 0.11.1 / xDiT 0.4.5).
- ``datasets/local/*.jsonl``: runs measured by ``measure/`` and imported after review.

Columns keep ML.ENERGY's spelling and units; added are ``source``, ``task``, ``task_family`` (llm / mllm /
diffusion), ``engine``, ``engine_version``, ``gpu_model`` (normalised to the GPU catalog key), ``is_stable``.
Malformed input fails with :class:`RunDataError` naming the file and the configuration.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from estimator.catalog.catalog import Catalog, UnknownKeyError, load_catalog
from estimator.learn.family import FAMILIES, family_column
from estimator.paths import datasets_dir

#: engine recorded by the published data, per task family (ML.ENERGY v3 setup, SOURCE.txt)
PUBLISHED_ENGINES = {"llm": ("vllm", "0.11.1"), "mllm": ("vllm", "0.11.1"), "diffusion": ("xdit", "0.4.5")}

LLM_REQUIRED = {
    "model_id": str, "gpu_model": str, "num_gpus": int, "max_num_seqs": int, "weight_precision": str,
    "avg_batch_size": float, "avg_output_len": float, "avg_power_watts": float,
    "energy_per_token_joules": float, "energy_per_request_joules": float,
    "output_throughput_tokens_per_sec": float, "median_itl_ms": float,
    "tensor_parallel": int, "expert_parallel": int, "data_parallel": int,
}
LLM_OPTIONAL = {"p90_itl_ms": float, "p95_itl_ms": float, "p99_itl_ms": float, "nickname": str,
                "architecture": str, "total_params_billions": float, "activated_params_billions": float}
DIFFUSION_REQUIRED = {
    "model_id": str, "gpu_model": str, "num_gpus": int, "batch_size": int, "batch_latency_s": float,
    "avg_power_watts": float, "inference_steps": int, "ulysses_degree": int, "ring_degree": int,
    "weight_precision": str,
}
DIFFUSION_OPTIONAL = {"image_height": int, "image_width": int, "video_height": int, "video_width": int,
                      "num_frames": int, "fps": int, "nickname": str, "total_params_billions": float,
                      "activated_params_billions": float, "throughput_images_per_sec": float,
                      "throughput_videos_per_sec": float, "energy_per_image_joules": float,
                      "energy_per_video_joules": float}
LOCAL_EXTRA = {"task": str, "engine": str, "engine_version": str, "is_stable": bool, "avg_input_len": float,
               "batching": str, "weights": str, "unstable_reason": str, "gpu_utilization_pct": float,
               "steady_state_duration_s": float, "idle_power_watts": float, "sm_clock_mhz": float}
POSITIVE = ("avg_power_watts", "energy_per_token_joules", "energy_per_request_joules",
            "output_throughput_tokens_per_sec", "batch_latency_s", "num_gpus", "avg_output_len")

#: the target columns each family must have, never NaN (measured metrics that are not optional fields, so a record
#: without p90 ITL still loads; that target is fitted on the rows that have it)
TARGETS = {family.name: tuple(m for m in family.measured if m not in LLM_OPTIONAL) for family in FAMILIES}
IDENTITY_RTOL = 1e-6


class RunDataError(ValueError):
    """A run file is malformed; the message names the file and the configuration."""


def _describe(row: dict) -> str:
    keys = ("model_id", "task", "gpu_model", "num_gpus", "max_num_seqs", "batch_size")
    return ", ".join(f"{k}={row[k]}" for k in keys if k in row)


def _check_fields(path: Path, row: dict, required: dict, optional: dict) -> None:
    missing = [name for name in required if name not in row]
    if missing:
        raise RunDataError(f"{path}: configuration ({_describe(row)}) lacks field(s) {', '.join(missing)}")
    for name, kind in {**required, **optional}.items():
        if name not in row or row[name] is None:
            continue
        value = row[name]
        ok = (isinstance(value, bool) if kind is bool else
              isinstance(value, (int, float)) and not isinstance(value, bool) if kind in (int, float) else
              isinstance(value, kind))
        if kind is int and ok and float(value) != int(value):
            ok = False
        if not ok:
            raise RunDataError(f"{path}: configuration ({_describe(row)}) field {name}={value!r} "
                               f"should be {kind.__name__}")
        if kind in (int, float) and not math.isfinite(value):
            raise RunDataError(f"{path}: configuration ({_describe(row)}) field {name} is not finite")
    for name in POSITIVE:
        if name in row and row[name] is not None and row[name] <= 0:
            raise RunDataError(f"{path}: configuration ({_describe(row)}) has non-positive {name}={row[name]}")


def _family_of_task(index: dict) -> dict[str, str]:
    return {task: family for family, tasks in index["architectures"].items() for task in tasks}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunDataError(f"{path}: not valid JSON ({exc})") from exc


def _published_rows(directory: Path) -> Iterable[tuple[Path, dict]]:
    index = _read_json(directory / "index.json")
    family_of = _family_of_task(index)
    for path in sorted((directory / "tasks").glob("*.json")):
        payload = _read_json(path)
        task = payload.get("task")
        if task not in family_of:
            raise RunDataError(f"{path}: task {task!r} is not listed in {directory / 'index.json'}")
        family = family_of[task]
        engine, version = PUBLISHED_ENGINES[family]
        for row in payload.get("configurations", []):
            yield path, {**row, "task": task, "task_family": family, "engine": engine,
                         "engine_version": version, "source": "mlenergy-v3", "is_stable": True}


def local_row(path: Path, line_number: int, row: dict, family_of: dict[str, str], prefix: str = "local") -> dict:
    """One ``datasets/local`` (or ``datasets/validation``) JSONL object -> a canonical row (the checks applied before
    :func:`_validate_row`); ``source`` is ``<prefix>:<file name>``.

    Raises:
        RunDataError: the record lacks task/engine/engine_version or names a task the data index does not list.
    """
    for name in ("task", "engine", "engine_version"):
        if name not in row:
            raise RunDataError(f"{path}:{line_number}: configuration ({_describe(row)}) lacks {name}")
    if row["task"] not in family_of:
        raise RunDataError(f"{path}:{line_number}: unknown task {row['task']!r}")
    row = dict(row)
    provenance = row.pop("provenance", None)
    return {**row, "task_family": family_of[row["task"]], "source": f"{prefix}:{path.name}",
            "is_stable": bool(row.get("is_stable", True)),
            "provenance_json": json.dumps(provenance, sort_keys=True) if provenance else ""}


def iter_jsonl(path: Path, error: type[Exception] = ValueError) -> Iterator[tuple[int, dict]]:
    """(1-based line number, record) for each non-blank line of a JSON-lines file.

    Raises:
        error: a line is not valid JSON (the message names ``path:line``).
    """
    for line_number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield line_number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}:{line_number}: not valid JSON ({exc})") from exc


def _local_rows(directory: Path, family_of: dict[str, str], prefix: str = "local") -> Iterable[tuple[Path, dict]]:
    for path in sorted(directory.glob("*.jsonl")):
        for line_number, row in iter_jsonl(path, RunDataError):
            yield path, local_row(path, line_number, row, family_of, prefix)


def validate_local_record(row: dict, path: Path, *, line_number: int = 0, catalog: Catalog | None = None,
                          root: Path | None = None) -> dict:
    """Apply to one record the rules :func:`load_runs` applies to ``datasets/local`` (``measure import`` uses it).

    Raises:
        RunDataError: the record would make :func:`load_runs` fail; the message names it and the rule.
    """
    index = _read_json((Path(root) if root else datasets_dir()) / "mlenergy-v3" / "index.json")
    canonical = local_row(Path(path), line_number, row, _family_of_task(index))
    return _validate_row(Path(path), canonical, catalog or load_catalog())


def _validate_row(path: Path, row: dict, catalog: Catalog) -> dict:
    family = row["task_family"]
    if family == "diffusion":
        _check_fields(path, row, DIFFUSION_REQUIRED, DIFFUSION_OPTIONAL)
        item = "energy_per_video_joules" if row["task"] == "text-to-video" else "energy_per_image_joules"
        derived = row["avg_power_watts"] * row["batch_latency_s"] / row["batch_size"]
        stated = row.get(item, derived)
        if not math.isclose(stated, derived, rel_tol=IDENTITY_RTOL):
            raise RunDataError(f"{path}: configuration ({_describe(row)}): {item}={stated} but power x latency / "
                               f"batch = {derived}")
        row["energy_per_item_joules"] = derived
    else:
        _check_fields(path, row, LLM_REQUIRED, LLM_OPTIONAL)
        _check_fields(path, row, {}, LOCAL_EXTRA)
        power = row["energy_per_token_joules"] * row["output_throughput_tokens_per_sec"]
        if not math.isclose(power, row["avg_power_watts"], rel_tol=IDENTITY_RTOL):
            raise RunDataError(f"{path}: configuration ({_describe(row)}): energy/token x throughput = {power} W "
                               f"but avg_power_watts = {row['avg_power_watts']}")
        per_request = row["energy_per_token_joules"] * row["avg_output_len"]
        if not math.isclose(per_request, row["energy_per_request_joules"], rel_tol=IDENTITY_RTOL):
            raise RunDataError(f"{path}: configuration ({_describe(row)}): energy/token x output length = "
                               f"{per_request} J but energy_per_request_joules = {row['energy_per_request_joules']}")
    try:
        row["gpu_model"] = catalog.resolve("gpu", row["gpu_model"])
        row["model_id"] = catalog.resolve("model", row["model_id"])
        catalog.resolve("task", row["task"])
    except UnknownKeyError as exc:
        raise RunDataError(f"{path}: configuration ({_describe(row)}): {exc}") from exc
    return row


def load_runs(root: Path | None = None, *, catalog: Catalog | None = None,
              include_unstable: bool = False) -> pd.DataFrame:
    """Load every run under ``datasets/`` into one canonical frame.

    Args:
        root: the ``datasets`` folder; defaults to the project's.
        catalog: catalogs used to resolve GPU/model/task names; defaults to the project's.
        include_unstable: keep local runs whose stability verdict failed (never used for training).

    Returns:
        One row per configuration. Power is summed over the configuration's GPUs (ML.ENERGY convention).

    Raises:
        RunDataError: a file is malformed (missing field, wrong type, non-positive value, broken identity,
            unknown GPU/model/task); the message names the file and the configuration.
    """
    root = Path(root) if root else datasets_dir()
    catalog = catalog or load_catalog()
    published = root / "mlenergy-v3"
    index = _read_json(published / "index.json")
    family_of = _family_of_task(index)
    rows = [_validate_row(path, row, catalog) for path, row in _published_rows(published)]
    rows += [_validate_row(path, row, catalog) for path, row in _local_rows(root / "local", family_of)]
    return _run_frame(rows, include_unstable)


def _run_frame(rows: list[dict], include_unstable: bool) -> pd.DataFrame:
    """Validated rows -> the canonical frame: published-only nested columns dropped, unstable runs left out unless
    asked for, and every kept row's targets present.

    Raises:
        RunDataError: a kept row has a NaN target.
    """
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.drop(columns=["output_length_distribution", "parallelization"], errors="ignore")
    if not include_unstable:
        frame = frame[frame["is_stable"].astype(bool)].reset_index(drop=True)
    for family, targets in TARGETS.items():
        mask = family_column(frame["task_family"]).eq(family)
        if not mask.any():
            continue
        bad = frame.loc[mask, list(targets)].isna().any(axis=1)
        if bad.any():
            raise RunDataError(f"{int(bad.sum())} {family} rows have NaN targets, e.g. "
                               f"{_describe(frame.loc[mask][bad].iloc[0].to_dict())}")
    return frame


def load_validation_runs(root: Path | None = None, *, catalog: Catalog | None = None) -> pd.DataFrame:
    """The project's own runs kept out of training: every stable record of ``datasets/validation/*.jsonl``, checked
    as :func:`load_runs` checks ``datasets/local`` (``source`` ``validation:<file name>``). Empty when there are none.

    They are prospective checks (measured after the committed predictor was trained) and calibration
    demonstrations (``benchmarks/calibration_demo.py``); ``datasets/README.md`` says why each file is there.
    """
    root = Path(root) if root else datasets_dir()
    catalog = catalog or load_catalog()
    family_of = _family_of_task(_read_json(root / "mlenergy-v3" / "index.json"))
    return _run_frame([_validate_row(path, row, catalog)
                       for path, row in _local_rows(root / "validation", family_of, "validation")], False)
