"""Honest held-out evaluation: the two output-length readings, fold-local task profiles, nested interval tails.

A user predicting an unmeasured model either knows the mean response length of their workload ("output length
given": the workload's measured mean ``avg_output_len`` is an input) or does not, and takes it from the task
profile. In a held-out evaluation that profile must come from the training fold only (the held-out model's own
lengths would leak its answer): :func:`task_output_profile` computes it from the training rows of each fold,
the same way ``models/catalog/output_lengths.py`` computes the product's profile (the model's own mean where
measured, else its publisher's models' mean, else the task's mean over models; every level averages models).
Input lengths are not in the published data: both readings use the frozen estimates of
``models/catalog/tasks.toml`` (``mean_input_tokens``, derived from the benchmark code, see its notes), or the
run's own ``avg_input_len`` where a local record measured it.

Interval tails are chosen inside the folds (:func:`nested_coverage`): the rows of each held-out model are judged
against an interval whose quantile tail was itself calibrated on the other models' residuals only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from estimator.catalog.output_lengths import OutputLengthProfile, profile_from_runs

GIVEN, PROFILE = "given", "task-profile"
READINGS = (GIVEN, PROFILE)
READING_NOTES = {
    GIVEN: "output length given (the workload's measured mean response length is an input, as a user who knows "
           "it gives it)",
    PROFILE: "output length from the profile of the TRAINING fold (the same model's mean on the task where the "
             "fold measured it, else the mean of its publisher's models, else of all models; the held-out rows' "
             "lengths are never read)",
}
#: quantile tails tried when calibrating intervals (widest last)
TAILS = (0.10, 0.09, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03, 0.02)


def task_output_profile(train: pd.DataFrame) -> OutputLengthProfile:
    """The output-length profile of the training fold (:func:`estimator.catalog.output_lengths.profile_from_runs`:
    a model's own mean, else its publisher's models', else the task's mean over models).

    Args:
        train: run rows of the training fold (``task``, ``model_id``, ``avg_output_len`` in tokens).
    """
    return profile_from_runs(train)


def with_profile_lengths(test: pd.DataFrame, profile: OutputLengthProfile) -> pd.DataFrame | None:
    """Copy of ``test`` whose ``avg_output_len`` comes from the training fold's profile; None when a test task is
    missing from it (leave-task-out: no training model ran the task, so there is no honest profile)."""
    found = [profile.tokens(str(m), str(t)) for m, t in zip(test["model_id"], test["task"], strict=True)]
    if any(f is None for f in found):
        return None
    out = test.copy()
    out["avg_output_len"] = [tokens for tokens, _ in found]
    return out


def interval_bounds(log_residuals: np.ndarray, tail: float) -> tuple[float, float]:
    """[q(tail), q(1 - tail)] of log(measured / predicted)."""
    return float(np.quantile(log_residuals, tail)), float(np.quantile(log_residuals, 1 - tail))


def _inside(log_residuals: np.ndarray, groups: np.ndarray, tail: float) -> np.ndarray:
    """Per row: inside the interval calibrated on the other groups' residuals at ``tail``."""
    inside = np.zeros(len(log_residuals), dtype=bool)
    for group in np.unique(groups):
        mask = groups == group
        low, high = interval_bounds(log_residuals[~mask], tail)
        inside[mask] = (log_residuals[mask] >= low) & (log_residuals[mask] <= high)
    return inside


def choose_tail(log_residuals: np.ndarray, groups: np.ndarray, target_pct: float = 80.0) -> float:
    """Narrowest-first quantile tail whose interval covers ``target_pct`` of rows when each group is judged by
    the others' residuals (residuals cluster by model, so pooled p10/p90 under-covers a new model)."""
    for tail in TAILS:
        if np.mean(_inside(log_residuals, groups, tail)) * 100 >= target_pct:
            return tail
    return TAILS[-1]


def nested_coverage(log_residuals: np.ndarray, groups: np.ndarray, target_pct: float = 80.0) -> float:
    """Coverage (%) with the tail chosen inside the folds: for each held-out group, the tail is calibrated on the
    other groups alone (:func:`choose_tail`), then the group's rows are judged against the other groups'
    quantiles at that tail. Nothing about the held-out group enters its own interval."""
    inside = []
    for group in np.unique(groups):
        mask = groups == group
        rest, rest_groups = log_residuals[~mask], groups[~mask]
        tail = choose_tail(rest, rest_groups, target_pct) if len(np.unique(rest_groups)) > 1 else 0.1
        low, high = interval_bounds(rest, tail)
        inside.append((log_residuals[mask] >= low) & (log_residuals[mask] <= high))
    return float(np.mean(np.concatenate(inside)) * 100)


def fold_violations(frame: pd.DataFrame, split: str, fold: str, train: np.ndarray, test: np.ndarray,
                    family_of: dict[str, str]) -> list[str]:
    """What a fold leaks, if anything: held-out models, families, GPUs or tasks present in its training rows.

    Returns human-readable violations (empty when the fold holds out what its split claims).
    """
    key = {"leave-one-model-out": frame["model_id"],
           "leave-family-out": frame["model_id"].map(family_of),
           "leave-gpu-out": frame["gpu_model"], "leave-task-out": frame["task"]}.get(split)
    problems = []
    if np.intersect1d(train, test).size:
        problems.append(f"{split} {fold}: rows in both training and test")
    if key is not None:
        shared = set(key.iloc[test]) & set(key.iloc[train])
        if shared:
            problems.append(f"{split} {fold}: held-out {sorted(shared)} also in training")
    return problems
