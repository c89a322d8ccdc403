"""Uncertainty-aware fleet choice: qualify on interval ends, size on the cautious capacity, report margin and risk.

Each predicted quantity comes with a p10-p90 interval (leave-one-model-out residuals, see the predictor card). A
plan at ``confidence='p90'`` asks that the upper end of the median-ITL interval meets the limit and sizes replicas
on the lower end (p10) of per-replica capacity; at ``'median'`` it uses the point values (the old behaviour).

Risk is the chance that the deployment misses its target, read off the intervals: each quantity is taken as
log-normal with the point value as median and the p10/p90 ends as its 10th/90th percentiles (a separate spread on
each side), and latency and capacity misses as independent. It is a reading of the calibrated intervals, not a
measured failure rate.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd

Confidence = Literal["median", "p90"]
#: the standard normal's 90th percentile: p90 = median x exp(Z90 x sigma) for a log-normal quantity
Z90 = 1.2815515655446004


def latency_column(latency: str, confidence: Confidence) -> str:
    """The column a latency limit is checked on: the p90 end at ``'p90'``, the point value at ``'median'``."""
    return f"{latency}_p90" if confidence == "p90" else latency


def capacity_column(throughput: str, confidence: Confidence) -> str:
    """The column replicas are sized on: the p10 end at ``'p90'``, the point value at ``'median'``."""
    return f"{throughput}_p10" if confidence == "p90" else throughput


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf, otypes=[float])(x / math.sqrt(2.0)))


def prob_above(threshold: np.ndarray | float, value: np.ndarray, p10: np.ndarray, p90: np.ndarray) -> np.ndarray:
    """P(quantity > threshold) for a log-normal quantity with median ``value`` and 10th/90th percentiles p10/p90.

    The side of the median the threshold lies on sets the spread: (ln p90 - ln value) / Z90 above, (ln value -
    ln p10) / Z90 below. A zero-width side gives a step (0 or 1).
    """
    value, p10, p90 = (np.asarray(a, float) for a in (value, p10, p90))
    threshold = np.broadcast_to(np.asarray(threshold, float), value.shape)
    log_t, log_v = np.log(threshold), np.log(value)
    upper = (np.log(np.maximum(p90, value)) - log_v) / Z90
    lower = (log_v - np.log(np.minimum(p10, value))) / Z90
    sigma = np.where(log_t >= log_v, upper, lower)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sigma > 0, (log_t - log_v) / np.where(sigma > 0, sigma, 1.0),
                     np.where(log_t >= log_v, np.inf, -np.inf))
    return 1.0 - _normal_cdf(z)


def miss_risk(frame: pd.DataFrame, *, latency: str, limit: float | None, throughput: str,
              demand: float | None) -> pd.DataFrame:
    """Per fleet row: chance the latency exceeds ``limit``, chance the fleet's capacity falls below ``demand``, and
    the chance of either (independent), plus margins at the point values.

    Args:
        frame: fleets from :func:`estimator.planning.size_fleet` (``replicas`` and the interval columns).
        latency: latency column (median_itl_ms or batch_latency_s); ``limit`` in its unit (None: no limit).
        throughput: per-replica capacity column; ``demand`` in its unit (None: a budget-only plan).

    Returns:
        ``frame`` plus ``risk_latency``, ``risk_capacity``, ``risk``, ``latency_margin_pct`` (limit vs the
        checked latency) and ``capacity_margin_pct`` (fleet capacity at the sizing column vs demand).
    """
    out = frame.copy()
    n = len(out)
    if limit is not None:
        out["risk_latency"] = prob_above(limit, out[latency], out[f"{latency}_p10"], out[f"{latency}_p90"])
    else:
        out["risk_latency"] = np.zeros(n)
    if demand is not None:
        per_replica_needed = demand / out["replicas"].to_numpy(float)
        out["risk_capacity"] = 1.0 - prob_above(per_replica_needed, out[throughput], out[f"{throughput}_p10"],
                                                out[f"{throughput}_p90"])
    else:
        out["risk_capacity"] = np.zeros(n)
    out["risk"] = 1.0 - (1.0 - out["risk_latency"]) * (1.0 - out["risk_capacity"])
    return out


def margins(frame: pd.DataFrame, *, latency_col: str, limit: float | None, capacity_col: str,
            demand: float | None) -> pd.DataFrame:
    """``latency_margin_pct`` = 100 x (limit - checked latency) / limit; ``capacity_margin_pct`` = 100 x (replicas
    x checked capacity - demand) / demand (NaN where there is no limit or demand)."""
    out = frame.copy()
    out["latency_margin_pct"] = (100.0 * (limit - out[latency_col]) / limit) if limit else np.nan
    capacity = out["replicas"].to_numpy(float) * out[capacity_col].to_numpy(float)
    out["capacity_margin_pct"] = (100.0 * (capacity - demand) / demand) if demand else np.nan
    return out


def distinguishable(chosen_power: tuple[float, float, float], other_power: tuple[float, float, float]) -> bool:
    """False when either point value lies inside the other's p10-p90 interval: the predictor cannot tell which of
    the two draws less power, so the ranking between them is a coin toss within the stated error.

    Args:
        chosen_power, other_power: (value, p10, p90) fleet power, any one unit.
    """
    (a, a10, a90), (b, b10, b90) = chosen_power, other_power
    return not (b10 <= a <= b90 or a10 <= b <= a90)


def outside_domain(gpu_models: list[str], trained: list[str] | None) -> list[str]:
    """GPU types the predictor has no training data for under this engine (all known when ``trained`` is None)."""
    if not trained:
        return []
    return [g for g in gpu_models if g not in set(trained)]


def trained_gpus(domain: dict, engine: str) -> list[str] | None:
    """GPU types with training rows for ``engine`` in a predictor card's family domain (``gpu_engines`` entries
    'GPU|engine'); the family's GPU list when the card has no per-engine record; None when it has neither."""
    pairs = domain.get("gpu_engines")
    if pairs:
        return sorted({pair.split("|", 1)[0] for pair in pairs if pair.split("|", 1)[-1] == engine})
    return domain.get("gpus")
