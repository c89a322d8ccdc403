"""The ML.ENERGY-style baseline for calibration: a 4-parameter logistic of energy against log2(batch), per deployment.

ML.ENERGY fits ``metric = a + b / (1 + exp(-k (log2(batch) - x0)))`` over a configuration's measured batch sizes
(``ml-energy/data`` ``mlenergy_data/modeling/logistic.py``; the ML.ENERGY v3 blog / arXiv 2601.22076).
Here it is fitted to log energy. With the few runs calibration gets, the logistic is under-determined:

- one run: only the level is identifiable, so the prediction is that run's value at every batch;
- two runs: steepness ``k`` and midpoint ``x0`` are fixed to the median of the per-deployment fits of the training
  fold's models (deployments with >= 4 batch sizes, the held-out model excluded) and the two runs solve ``a, b``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def _sigmoid(x: np.ndarray, k: float, x0: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-k * (x - x0)))


def _curve(x, a, b, k, x0):
    return a + b * _sigmoid(x, k, x0)


def fit_shapes(frame: pd.DataFrame, energy_column: str, batch_column: str, deployments: pd.Series) -> pd.DataFrame:
    """(model_id, k, x0) of the logistic fitted to every deployment with at least 4 distinct batch sizes."""
    from scipy.optimize import curve_fit

    rows = []
    for key, group in frame.groupby(deployments):
        x = np.log2(group[batch_column].to_numpy(float))
        y = np.log(group[energy_column].to_numpy(float))
        if len(np.unique(x)) < 4:
            continue
        start = (y.max(), y.min() - y.max(), 1.0, float(np.mean(x)))
        bounds = ([-50, -50, 0.05, x.min() - 4], [50, 50, 5.0, x.max() + 4])
        try:
            params, _ = curve_fit(_curve, x, y, p0=start, bounds=bounds, maxfev=4000)
        except (RuntimeError, ValueError):
            continue
        rows.append({"deployment": key, "model_id": group["model_id"].iat[0], "k": params[2], "x0": params[3]})
    return pd.DataFrame(rows)


def logistic_predict(revealed_batch: np.ndarray, revealed_energy: np.ndarray, target_batch: np.ndarray,
                     shape: tuple[float, float]) -> np.ndarray:
    """Energy at ``target_batch`` from one or two revealed runs (see the module docstring for the constraints)."""
    y = np.log(revealed_energy)
    if len(y) == 1:
        return np.full(len(target_batch), float(revealed_energy[0]))
    k, x0 = shape
    s = _sigmoid(np.log2(revealed_batch.astype(float)), k, x0)
    if abs(s[1] - s[0]) < 1e-9:
        return np.full(len(target_batch), float(math.exp(np.mean(y))))
    b = (y[1] - y[0]) / (s[1] - s[0])
    a = y[0] - b * s[0]
    return np.exp(a + b * _sigmoid(np.log2(target_batch.astype(float)), k, x0))
