"""Calibration: a user's few measured runs shift the predictor's levels for their model, deployment, GPU and engine.

``calibrate(frame, predictor)`` predicts the runs with the uncalibrated predictor, takes the log residuals of
power, throughput and median ITL (LLM) or power and batch latency (diffusion), and fits the hierarchical
random-effects model of :mod:`estimator.learn.calibration_model` per quantity. ``apply_calibration`` adds each
configuration's posterior shift to the predictor's log prediction and narrows its interval; energy is then
derived from the calibrated power and throughput (or latency) with the predictor's own identities
(:func:`estimator.learn.predictor.derive_llm`), so calibrated energy, power and speed still agree exactly.

A :class:`Calibration` is pydantic and JSON-serialisable (CAL.json). It keeps the runs it was fitted on with their
uncalibrated predictions, the variance components, and the hash of the predictor card. Loaded against the same
predictor it is rebuilt from what it stored; against another one (a retrain) it re-predicts the stored runs and
re-fits, and says so in ``notes``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from estimator.catalog.catalog import ArchitectureSpec, Catalog, UnknownKeyError, load_catalog
from estimator.learn import calibration_runs as cr
from estimator.learn.calibration_model import CURVE, LEVELS, Components, Posterior, RowKeys, fit_posterior
from estimator.learn.prediction import ConfigurationError, predict_frame, resolve_row
from estimator.learn.predictor import PredictorBundle
from estimator.paths import project_root

FORMAT = "joules-estimate-calibration"
VERSION = 1
#: learned quantities per family (log-space effects); the energy entries only set the energy interval's width
QUANTITIES = {"llm": ("avg_power_watts", "output_throughput_tokens_per_sec", "median_itl_ms",
                      "energy_per_token_joules"),
              "diffusion": ("avg_power_watts", "batch_latency_s", "energy_per_item_joules")}
ENERGY = {"llm": "energy_per_token_joules", "diffusion": "energy_per_item_joules"}
FROZEN_COMPONENTS = Path("models") / "calibration" / "components.json"


class CalibrationError(ValueError):
    """No usable run, or a calibration file that cannot be read."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CalibrationRun(_Model):
    """One accepted run: where it came from, its configuration cells, its measurements, and the uncalibrated
    predictions of the same quantities at fitting time."""

    source: str
    family: Literal["llm", "diffusion"]
    configuration: dict[str, str | int | float]
    measured: dict[str, float]
    predicted: dict[str, float]
    model: str
    deployment: str
    gpu: str
    engine: str
    log_batch: float

    def keys(self) -> RowKeys:
        return RowKeys(self.model, self.deployment, self.gpu, self.engine, self.log_batch)


class RejectedRun(_Model):
    source: str
    reason: str


class LevelEffect(_Model):
    """What calibration learned for one level of one quantity (multiplier = exp(effect)); for the batch curve, the
    slope per doubling of the batch between the deployment's smallest and largest measured batch."""

    family: str
    quantity: str
    level: str
    key: str
    runs: int = Field(description="runs that inform this level")
    effect_log: float = Field(description="posterior mean, natural log of measured / predicted")
    posterior_sd_log: float
    prior_sd_log: float

    @property
    def multiplier(self) -> float:
        return math.exp(self.effect_log)


class Calibration(_Model):
    """A fitted calibration (CAL.json). Build with :func:`calibrate`; apply with :func:`apply_calibration`."""

    format: Literal["joules-estimate-calibration"] = FORMAT
    version: int = VERSION
    predictor_card_hash: str
    components_source: str
    components: dict[str, dict[str, Components]]
    runs: list[CalibrationRun]
    rejects: list[RejectedRun] = Field(default_factory=list)
    repeats: list[dict] = Field(default_factory=list, description="configurations measured more than once")
    levels: list[LevelEffect] = Field(default_factory=list)
    uncalibrated_error: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="per quantity: how far the uncalibrated predictor was from these runs")
    notes: list[str] = Field(default_factory=list)
    _posteriors: dict[tuple[str, str], Posterior] = PrivateAttr(default_factory=dict)

    def posterior(self, family: str, quantity: str) -> Posterior | None:
        if not self._posteriors:
            self._posteriors = _fit_posteriors(self.runs, self.components)
        return self._posteriors.get((family, quantity))

    def moved_levels(self, family: str) -> list[LevelEffect]:
        """Levels with evidence for a family (the energy-interval entries left out)."""
        return [lv for lv in self.levels if lv.family == family and lv.quantity != ENERGY[family]]

    def save(self, path: Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=1) + "\n")


