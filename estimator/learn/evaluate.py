"""Honest accuracy: out-of-fold predictions under named splits, metrics, baselines and the report.

Splits (every number produced here names one):
- ``random-5fold``: rows shuffled into 5 folds (optimistic; siblings of a held-out row stay in training).
- ``leave-one-model-out``: every configuration of one model held out together (GroupKFold by model_id).
- ``leave-family-out``: every model of the same architecture shape held out together (FP8/BF16 twins,
  Instruct/Thinking/VL/Coder variants, Llama 3.1/3.3 70B).
- ``leave-gpu-out``: train on H100 rows, predict B200 rows, and the reverse.
- ``leave-task-out``: every configuration of one task held out together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from estimator.catalog.catalog import Catalog
from estimator.learn.family import family_of
from estimator.learn.predictor import fit_regressors, predict_end_metrics, targets_for
from estimator.physics import step

SPLITS = ("random-5fold", "leave-one-model-out", "leave-family-out", "leave-gpu-out", "leave-task-out")
HEADLINE = "leave-one-model-out"
#: EcoLogits' published fit (Wh per output token = a * exp(b * batch) * active_params_B + c)
ECOLOGITS_A, ECOLOGITS_B, ECOLOGITS_C = 1.1665e-6, -0.011206, 4.0529e-5


def split_folds(frame: pd.DataFrame, split: str, catalog: Catalog, seed: int = 0
                ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield (fold name, train positions, test positions) for a named split."""
    positions = np.arange(len(frame))
    if split == "random-5fold":
        order = np.random.default_rng(seed).permutation(len(frame))
        for k, test in enumerate(np.array_split(order, 5)):
            yield f"fold{k}", np.setdiff1d(positions, test), np.sort(test)
        return
    if split == "leave-gpu-out":
        for gpu in sorted(frame["gpu_model"].unique()):
            test = positions[frame["gpu_model"].eq(gpu).to_numpy()]
            yield f"predict {gpu}", np.setdiff1d(positions, test), test
        return
    groups = {
        "leave-one-model-out": frame["model_id"],
        "leave-family-out": frame["model_id"].map(lambda m: catalog.models[m].family),
        "leave-task-out": frame["task"],
    }[split]
    for group in sorted(groups.unique()):
        test = positions[groups.eq(group).to_numpy()]
        yield str(group), np.setdiff1d(positions, test), test


