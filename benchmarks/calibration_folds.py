"""Out-of-fold predictions of the uncalibrated predictor, cached, for the calibration benchmark and components.

Every prediction here comes from a predictor retrained without the rows it predicts (the splits and the fitting
are :func:`estimator.learn.evaluate.out_of_fold`, the same machinery as the card's accuracy table):

- ``leave-one-model-out`` (LLM and diffusion): every configuration of one model held out together.
- ``leave-gpu-out`` (LLM and diffusion): every configuration on one GPU type held out together.
- ``leave-engine-out`` (LLM): the ``torch-cudagraph`` runs of ``datasets/local`` predicted by a predictor fitted on
  the vLLM rows only.

The cache lives under ``/tmp`` keyed by the data hash and the predictor's hyper-parameters, so a rerun after a
retrain or new runs recomputes it (a few minutes on 2 cores) and a rerun on the same data takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.catalog.catalog import load_catalog
from estimator.learn import evaluate as ev
from estimator.learn.data import load_runs
from estimator.learn.features import featurize
from estimator.learn.neighbours import ALGORITHM, NEIGHBOUR_WEIGHT, NEIGHBOURS_K
from estimator.learn.predictor import (
    LGB_PARAMS,
    NUM_ROUNDS,
    TARGETS,
    fit_regressors,
    predict_end_metrics,
    target_card,
    targets_for,
)
from estimator.learn.training import data_hash, split_by_family

#: one LightGBM thread: on a shared, oversubscribed 2-core machine OpenMP's spinning threads cost far more than they
#: gain (a fit took minutes instead of seconds); the boosters are the same (``deterministic`` in LGB_PARAMS)
LGB_PARAMS["num_threads"] = 1

CACHE_DIR = Path(os.environ.get("JOULES_CAL_CACHE", "/tmp/joules-calibration-cache"))
SPLITS = ("leave-one-model-out", "leave-gpu-out", "leave-engine-out")


def _code_hash() -> str:
    """Hash of the physics and learning code (``estimator/physics``, ``estimator/learn``, ``estimator/catalog``):
    a change of a formula with the same catalog and data must not reuse folds computed before it."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent / "estimator"
    for path in sorted(p for sub in ("physics", "learn", "catalog") for p in (root / sub).rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _cache_key(runs: pd.DataFrame) -> str:
    """Data hash plus everything that shapes the fold predictors: booster parameters, each target's offsets,
    bounds and neighbour member, the catalog (physics inputs and the output-length profile) and the code."""
    params = json.dumps({"lgb": {k: v for k, v in LGB_PARAMS.items() if k != "num_threads"}, "rounds": NUM_ROUNDS,
                         "targets": [target_card(t).model_dump() for t in TARGETS],
                         "neighbours": [ALGORITHM, NEIGHBOURS_K, NEIGHBOUR_WEIGHT],
                         "catalog": load_catalog().content_hash, "code": _code_hash()},
                        sort_keys=True)
    return f"{data_hash(runs)}-{hashlib.sha256(params.encode()).hexdigest()[:8]}"


def _leave_engine_out(frame: pd.DataFrame, features: pd.DataFrame, family: str) -> pd.DataFrame:
    """Predict the non-published-engine rows with a predictor fitted on the others (empty when there are none)."""
    held = frame["engine"].ne("vllm").to_numpy() if family == "llm" else np.zeros(len(frame), bool)
    out = pd.DataFrame({"fold": ""}, index=frame.index)
    if not held.any():
        return out
    train = ~held
    regressors = fit_regressors({family: features[train]}, {family: frame[train]}, targets_for(family))
    derived = predict_end_metrics(regressors, features[held], frame[held], family)
    for name, values in derived.items():
        column = np.full(len(frame), np.nan)
        column[held] = values
        out[f"pred_{name}"] = column
    out["fold"] = np.where(held, "engine " + frame["engine"].astype(str), "")
    return out


def fold_predictions(progress: bool = True) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, pd.DataFrame]]]:
    """(run frame per family, {split: {family: out-of-fold predictions}}), from the cache when it is current.

    Out-of-fold frames have ``pred_<metric>`` columns (NaN where a row was not held out in that split) and
    ``fold``; their index matches the family's run frame.
    """
    catalog = load_catalog()
    runs = load_runs(catalog=catalog)
    frames = split_by_family(runs)
    folder = CACHE_DIR / _cache_key(runs)
    results: dict[str, dict[str, pd.DataFrame]] = {}
    features = None
    for split in SPLITS:
        results[split] = {}
        for family, frame in frames.items():
            path = folder / f"{split}-{family}.csv"
            if path.exists():
                results[split][family] = pd.read_csv(path, index_col=0, keep_default_na=False,
                                                     na_values=[""]).reindex(frame.index)
                loaded = results[split][family]
                loaded["fold"] = loaded["fold"].fillna("").astype(str) if "fold" in loaded else ""
                continue
            if features is None:
                features = {f: featurize(fr, catalog) for f, fr in frames.items()}
            start = time.perf_counter()
            if split == "leave-engine-out":
                oof = _leave_engine_out(frame, features[family], family)
            else:
                oof = ev.out_of_fold(frame, features[family], family, split, catalog,
                                     (lambda label: print(f"    {label}", flush=True)) if progress else None)
            folder.mkdir(parents=True, exist_ok=True)
            oof.to_csv(path)
            results[split][family] = oof
            if progress:
                print(f"  {split} {family}: {time.perf_counter() - start:.0f} s -> {path}", flush=True)
    return frames, results


if __name__ == "__main__":
    fold_predictions()