def card_hash(bundle: PredictorBundle) -> str:
    """Content hash of a predictor card (identifies the predictor a calibration was fitted against)."""
    return hashlib.sha256(json.dumps(bundle.card.model_dump(), sort_keys=True).encode()).hexdigest()[:16]


def load_components(bundle: PredictorBundle) -> tuple[dict[str, dict[str, Components]], str]:
    """Variance components: the card's own (``calibration_components``, written by training) or the frozen file
    ``models/calibration/components.json`` (estimated by ``benchmarks/calibration_components.py``)."""
    stored = bundle.card.calibration_components
    source = "predictor card"
    if not stored:
        path = project_root() / FROZEN_COMPONENTS
        if not path.exists():
            raise CalibrationError(f"no variance components: the predictor card has none and {path} is missing")
        payload = json.loads(path.read_text())
        stored, source = payload["components"], f"{FROZEN_COMPONENTS} ({payload.get('source', '')})"
    return ({family: {q: Components(**c) for q, c in by_q.items()} for family, by_q in stored.items()}, source)


def row_keys(values: dict, arch: ArchitectureSpec) -> tuple[str, RowKeys]:
    """(family, level keys) of a resolved configuration (``prediction.resolve_row`` values)."""
    family = "diffusion" if arch.kind == "diffusion" else "llm"
    return family, family_row_keys(values, family)


def family_row_keys(values: dict, family: str) -> RowKeys:
    """Level keys of a resolved configuration of a known family ('llm' or 'diffusion')."""
    precision = str(values.get("weight_precision") or "bfloat16")
    deployment = "|".join([values["model_id"], values["task"], values["gpu_model"], str(int(values["num_gpus"])),
                           precision])
    engine = str(values.get("engine") or ("xdit" if family == "diffusion" else "vllm"))
    batch = float(values["batch_size"] if family == "diffusion" else values["max_num_seqs"])
    return RowKeys(values["model_id"], deployment, values["gpu_model"], engine, math.log(batch))


def _residual(run: CalibrationRun, quantity: str) -> float | None:
    """log(measured / predicted); an LLM run with energy but neither power nor throughput calibrates throughput
    through energy (power held at the predictor's value)."""
    if quantity in run.measured:
        return math.log(run.measured[quantity] / run.predicted[quantity])
    only_energy = ("energy_per_token_joules" in run.measured and "avg_power_watts" not in run.measured)
    if quantity == "output_throughput_tokens_per_sec" and only_energy:
        return -math.log(run.measured["energy_per_token_joules"] / run.predicted["energy_per_token_joules"])
    return None


def _fit_posteriors(runs: list[CalibrationRun], components: dict[str, dict[str, Components]]
                    ) -> dict[tuple[str, str], Posterior]:
    posteriors = {}
    for family, quantities in QUANTITIES.items():
        for quantity in quantities:
            pairs = [(r.keys(), _residual(r, quantity)) for r in runs if r.family == family]
            pairs = [(k, v) for k, v in pairs if v is not None]
            if pairs:
                posteriors[(family, quantity)] = fit_posterior(np.array([v for _, v in pairs]), [k for k, _ in pairs],
                                                               components[family][quantity])
    return posteriors


def _level_summaries(posteriors: dict[tuple[str, str], Posterior]) -> list[LevelEffect]:
    """Every level with runs, per quantity; the batch curve as its slope per doubling of the batch."""
    levels = []
    for (family, quantity), posterior in posteriors.items():
        for level in LEVELS:
            for key in dict.fromkeys(row.key(level) for row in posterior.rows):
                mean, sd = posterior.effect(level, key)
                levels.append(LevelEffect(family=family, quantity=quantity, level=level, key=key,
                                          runs=posterior.evidence(level, key), effect_log=mean, posterior_sd_log=sd,
                                          prior_sd_log=posterior.components.prior_sd(level)))
        for deployment in dict.fromkeys(row.deployment for row in posterior.rows):
            slope = posterior.curve_slope(deployment)
            if slope is not None:
                levels.append(LevelEffect(family=family, quantity=quantity, level=CURVE, key=deployment, runs=slope[2],
                                          effect_log=slope[0], posterior_sd_log=slope[1],
                                          prior_sd_log=posterior.components.curve))
    return levels