def out_of_fold(frame: pd.DataFrame, features: pd.DataFrame, family: str, split: str, catalog: Catalog,
                progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Out-of-fold predictions of every derived metric for one family under one split."""
    predictions: dict[str, np.ndarray] = {}
    fold_of = np.full(len(frame), "", dtype=object)
    for fold, train, test in split_folds(frame, split, catalog):
        if len(train) == 0 or len(test) == 0:
            continue
        regressors = fit_regressors({family: features.iloc[train]}, {family: frame.iloc[train]},
                                    targets_for(family))
        derived = predict_end_metrics(regressors, features.iloc[test], frame.iloc[test], family)
        for name, values in derived.items():
            predictions.setdefault(name, np.full(len(frame), np.nan))[test] = values
        fold_of[test] = fold
        if progress:
            progress(f"{split} {family} {fold}")
    out = pd.DataFrame({f"pred_{k}": v for k, v in predictions.items()}, index=frame.index)
    out["fold"] = fold_of
    return out


def measured_columns(family: str) -> dict[str, str]:
    """Derived metric -> measured column in the run frame (the same name)."""
    return {name: name for name in family_of(family).measured}


def ape_metrics(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Median/mean/p90 absolute percentage error and the share of predictions within 2x."""
    ok = np.isfinite(predicted) & np.isfinite(measured)
    measured, predicted = measured[ok], predicted[ok]
    ape = np.abs(predicted / measured - 1.0) * 100
    ratio = predicted / measured
    return {"n": int(ok.sum()), "median_ape_pct": float(np.median(ape)), "mape_pct": float(np.mean(ape)),
            "p90_ape_pct": float(np.percentile(ape, 90)),
            "within_2x_pct": float(np.mean((ratio <= 2) & (ratio >= 0.5)) * 100)}


def interval_quantiles(log_residuals: np.ndarray, tail: float = 0.1) -> list[float]:
    """[q(tail), q(1 - tail)] of log(measured / predicted)."""
    return [float(np.quantile(log_residuals, tail)), float(np.quantile(log_residuals, 1 - tail))]


def cross_fitted_coverage(log_residuals: np.ndarray, groups: np.ndarray, tail: float = 0.1) -> float:
    """Share of rows inside the interval calibrated on the OTHER groups' residuals only (honest)."""
    inside = []
    for group in np.unique(groups):
        mask = groups == group
        low, high = interval_quantiles(log_residuals[~mask], tail)
        inside.append((log_residuals[mask] >= low) & (log_residuals[mask] <= high))
    return float(np.mean(np.concatenate(inside)) * 100)


def calibrate_tail(log_residuals: np.ndarray, groups: np.ndarray, target_pct: float = 80.0) -> float:
    """The residual quantile tail (0.10 down to 0.02) whose interval covers ``target_pct`` of rows when each
    model is judged by the others' residuals: residuals cluster by model, so the plain p10/p90 of pooled
    residuals under-covers a new model. Returns the widest needed; 0.10 when that already suffices."""
    for tail in (0.10, 0.09, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03):
        if cross_fitted_coverage(log_residuals, groups, tail) >= target_pct:
            return tail
    return 0.02


def _kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    n = len(a)
    concordant = discordant = 0
    for i in range(n):
        for j in range(i + 1, n):
            s = np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
            concordant += s > 0
            discordant += s < 0
    pairs = n * (n - 1) / 2
    return float((concordant - discordant) / pairs) if pairs else float("nan")


def ranking_metrics(frame: pd.DataFrame, predicted: np.ndarray) -> dict[str, float]:
    """Within each (model, task, GPU, GPU count) group: Kendall tau of predicted vs measured energy per
    token, and whether the predicted minimum-energy batch is within 5% of the true minimum energy."""
    taus, hits = [], []
    keys = ["model_id", "task", "gpu_model", "num_gpus"]
    work = frame.assign(_pred=predicted)
    for _, group in work.groupby(keys):
        if len(group) < 3:
            continue
        measured = group["energy_per_token_joules"].to_numpy()
        taus.append(_kendall_tau(group["_pred"].to_numpy(), measured))
        chosen = measured[int(np.argmin(group["_pred"].to_numpy()))]
        hits.append(chosen <= measured.min() * 1.05)
    return {"groups": len(taus), "median_kendall_tau": float(np.median(taus)) if taus else float("nan"),
            "mean_kendall_tau": float(np.mean(taus)) if taus else float("nan"),
            "min_energy_pick_within_5pct_pct": float(np.mean(hits) * 100) if hits else float("nan")}


def baseline_predictions(frame: pd.DataFrame, catalog: Catalog) -> dict[str, np.ndarray]:
    """Energy per token (J) from the naive FLOPs x TDP / peak-FLOPS estimate and EcoLogits' fitted formula."""
    naive, ecologits = [], []
    for _, row in frame.iterrows():
        arch = catalog.models[row["model_id"]]
        gpu = catalog.gpus[row["gpu_model"]]
        flops = step.decode_flops_per_token(arch, 0.0)
        naive.append(flops * gpu.tdp_watts / step.peak_flops(gpu, row["weight_precision"]))
        wh = ECOLOGITS_A * math.exp(ECOLOGITS_B * row["max_num_seqs"]) * arch.active_params_billions + ECOLOGITS_C
        ecologits.append(wh * 3600.0)
    return {"naive-flops-tdp": np.array(naive), "ecologits": np.array(ecologits)}
