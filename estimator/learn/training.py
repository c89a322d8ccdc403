"""Train the predictors on everything in ``datasets/``, evaluate them under every split, write the artifact.

``train()`` is what ``joules-estimate train`` runs: load runs -> features -> fit on all rows -> out-of-fold
evaluation under the named splits (random, leave-one-model-out, leave-family-out, leave-GPU-out,
leave-task-out) plus baselines -> interval calibration from leave-one-model-out residuals -> card.json.
Deterministic: the same data, catalog and library versions give the same boosters.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.catalog.catalog import Catalog, load_catalog
from estimator.learn import evaluate as ev
from estimator.learn.card import Card, Domain, FeatureCard
from estimator.learn.data import load_runs
from estimator.learn.family import FAMILIES, family_column, family_of
from estimator.learn.features import featurize
from estimator.learn.predictor import LGB_PARAMS, NUM_ROUNDS, TARGETS, PredictorBundle, fit_regressors, target_card
from estimator.learn.reference import reference_from_frames
from estimator.paths import predictors_dir
from estimator.validation import trained_input_ranges

DEFAULT_PREDICTOR = "default"


def data_hash(runs: pd.DataFrame) -> str:
    """Stable hash of the training rows (sorted canonical CSV)."""
    ordered = runs.reindex(sorted(runs.columns), axis=1)
    ordered = ordered.sort_values(list(ordered.columns[:8]), kind="stable")
    return hashlib.sha256(ordered.to_csv(index=False).encode()).hexdigest()[:16]


def _versions() -> dict[str, str]:
    names = ("lightgbm", "numpy", "pandas", "scikit-learn", "pydantic")
    versions = {}
    for name in names:  # scikit-learn is optional (lightgbm's wrappers only): recorded when installed
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions["python"] = platform.python_version()
    return versions


def _domain(frame: pd.DataFrame, family: str) -> Domain:
    batch = family_of(family).batch_column
    return Domain(models=sorted(frame["model_id"].unique()), gpus=sorted(frame["gpu_model"].unique()),
                  engines=sorted(frame["engine"].unique()),
                  gpu_engines=sorted(set(frame["gpu_model"] + "|" + frame["engine"])),
                  tasks=sorted(frame["task"].unique()), precisions=sorted(frame["weight_precision"].unique()),
                  num_gpus=sorted(int(v) for v in frame["num_gpus"].unique()),
                  batch_min=int(frame[batch].min()), batch_max=int(frame[batch].max()), rows=len(frame),
                  ranges=trained_input_ranges(frame))


def split_by_family(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The run frame split into the predictor families' rows ('mllm' rows go with 'llm')."""
    key = family_column(runs["task_family"])
    return {family.name: runs[key.eq(family.name)].reset_index(drop=True) for family in FAMILIES}


def evaluate_all(frames: dict[str, pd.DataFrame], features: dict[str, pd.DataFrame], catalog: Catalog,
                 splits: tuple[str, ...] = ev.SPLITS, progress: Callable[[str], None] | None = None
                 ) -> tuple[dict, dict]:
    """Metrics per split/family/quantity, plus the leave-one-model-out residuals used for intervals."""
    metrics: dict = {}
    residuals: dict = {}
    for split in splits:
        metrics[split] = {}
        for family, frame in frames.items():
            if frame.empty:
                continue
            oof = ev.out_of_fold(frame, features[family], family, split, catalog, progress)
            per_quantity = {}
            columns = ev.measured_columns(family)
            groups = frame["model_id"].to_numpy()
            energy = next(iter(columns))
            tail = 0.1
            if split == ev.HEADLINE:
                energy_residual = np.log(frame[columns[energy]].to_numpy(float) / oof[f"pred_{energy}"].to_numpy(float))
                tail = ev.calibrate_tail(energy_residual, groups)
                residuals.setdefault(family, {})["_tail"] = tail
            for quantity, column in columns.items():
                measured = frame[column].to_numpy(float)
                predicted = oof[f"pred_{quantity}"].to_numpy(float)
                per_quantity[quantity] = ev.ape_metrics(measured, predicted)
                if split == "leave-gpu-out":
                    per_quantity[quantity]["by_fold"] = {
                        fold: ev.ape_metrics(measured[oof["fold"].eq(fold).to_numpy()],
                                             predicted[oof["fold"].eq(fold).to_numpy()])
                        for fold in sorted(oof["fold"].unique())}
                if split == ev.HEADLINE:
                    log_residual = np.log(measured / predicted)
                    residuals[family][quantity] = log_residual
                    per_quantity[quantity]["p10_p90_coverage_pct"] = ev.cross_fitted_coverage(
                        log_residual, groups, tail)
            if family == "llm":
                per_quantity["ranking"] = ev.ranking_metrics(frame, oof["pred_energy_per_token_joules"].to_numpy())
                by_task_family = {}
                for task_family in ("llm", "mllm"):
                    mask = frame["task_family"].eq(task_family).to_numpy()
                    by_task_family[task_family] = ev.ape_metrics(
                        frame.loc[mask, "energy_per_token_joules"].to_numpy(float),
                        oof.loc[mask, "pred_energy_per_token_joules"].to_numpy(float))
                per_quantity["energy_per_token_by_task_family"] = by_task_family
            metrics[split][family] = per_quantity
    return metrics, residuals