def _uncalibrated_error(runs: list[CalibrationRun]) -> dict[str, dict[str, float]]:
    out = {}
    for quantity in dict.fromkeys(q for qs in QUANTITIES.values() for q in qs):
        ratios = np.array([r.measured[quantity] / r.predicted[quantity] for r in runs if quantity in r.measured])
        if len(ratios):
            ape = np.abs(1 / ratios - 1) * 100
            out[quantity] = {"n": len(ratios), "median_ape_pct": float(np.median(ape)),
                             "max_ape_pct": float(np.max(ape)),
                             "median_measured_over_predicted": float(np.median(ratios))}
    return out


def _predict_runs(rows: cr.RunRows, bundle: PredictorBundle, catalog: Catalog, extra_models: dict
                  ) -> tuple[list[CalibrationRun], list[RejectedRun], list[tuple]]:
    runs, rejects, keys = [], [], []
    if not rows.configs:
        return runs, rejects, keys
    predicted = predict_frame(pd.DataFrame(rows.configs), bundle, catalog, extra_models)
    for position, out in enumerate(predicted.to_dict("records")):
        source = rows.sources[position]
        if out["status"] != "ok":
            rejects.append(RejectedRun(source=source, reason=f"configuration cannot be resolved: {out['reason']}"))
            continue
        try:
            resolved = resolve_row(rows.configs[position], catalog, extra_models, bundle)
        except (ConfigurationError, UnknownKeyError) as exc:  # predict_frame resolved it; kept for safety
            rejects.append(RejectedRun(source=source, reason=str(exc)))
            continue
        family, key = row_keys(resolved.values, resolved.arch)
        measured = {q: v for q, v in rows.measured[position].items() if q in QUANTITIES[family]}
        if not measured:
            rejects.append(RejectedRun(source=source, reason=f"no {family} measurement among "
                                                             f"{', '.join(rows.measured[position])}"))
            continue
        runs.append(CalibrationRun(
            source=source, family=family, configuration=_plain(rows.configs[position]), measured=measured,
            predicted={q: float(out[q]) for q in QUANTITIES[family]}, model=key.model, deployment=key.deployment,
            gpu=key.gpu, engine=key.engine, log_batch=key.log_batch))
        keys.append(cr.configuration_key(resolved.values))
    return runs, rejects, keys


def _plain(config: dict) -> dict[str, str | int | float]:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in config.items()}


