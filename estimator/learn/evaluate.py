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
from estimator.learn import holdout
from estimator.learn.family import family_of
from estimator.learn.features import featurize
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
    """Out-of-fold predictions of every derived metric for one family under one split, in both readings.

    ``pred_<metric>`` is the "output length given" reading (the rows' measured mean output length is an input);
    ``profile_pred_<metric>`` is the "output length from the task profile" reading (LLM only): the test rows are
    re-featurized with the training fold's task profile (:func:`estimator.learn.holdout.task_output_profile`) and
    energy per response is that J/token x the profile length. NaN where the test task is absent from training.
    """
    predictions: dict[str, np.ndarray] = {}
    fold_of = np.full(len(frame), "", dtype=object)
    profile_len = np.full(len(frame), np.nan)
    for fold, train, test in split_folds(frame, split, catalog):
        if len(train) == 0 or len(test) == 0:
            continue
        regressors = fit_regressors({family: features.iloc[train]}, {family: frame.iloc[train]},
                                    targets_for(family))
        derived = predict_end_metrics(regressors, features.iloc[test], frame.iloc[test], family)
        for name, values in derived.items():
            predictions.setdefault(f"pred_{name}", np.full(len(frame), np.nan))[test] = values
        if family == "llm":
            profiled = holdout.with_profile_lengths(frame.iloc[test],
                                                    holdout.task_output_profile(frame.iloc[train]))
            if profiled is not None:
                profile_len[test] = profiled["avg_output_len"].to_numpy(float)
                derived = predict_end_metrics(regressors, featurize(profiled, catalog), profiled, family)
                for name, values in derived.items():
                    predictions.setdefault(f"profile_pred_{name}", np.full(len(frame), np.nan))[test] = values
        fold_of[test] = fold
        if progress:
            progress(f"{split} {family} {fold}")
    out = pd.DataFrame(predictions, index=frame.index)
    out["fold"] = fold_of
    if family == "llm":
        out["profile_output_len"] = profile_len
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


def geometric_bias(predicted: np.ndarray, measured: np.ndarray, groups: np.ndarray) -> dict:
    """Per held-out group, exp(mean log(predicted / measured)) (1.0 = unbiased), and the worst of them.

    Returns ``{"by_group": {group: ratio}, "worst": ratio furthest from 1 (in log), "outside_1_5x": count}``.
    """
    by_group = {str(g): float(np.exp(np.mean(np.log(predicted[groups == g] / measured[groups == g]))))
                for g in np.unique(groups)}
    worst = max(by_group.values(), key=lambda r: abs(math.log(r)))
    outside = sum(1 for r in by_group.values() if not 1 / 1.5 <= r <= 1.5)
    return {"by_group": by_group, "worst": worst, "outside_1_5x": outside}


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