def baseline_metrics(frame: pd.DataFrame, catalog: Catalog) -> dict:
    """Baselines on the same LLM rows: naive FLOPs x TDP / peak and EcoLogits' formula (no training)."""
    out = {}
    measured = frame["energy_per_token_joules"].to_numpy(float)
    for name, predicted in ev.baseline_predictions(frame, catalog).items():
        out[name] = {**ev.ape_metrics(measured, predicted),
                     "median_ratio_predicted_over_measured": float(np.median(predicted / measured))}
    return out


def train(*, root: Path | None = None, output: Path | None = None, evaluate: bool = True,
          splits: tuple[str, ...] = ev.SPLITS, progress: Callable[[str], None] | None = None) -> PredictorBundle:
    """Fit every predictor on all runs, evaluate, and write ``models/predictors/default`` (or ``output``).

    Args:
        root: datasets folder (default: the project's ``datasets/``, local sweeps included).
        output: where to write the artifact; None writes nothing.
        evaluate: run the out-of-fold evaluation (needed for intervals; skip only for quick experiments).
        splits: which named splits to evaluate.
        progress: called with a short label after each fitted fold.
    """
    catalog = load_catalog()
    runs = load_runs(root, catalog=catalog)
    frames = split_by_family(runs)
    features = {family: featurize(frame, catalog) for family, frame in frames.items()}
    regressors = fit_regressors(features, frames)
    if progress:
        progress("fitted final predictors")
    card = Card(
        name=DEFAULT_PREDICTOR, targets=sorted(regressors),
        target_specs={t.name: target_card(t) for t in TARGETS},
        features={family.name: [FeatureCard(name=f.name, layer=f.layer, factor=f.factor) for f in family.features]
                  for family in FAMILIES},
        lightgbm_params=LGB_PARAMS, num_rounds=NUM_ROUNDS, data_hash=data_hash(runs),
        catalog_hash=catalog.content_hash, training_rows={family: len(frame) for family, frame in frames.items()},
        sources=sorted(runs["source"].unique()),
        domain={family: _domain(frame, family) for family, frame in frames.items() if not frame.empty},
        versions=_versions(), attribution_reference=reference_from_frames(regressors, frames, features))
    if evaluate:
        metrics, residuals = evaluate_all(frames, features, catalog, splits, progress)
        card.metrics = metrics
        card.baselines = {"llm": baseline_metrics(frames["llm"], catalog)}
        card.intervals = {family: {quantity: ev.interval_quantiles(values, by_quantity["_tail"])
                                   for quantity, values in by_quantity.items() if quantity != "_tail"}
                          for family, by_quantity in residuals.items()}
        card.interval_tails = {family: by_quantity["_tail"] for family, by_quantity in residuals.items()}
        card.interval_source = (f"{ev.HEADLINE} out-of-fold log residuals; quantile tails chosen per family so "
                                f"that 80% of each held-out model's rows fall inside when calibrated on the "
                                f"other models (p10/p90 of the predictive distribution)")
    bundle = PredictorBundle(regressors, card)
    if output is not None:
        bundle.save(output)
    return bundle


def default_output() -> Path:
    return predictors_dir() / DEFAULT_PREDICTOR