def calibrate(frame: pd.DataFrame, predictor: PredictorBundle, *, catalog: Catalog | None = None,
              extra_models: dict[str, ArchitectureSpec] | None = None, sources: list[str] | None = None,
              rejects: list[tuple[str, str]] | None = None) -> Calibration:
    """Fit a calibration on measured runs.

    Args:
        frame: one row per run, ML.ENERGY column names: configuration (``model_id, task, gpu_model, num_gpus``,
            optional ``weight_precision, max_num_seqs, tensor_parallel, expert_parallel, data_parallel,
            avg_input_len, avg_output_len, engine`` or the diffusion inputs) and measured columns
            (``energy_per_token_joules, energy_per_request_joules, avg_power_watts,
            output_throughput_tokens_per_sec, median_itl_ms``; diffusion ``batch_latency_s, avg_power_watts,
            energy_per_image_joules, energy_per_video_joules``). Power summed over the run's GPUs, in watts.
        predictor: the bundle to calibrate.
        catalog, extra_models: as for ``predict_frame`` (models outside the catalog come in ``extra_models``).
        sources: a label per row for the reject report (default ``row N``).
        rejects: rows already left out upstream (e.g. unreadable), reported with the others.

    Raises:
        CalibrationError: no usable run (every row's reason is in the message).
    """
    bundle = predictor.uncalibrated()
    catalog = catalog or load_catalog()
    extra_models = extra_models or {}
    sources = sources or [f"row {i + 1}" for i in range(len(frame))]
    rows = cr.rows_from_records(frame.to_dict("records"), sources)
    runs, predict_rejects, keys = _predict_runs(rows, bundle, catalog, extra_models)
    all_rejects = [RejectedRun(source=s, reason=r) for s, r in [*(rejects or []), *rows.rejects]] + predict_rejects
    contradicting = cr.contradictions(keys, [r.measured for r in runs])
    all_rejects += [RejectedRun(source=runs[p].source, reason=why) for p, why in sorted(contradicting.items())]
    kept = [p for p in range(len(runs)) if p not in contradicting]
    runs, keys = [runs[p] for p in kept], [keys[p] for p in kept]
    if not runs:
        detail = "; ".join(f"{r.source}: {r.reason}" for r in all_rejects) or "no rows"
        raise CalibrationError(f"no usable run to calibrate on ({detail})")
    components, source = load_components(bundle)
    repeats = [{"sources": [runs[p].source for p in group["positions"]], "runs": group["runs"],
                "spread_pct": group["spread_pct"]} for group in cr.repeat_spreads(keys, [r.measured for r in runs])]
    calibration = Calibration(predictor_card_hash=card_hash(bundle), components_source=source, components=components,
                              runs=runs, rejects=all_rejects, repeats=repeats,
                              uncalibrated_error=_uncalibrated_error(runs))
    calibration._posteriors = _fit_posteriors(runs, components)
    calibration.levels = _level_summaries(calibration._posteriors)
    return calibration


def load_calibration(path: Path, predictor: PredictorBundle, *, catalog: Catalog | None = None,
                     extra_models: dict[str, ArchitectureSpec] | None = None) -> Calibration:
    """Read CAL.json; when it was fitted against another predictor than ``predictor``, re-fit it from its stored
    runs (the note says so)."""
    path = Path(path)
    try:
        stored = Calibration.model_validate_json(path.read_text())
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"cannot read calibration {path}: {exc}") from exc
    bundle = predictor.uncalibrated()
    if stored.predictor_card_hash == card_hash(bundle):
        return stored
    frame = pd.DataFrame([{**run.configuration, **_measured_columns(run)} for run in stored.runs])
    refit = calibrate(frame, bundle, catalog=catalog, extra_models=extra_models,
                      sources=[run.source for run in stored.runs])
    refit.notes = [*stored.notes, f"re-fitted from the {len(stored.runs)} stored runs against predictor "
                                  f"{refit.predictor_card_hash} (it was fitted against {stored.predictor_card_hash})"]
    return refit


def _measured_columns(run: CalibrationRun) -> dict[str, float]:
    measured = dict(run.measured)
    if "energy_per_item_joules" in measured:
        item = measured.pop("energy_per_item_joules")
        video = run.deployment.split("|")[1] == "text-to-video"
        measured["energy_per_video_joules" if video else "energy_per_image_joules"] = item
    return measured


def as_calibration(calibration: Calibration | str | Path | None, bundle: PredictorBundle, *,
                   catalog: Catalog | None = None,
                   extra_models: dict[str, ArchitectureSpec] | None = None) -> Calibration | None:
    """A Calibration, a CAL.json path (loaded, re-fitted when the predictor differs), or None."""
    if calibration is None or isinstance(calibration, Calibration):
        return calibration
    return load_calibration(Path(calibration), bundle, catalog=catalog, extra_models=extra_models)


def describe(calibration: Calibration) -> str:
    """One line for assumptions: how many runs, which levels moved."""
    moved: dict[str, list[str]] = {}
    for effect in calibration.levels:
        if effect.quantity == ENERGY[effect.family] or effect.level == CURVE:
            continue
        moved.setdefault(effect.level, [])
        if effect.key not in moved[effect.level]:
            moved[effect.level].append(effect.key)
    levels = "; ".join(f"{level} {', '.join(keys)}" for level, keys in moved.items())
    notes = f" ({'; '.join(calibration.notes)})" if calibration.notes else ""
    return (f"calibration applied: {len(calibration.runs)} measured runs moved the predictor's levels for "
            f"{levels}; levels without runs stay at the predictor{notes}")
