"""A user's measured runs -> the clean rows calibration fits on, with a reason for every row it leaves out.

Accepted inputs: a CSV with ML.ENERGY column names, or a ``records.jsonl`` written by ``joules-estimate measure run``
(``measure/schema.py`` RunRecord; its provenance is not needed here). Measured columns are completed with the
exact identities the published data obeys (``estimator/data.py``): energy per token x throughput = power,
energy per token x output length = energy per request, energy per image or video = power x batch latency / batch.

Row checks done here (the configuration itself is checked when the rows are predicted, see
:mod:`estimator.learn.calibration`): a measured cell that is not a positive finite number; measured columns that
contradict each other (identities off by more than :data:`IDENTITY_TOLERANCE`); no usable measurement; an unstable
measure record; the same record twice (counted once); and repeated runs of one configuration more than
:data:`CONTRADICTION_RATIO` apart (physics does not move a fixed configuration 2x; all of them are left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from estimator.learn.data import iter_jsonl
from estimator.learn.features import is_blank

#: configuration inputs (ML.ENERGY spelling) a run may carry; everything else in a row is a measurement or ignored
CONFIG_COLUMNS = ("model_id", "task", "gpu_model", "num_gpus", "weight_precision", "max_num_seqs", "tensor_parallel",
                  "expert_parallel", "data_parallel", "avg_input_len", "avg_output_len", "engine", "batch_size",
                  "inference_steps", "image_height", "image_width", "video_height", "video_width", "num_frames",
                  "ulysses_degree", "ring_degree")
LLM_MEASURED = ("energy_per_token_joules", "energy_per_request_joules", "avg_power_watts",
                "output_throughput_tokens_per_sec", "median_itl_ms", "p90_itl_ms")
DIFFUSION_MEASURED = ("batch_latency_s", "avg_power_watts", "energy_per_image_joules", "energy_per_video_joules")
MEASURED_COLUMNS = tuple(dict.fromkeys(LLM_MEASURED + DIFFUSION_MEASURED))
#: relative tolerance on the identities between measured columns (rounding in a hand-written CSV)
IDENTITY_TOLERANCE = 0.02
#: repeated runs of one configuration further apart than this (max / min of any quantity) contradict each other
CONTRADICTION_RATIO = 2.0


@dataclass
class RunRows:
    """Rows ready for calibration: their configuration cells, completed measurements, and where each came from."""

    configs: list[dict] = field(default_factory=list)
    measured: list[dict[str, float]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    rejects: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)

    def add(self, config: dict, measured: dict[str, float], source: str) -> None:
        self.configs.append(config)
        self.measured.append(measured)
        self.sources.append(source)


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def complete_measurements(raw: dict) -> tuple[dict[str, float], str]:
    """Measured cells of one row -> (the quantities calibration uses, reason the row is unusable or '').

    LLM quantities: ``avg_power_watts``, ``output_throughput_tokens_per_sec``, ``energy_per_token_joules``,
    ``median_itl_ms``, ``p90_itl_ms``; diffusion: ``avg_power_watts``, ``batch_latency_s``, ``energy_per_item_joules``.
    """
    given: dict[str, float] = {}
    for name in MEASURED_COLUMNS:
        value = raw.get(name)
        if is_blank(value):
            continue
        number = _number(value)
        if number is None or not math.isfinite(number) or number <= 0:
            return {}, f"{name}={value!r} is not a positive finite number"
        given[name] = number
    if not given:
        return {}, f"no measured column (expected some of {', '.join(MEASURED_COLUMNS)})"
    diffusion = not is_blank(raw.get("batch_size")) or any(
        name in given for name in ("batch_latency_s", "energy_per_image_joules", "energy_per_video_joules"))
    return (_complete_diffusion(raw, given) if diffusion else _complete_llm(raw, given))


def _mismatch(a: float, b: float) -> bool:
    return abs(a / b - 1.0) > IDENTITY_TOLERANCE


def _complete_llm(raw: dict, given: dict[str, float]) -> tuple[dict[str, float], str]:
    power, throughput = given.get("avg_power_watts"), given.get("output_throughput_tokens_per_sec")
    energy, per_request = given.get("energy_per_token_joules"), given.get("energy_per_request_joules")
    output_len = _number(raw.get("avg_output_len"))
    if per_request is not None and output_len and output_len > 0:
        from_request = per_request / output_len
        if energy is not None and _mismatch(energy, from_request):
            return {}, (f"energy_per_token_joules={energy:g} but energy_per_request_joules / avg_output_len = "
                        f"{from_request:g}")
        energy = energy or from_request
    if energy is not None and power is not None and throughput is not None and _mismatch(energy * throughput, power):
        return {}, (f"energy_per_token_joules x output_throughput_tokens_per_sec = {energy * throughput:g} W but "
                    f"avg_power_watts = {power:g}")
    if power is None and energy is not None and throughput is not None:
        power = energy * throughput
    if throughput is None and energy is not None and power is not None:
        throughput = power / energy
    if energy is None and power is not None and throughput is not None:
        energy = power / throughput
    out = {"avg_power_watts": power, "output_throughput_tokens_per_sec": throughput,
           "energy_per_token_joules": energy, "median_itl_ms": given.get("median_itl_ms"),
           "p90_itl_ms": given.get("p90_itl_ms")}
    out = {k: v for k, v in out.items() if v is not None}
    if not out:
        return {}, "energy_per_request_joules without avg_output_len cannot be used"
    return out, ""


def _complete_diffusion(raw: dict, given: dict[str, float]) -> tuple[dict[str, float], str]:
    batch = _number(raw.get("batch_size")) or 1.0
    power, latency = given.get("avg_power_watts"), given.get("batch_latency_s")
    item = given.get("energy_per_image_joules") or given.get("energy_per_video_joules")
    if item is not None and power is not None and latency is not None and _mismatch(item, power * latency / batch):
        return {}, (f"energy per item {item:g} J but avg_power_watts x batch_latency_s / batch_size = "
                    f"{power * latency / batch:g} J")
    if latency is None and item is not None and power is not None:
        latency = item * batch / power
    if power is None and item is not None and latency is not None:
        power = item * batch / latency
    if item is None and power is not None and latency is not None:
        item = power * latency / batch
    out = {"avg_power_watts": power, "batch_latency_s": latency, "energy_per_item_joules": item}
    return {k: v for k, v in out.items() if v is not None}, ""


def _record_key(config: dict, measured: dict[str, float]) -> tuple:
    return (tuple(sorted((k, str(v)) for k, v in config.items())),
            tuple(sorted((k, round(v, 9)) for k, v in measured.items())))


def rows_from_records(records: list[dict], sources: list[str]) -> RunRows:
    """Raw rows (CSV rows or JSONL records) -> :class:`RunRows`, leaving out bad and duplicate rows with reasons."""
    rows = RunRows()
    seen: dict[tuple, str] = {}
    for raw, source in zip(records, sources, strict=True):
        if raw.get("is_stable") is False or str(raw.get("is_stable")).lower() == "false":
            rows.rejects.append((source, f"unstable run ({raw.get('unstable_reason') or 'measure verdict'})"))
            continue
        measured, reason = complete_measurements(raw)
        if reason:
            rows.rejects.append((source, reason))
            continue
        config = {k: raw[k] for k in CONFIG_COLUMNS if k in raw and not is_blank(raw[k])}
        key = _record_key(config, measured)
        if key in seen:
            rows.rejects.append((source, f"duplicate of {seen[key]} (counted once)"))
            continue
        seen[key] = source
        rows.add(config, measured, source)
    return rows


def read_run_file(path: Path) -> tuple[list[dict], list[str]]:
    """Records and their source labels (``file:line``) from a CSV or a measure ``records.jsonl``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no runs file at {path}")
    if path.suffix in (".jsonl", ".json"):
        records, sources = [], []
        for number, record in iter_jsonl(path):
            record.pop("provenance", None)
            records.append(record)
            sources.append(f"{path.name}:{number}")
        return records, sources
    frame = pd.read_csv(path)
    missing = [c for c in ("model_id", "task", "gpu_model", "num_gpus") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (ML.ENERGY names expected)")
    records = frame.to_dict("records")
    return records, [f"{path.name}:{number + 2}" for number in range(len(records))]  # +2: header, 1-based


def configuration_key(values: dict) -> tuple:
    """Identity of a resolved configuration (every input that changes what runs), for repeated-run grouping."""
    return tuple(sorted((k, str(v)) for k, v in values.items() if k in CONFIG_COLUMNS))


def contradictions(keys: list[tuple], measured: list[dict[str, float]]) -> dict[int, str]:
    """Positions of runs whose configuration was measured elsewhere more than 2x apart, with the reason."""
    groups: dict[tuple, list[int]] = {}
    for position, key in enumerate(keys):
        groups.setdefault(key, []).append(position)
    out: dict[int, str] = {}
    for positions in groups.values():
        if len(positions) < 2:
            continue
        for quantity in measured[positions[0]]:
            values = [measured[p][quantity] for p in positions if quantity in measured[p]]
            if len(values) >= 2 and max(values) / min(values) > CONTRADICTION_RATIO:
                for p in positions:
                    ratio = max(values) / min(values)
                    out.setdefault(p, f"{len(positions)} runs of this configuration are {ratio:.1f}x apart in "
                                      f"{quantity} (more than physics allows; none used)")
    return out


def repeat_spreads(keys: list[tuple], measured: list[dict[str, float]]) -> list[dict]:
    """For configurations measured more than once: how many runs and the spread (max/min - 1, %) per quantity."""
    groups: dict[tuple, list[int]] = {}
    for position, key in enumerate(keys):
        groups.setdefault(key, []).append(position)
    out = []
    for positions in groups.values():
        if len(positions) < 2:
            continue
        spread = {}
        for quantity in measured[positions[0]]:
            values = [measured[p][quantity] for p in positions if quantity in measured[p]]
            if len(values) >= 2:
                spread[quantity] = round((max(values) / min(values) - 1) * 100, 2)
        out.append({"positions": positions, "runs": len(positions), "spread_pct": spread})
    return out
