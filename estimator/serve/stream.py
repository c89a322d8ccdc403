"""``joules-estimate predict`` on files of any size: the CSV is read and predicted in chunks, each row checked on its
own, and the output written atomically.

- Memory stays bounded by the chunk size (default 25,000 rows), not the file size.
- Every cell of a numeric column goes through :mod:`estimator.validation` (finite, whole where it must be,
  inside the table's bounds); a bad cell, or a row with more fields than the header, makes that row's
  ``status``/``reason`` and the rest of the file is still predicted.
- Input cells are written back as the user wrote them, predictions with 6 significant digits; text cells a
  spreadsheet would run as formulas (``=``, ``+``, ``-``, ``@`` leading) are prefixed with ``'`` (OWASP CSV
  injection guidance).
- The output goes to a temporary file beside the target and is renamed over it at the end, so two runs with
  the same ``--output`` never interleave lines and a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.safe_io import FORMULA_PREFIXES, UnsafeFileError, atomic_writer, check_input_file, escape_formula
from estimator.validation import BOUNDS, InputError, check_number

REQUIRED_COLUMNS = ("model_id", "task", "gpu_model", "num_gpus")
DEFAULT_CHUNK_ROWS = 25_000
#: predictions are written with 6 significant digits (their p10-p90 intervals span tens of percent)
SIGNIFICANT_DIGITS = 6
#: first characters that make a spreadsheet run a cell as a formula (one character each)
_FORMULA_FIRST = frozenset(FORMULA_PREFIXES)
#: first line of data is line 2 (line 1 is the header)
FIRST_DATA_LINE = 2


@dataclass
class PredictSummary:
    """Rows read and predicted; the first errors as (line, reason)."""

    rows: int = 0
    predicted: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    error_count: int = 0


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-empty record; decode and syntax errors name the file and line."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, skipinitialspace=True, strict=True)
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise UnsafeFileError(f"{path}: not UTF-8 text (undecodable bytes near line {reader.line_num + 1})"
                                      f"; is it a binary file?") from None
            except csv.Error as exc:
                raise InputError(f"{path}: malformed CSV at line {reader.line_num}: {exc}") from None
            if fields and any(cell.strip() for cell in fields):
                yield reader.line_num, fields


def read_header(path: Path) -> list[str]:
    """The header row, checked: not empty, the required columns present, no duplicate names.

    Raises:
        InputError: naming the file and the problem.
    """
    check_input_file(path)
    first = next(_rows(path), None)
    if first is None:
        raise InputError(f"{path}: empty CSV (expected a header row with {', '.join(REQUIRED_COLUMNS)}, ...)")
    header = [cell.strip() for cell in first[1]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: missing required column(s) {', '.join(missing)} (have: {', '.join(header)})")
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise InputError(f"{path}: column(s) {', '.join(duplicated)} appear more than once in the header")
    return header


def unknown_columns(header: list[str]) -> list[tuple[str, str]]:
    """(column, ' (did you mean X?)' or '') for header columns that are not configuration inputs: they are passed
    through, but a misspelt knob would silently fall back to its default."""
    import difflib

    from estimator.schema import Configuration

    known = [*Configuration.model_fields, "engine"]
    out = []
    for column in header:
        if column not in known:
            close = difflib.get_close_matches(column, known, n=1, cutoff=0.75)
            out.append((column, f" (did you mean {close[0]}?)" if close else ""))
    return out


def _parse_chunk(header: list[str], records: list[tuple[int, list[str]]]
                 ) -> tuple[pd.DataFrame, dict[int, str], pd.DataFrame]:
    """Text cells -> a frame (numeric columns as floats, blanks NaN), {position: reason} for bad rows, and the
    cells as written (padded or cut to the header's width)."""
    width = len(header)
    errors: dict[int, str] = {}
    cells = []
    for position, (line, fields) in enumerate(records):
        if len(fields) > width and any(cell.strip() for cell in fields[width:]):
            errors[position] = f"line {line} has {len(fields)} fields but the header has {width}"
        cells.append((fields + [""] * width)[:width])
    text = pd.DataFrame(cells, columns=header, dtype=object)
    frame = text.apply(lambda column: column.str.strip())
    for column in header:
        blank = frame[column].eq("")
        frame.loc[blank, column] = np.nan
        bound = BOUNDS.get(column)
        if bound is None:
            continue
        numbers = pd.to_numeric(frame[column].str.replace("_", "", regex=False), errors="coerce")
        values = numbers.to_numpy(float)
        with np.errstate(invalid="ignore"):
            bad = ~blank.to_numpy() & ~(np.isfinite(values) & (values >= bound.minimum) & (values <= bound.maximum))
            if bound.integral:
                bad |= np.isfinite(values) & (values != np.floor(values))
        for position in np.flatnonzero(bad):
            try:
                check_number(column, text.iat[position, header.index(column)])
                reason = f"{column}={text.iat[position, header.index(column)]!r} is not a number"
            except InputError as exc:
                reason = str(exc)
            errors.setdefault(int(position), reason)
        frame[column] = numbers
    return frame, errors, text


def _modalities(path: Path, header: list[str], catalog) -> set[str]:
    """The task modalities present in the file (a cheap first pass), so every chunk writes the same columns."""
    index = header.index("task")
    seen: set[str] = set()
    modalities: set[str] = set()
    for _, fields in _rows(path):
        task = fields[index].strip() if index < len(fields) else ""
        if task in seen:
            continue
        seen.add(task)
        try:
            modalities.add(catalog.tasks[catalog.resolve("task", task)].modality)
        except Exception:  # noqa: BLE001 - an unknown task is that row's reason, later
            modalities.add("")
    return modalities


def output_groups(modalities: set[str]) -> list[tuple[str, str, str | None]]:
    """(prediction column, output name, only for this modality) for the families present."""
    from estimator.learn.prediction import DIFFUSION_OUTPUTS, LLM_OUTPUTS

    diffusion = {"text-to-image", "text-to-video"}
    llm = bool(modalities - diffusion) or not modalities
    groups: list[tuple[str, str, str | None]] = []
    if llm:
        groups += [(m, m, None) for m in LLM_OUTPUTS]
    if "text-to-image" in modalities:
        groups.append(("energy_per_item_joules", "energy_per_image_joules", "text-to-image"))
    if "text-to-video" in modalities:
        groups.append(("energy_per_item_joules", "energy_per_video_joules", "text-to-video"))
    if modalities & diffusion:
        groups += [(m, m, None) for m in DIFFUSION_OUTPUTS if m != "energy_per_item_joules" and m not in LLM_OUTPUTS]
        if not llm:
            groups.append(("avg_power_watts", "avg_power_watts", None))
    return groups


def physics_only_columns(groups) -> list[str]:
    """Physics-only outputs written for LLM rows (``learn/prediction.py`` PHYSICS_ONLY_OUTPUTS: a value, no
    interval, e.g. ``ttft_physics_ms``) when the file has LLM rows."""
    from estimator.learn.prediction import LLM_OUTPUTS, PHYSICS_ONLY_OUTPUTS

    return list(PHYSICS_ONLY_OUTPUTS) if any(source in LLM_OUTPUTS for source, _, _ in groups) else []


def significant(values: np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits (NaN and 0 unchanged), so they print short."""
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(values))))
        rounded = np.round(values * scale) / scale
    return np.where(np.isfinite(rounded), rounded, values)


def _escape_column(column: pd.Series) -> pd.Series:
    """Vectorised :func:`estimator.safe_io.escape_formula` for one text column."""
    text = column.fillna("").astype(str)
    risky = pd.Series([cell[:1] in _FORMULA_FIRST for cell in text.tolist()], index=text.index, dtype=bool)
    if risky.any():  # a signed number such as -1 or +2.5 is data, not a formula
        risky &= pd.to_numeric(text.where(risky), errors="coerce").isna()
    return text.where(~risky, "'" + text)


def _chunk_output(text: pd.DataFrame, predictions: pd.DataFrame | None, errors: dict[int, str], groups,
                  modality_of: Callable[[str], str], extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Output rows: input cells as written (escaped), metrics of the row's family, status, reason, warnings."""
    out = text.apply(_escape_column)
    rows = len(text)
    failed = np.zeros(rows, dtype=bool)
    failed[list(errors)] = True
    if predictions is None:
        predictions = pd.DataFrame(index=range(rows))
    modality = np.array([modality_of(str(t)) for t in predictions.get("task", pd.Series([""] * rows))],
                        dtype=object)
    for source, name, only in groups:
        for suffix in ("", "_p10", "_p90"):
            values = predictions.get(source + suffix, pd.Series(np.nan, index=range(rows))).to_numpy(float).copy()
            values[failed] = np.nan
            if only is not None:
                values[modality != only] = np.nan
            out[name + suffix] = significant(values)
    for name in physics_only_columns(groups):
        values = predictions.get(name, pd.Series(np.nan, index=range(rows))).to_numpy(float).copy()
        values[failed] = np.nan
        out[name] = significant(values)
    status = predictions.get("status", pd.Series("error", index=range(rows))).fillna("error").to_numpy(object)
    reason = predictions.get("reason", pd.Series("", index=range(rows))).fillna("").to_numpy(object)
    warnings = predictions.get("warnings", pd.Series("", index=range(rows))).fillna("").to_numpy(object)
    for position, why in errors.items():
        status[position], reason[position], warnings[position] = "error", why, ""
    out["status"] = status
    out["reason"] = _escape_column(pd.Series(reason))
    out["warnings"] = _escape_column(pd.Series(warnings))
    for column in extra:  # e.g. the calibration applied to each row
        out[column] = _escape_column(predictions.get(column, pd.Series("", index=range(rows))).reset_index(drop=True))
    return out


@dataclass
class ChunkResult:
    """One chunk's output rows as CSV text (no header) and what the summary needs."""

    text: str
    rows: int
    predicted: int
    errors: list[tuple[int, str]]


def _modality_lookup(catalog) -> Callable[[str], str]:
    cache: dict[str, str] = {}

    def modality_of(task: str) -> str:
        if task not in cache:
            try:
                cache[task] = catalog.tasks[catalog.resolve("task", task)].modality
            except Exception:  # noqa: BLE001 - unknown task: that row's reason says so
                cache[task] = ""
        return cache[task]

    return modality_of


def predict_chunk(header: list[str], chunk: list[tuple[int, list[str]]], groups, predict, modality_of,
                  extra: tuple[str, ...] = ()) -> ChunkResult:
    """Parse, check, predict and format one chunk of CSV records."""
    frame, errors, text = _parse_chunk(header, chunk)
    valid = [p for p in range(len(chunk)) if p not in errors]
    predictions = None
    if valid:
        predicted = predict(frame.iloc[valid].reset_index(drop=True))
        predictions = predicted.set_axis(valid).reindex(range(len(chunk)))
    out = _chunk_output(text, predictions, errors, groups, modality_of, extra)
    ok = out["status"].to_numpy(object) == "ok"
    first_errors = [(chunk[p][0], str(out["reason"].iat[p])) for p in np.flatnonzero(~ok)[:10]]
    return ChunkResult(csv_text(out), len(chunk), int(ok.sum()), first_errors)


def csv_text(out: pd.DataFrame) -> str:
    """``out.to_csv(header=False, index=False, lineterminator="\\n")``, the same text at about half the cost.

    pandas writes a float cell as numpy's float-to-text, which is Python's shortest round-trip ``repr`` (checked
    equal on 1.5 x 10^8 random doubles and the edge cases: +-0, +-inf, subnormals, 1e16), and NaN as ''; any
    other cell goes to the csv module as it is (missing as ''), as pandas passes it.
    """
    columns = []
    for name in out.columns:
        values = out[name].to_numpy()
        if values.dtype.kind == "f":
            columns.append(["" if value != value else repr(value) for value in values.tolist()])
        else:
            values = out[name].to_numpy(dtype=object)
            columns.append(np.where(pd.isna(values), "", values).tolist())
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(zip(*columns, strict=True))
    return buffer.getvalue()


_WORKER: dict = {}


def _init_worker(extra_models, threads: int) -> None:
    """A worker process loads the catalog and predictor once (spawned: nothing inherited).

    ``threads``: OpenMP threads for LightGBM in this worker (the cores shared out among the workers), set before
    LightGBM loads; more would compete with the other workers for the same cores (on 2 cores, default threads
    cost 2-6% more CPU time, measured with two concurrent 20,000-row runs). Per-row predictions do not depend on it.
    """
    os.environ["OMP_NUM_THREADS"] = str(threads)
    from estimator.catalog.catalog import load_catalog
    from estimator.serve.api import load_predictor, predict_frame

    catalog, bundle = load_catalog(), load_predictor()
    _WORKER.update(modality_of=_modality_lookup(catalog), predict=lambda frame: predict_frame(
        frame, predictor=bundle, catalog=catalog, extra_models=extra_models))


def _worker_chunk(header: list[str], chunk: list[tuple[int, list[str]]], groups) -> ChunkResult:
    return predict_chunk(header, chunk, groups, _WORKER["predict"], _WORKER["modality_of"])


def _chunks(input_path: Path, chunk_rows: int) -> Iterator[list[tuple[int, list[str]]]]:
    records = _rows(input_path)
    next(records)  # the header
    while chunk := [r for _, r in zip(range(chunk_rows), records, strict=False)]:
        yield chunk


def _results(input_path: Path, header, groups, chunk_rows: int, pool, predict, catalog,
             extra: tuple[str, ...] = (), in_flight: int = 4):
    """ChunkResults in file order: in this process (``pool`` None), or in the pool's worker processes (at most
    ``in_flight`` chunks at once, so memory stays bounded)."""
    if pool is None:
        modality_of = _modality_lookup(catalog)
        for chunk in _chunks(input_path, chunk_rows):
            yield predict_chunk(header, chunk, groups, predict, modality_of, extra)
        return
    import collections

    pending: collections.deque = collections.deque()
    for chunk in _chunks(input_path, chunk_rows):
        pending.append(pool.apply_async(_worker_chunk, (header, chunk, groups)))
        if len(pending) >= in_flight:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


@contextlib.contextmanager
def _worker_pool(workers: int, extra_models):
    """``workers`` spawned processes that load the catalog and predictor (None for ``workers`` <= 1)."""
    if workers <= 1:
        yield None
        return
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    with multiprocessing.get_context("spawn").Pool(workers, _init_worker, (extra_models, threads)) as pool:
        yield pool


def predict_csv(input_path: Path, output_path: Path | None, *, predict: Callable[[pd.DataFrame], pd.DataFrame],
                catalog, chunk_rows: int = DEFAULT_CHUNK_ROWS, workers: int = 1,
                extra_models: dict | None = None, extra_columns: tuple[str, ...] = ()) -> PredictSummary:
    """Predict every row of a configurations CSV, chunk by chunk, into ``output_path`` (stdout when None).

    Args:
        predict: configurations frame -> ``predict_frame`` output (same rows, same order); used in this process.
        chunk_rows: rows per chunk (memory is bounded by a few chunks, not the file).
        workers: processes predicting chunks in parallel (> 1: spawned workers load the default predictor and
            ``extra_models`` themselves, and ``predict`` is not used).

    Raises:
        InputError / UnsafeFileError: the file cannot be read as a configurations CSV (nothing is written).
    """
    header = read_header(input_path)
    summary = PredictSummary()
    with _worker_pool(workers, extra_models) as pool:  # workers load while this process reads the tasks
        groups = output_groups(_modalities(input_path, header, catalog))
        names = [escape_formula(n) for n in header] + [name + s for _, name, _ in groups
                                                       for s in ("", "_p10", "_p90")]
        names += physics_only_columns(groups)
        names += ["status", "reason", "warnings", *extra_columns]
        target = contextlib.nullcontext(sys.stdout) if output_path is None else atomic_writer(output_path)
        with target as handle:
            csv.writer(handle, lineterminator="\n").writerow(names)
            for result in _results(input_path, header, groups, chunk_rows, pool, predict, catalog, extra_columns,
                                   in_flight=2 * workers):  # two chunks per worker
                handle.write(result.text)
                summary.rows += result.rows
                summary.predicted += result.predicted
                summary.error_count += result.rows - result.predicted
                summary.errors += result.errors[: max(0, 10 - len(summary.errors))]
    return summary
