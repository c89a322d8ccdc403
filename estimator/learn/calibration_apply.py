"""Applying a calibration (:mod:`estimator.learn.calibration`) to predictions: shift, re-derive energy, narrow
intervals.

For each configuration and learned quantity the posterior shift ``s`` (natural log) multiplies the predictor's
value by ``exp(s)``. The interval keeps the shape of the predictor card's calibrated p10/p90 interval (its tails were
chosen for 80% leave-one-model-out coverage) and scales its log half-widths by ``sqrt(v / v0)``: ``v`` is the
posterior predictive variance of the residual (posterior variance of the effects that apply + the prior variance of
the levels without runs + run noise) and ``v0`` the same with no runs at all, so an uncalibrated configuration
keeps exactly the card's interval. Energy is re-derived from calibrated power and throughput (latency): J/token =
W / (tokens/s), J/item = W x s / batch; its interval width comes from the energy quantity's own components.
Power stays below GPU count x TDP (the predictor's own ceiling, ``estimator/predictor.py`` TARGETS).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from estimator.catalog.catalog import ArchitectureSpec, Catalog
from estimator.learn.calibration import ENERGY, QUANTITIES, Calibration, row_keys
from estimator.learn.calibration_model import LEVELS, RowKeys
from estimator.learn.prediction import resolve_row
from estimator.learn.predictor import PredictorBundle

#: derived output -> (quantities whose shifts multiply it with a sign, interval source, interval flipped)
DERIVED = {
    "llm": {"energy_per_token_joules": ({"avg_power_watts": 1, "output_throughput_tokens_per_sec": -1},
                                        "energy_per_token_joules", False),
            "energy_per_request_joules": ({"avg_power_watts": 1, "output_throughput_tokens_per_sec": -1},
                                          "energy_per_token_joules", False),
            "tokens_per_sec_per_watt": ({"avg_power_watts": -1, "output_throughput_tokens_per_sec": 1},
                                        "energy_per_token_joules", True)},
    "diffusion": {"energy_per_item_joules": ({"avg_power_watts": 1, "batch_latency_s": 1},
                                             "energy_per_item_joules", False),
                  "items_per_sec": ({"batch_latency_s": -1}, "batch_latency_s", True)},
}


def row_shifts(calibration: Calibration, family: str, keys: list[RowKeys]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per quantity: (log shift, interval width ratio sqrt(v / v0)) for each configuration."""
    out = {}
    for quantity in QUANTITIES[family]:
        posterior = calibration.posterior(family, quantity)
        if posterior is None:
            out[quantity] = (np.zeros(len(keys)), np.ones(len(keys)))
            continue
        mean, variance = posterior.shift(keys)
        out[quantity] = (mean, posterior.components.interval_ratio(variance))
    return out


def levels_note(calibration: Calibration, family: str, keys: RowKeys) -> str:
    """Which calibrated levels apply to a configuration, with their evidence (runs)."""
    evidence: dict[tuple[str, str], int] = {}
    for quantity in QUANTITIES[family]:
        posterior = calibration.posterior(family, quantity)
        if posterior is None:
            continue
        for level in LEVELS:
            runs = posterior.evidence(level, keys.key(level))
            evidence[(level, keys.key(level))] = max(evidence.get((level, keys.key(level)), 0), runs)
    labels = {"model": "model", "deployment": "deployment", "gpu": "GPU", "engine": "engine"}
    parts = [f"{labels[level]} {key if level in ('gpu', 'engine') else ''}".strip() + f" ({runs} runs)"
             for (level, key), runs in evidence.items() if runs > 0]
    return "calibrated: " + (", ".join(parts) if parts else "no level with runs applies (predictor as is)")


def _resolve(out: pd.DataFrame, configs: pd.DataFrame, bundle: PredictorBundle, catalog: Catalog,
             extra_models: dict) -> dict[str, list[tuple[int, RowKeys, dict]]]:
    groups: dict[str, list[tuple[int, RowKeys, dict]]] = {"llm": [], "diffusion": []}
    for position, raw in enumerate(configs.to_dict("records")):
        if out["status"].iat[position] != "ok":
            continue
        resolved = resolve_row(raw, catalog, extra_models, bundle)
        family, keys = row_keys(resolved.values, resolved.arch)
        groups[family].append((position, keys, resolved.values))
    return groups


def apply_calibration(out: pd.DataFrame, configs: pd.DataFrame, calibration: Calibration, bundle: PredictorBundle,
                      catalog: Catalog, extra_models: dict[str, ArchitectureSpec] | None = None) -> pd.DataFrame:
    """Calibrated copy of a ``predict_frame`` output (rows aligned with ``configs``), with a ``calibration`` column
    naming the levels that moved each row."""
    out = out.reset_index(drop=True).copy()
    out["calibration"] = ""
    for family, items in _resolve(out, configs, bundle, catalog, extra_models or {}).items():
        if not items:
            continue
        positions = [p for p, _, _ in items]
        keys = [k for _, k, _ in items]
        shifts = row_shifts(calibration, family, keys)
        intervals = bundle.intervals.get(family, {})
        for quantity, (shift, ratio) in shifts.items():
            if quantity == ENERGY[family]:
                continue
            _scale(out, positions, quantity, np.exp(shift), ratio, intervals.get(quantity, (0.0, 0.0)), False)
        _cap_power(out, positions, shifts, [v for _, _, v in items], catalog)
        for name, (signs, source, flipped) in DERIVED[family].items():
            log_factor = sum(sign * shifts[q][0] for q, sign in signs.items())
            _scale(out, positions, name, np.exp(log_factor), shifts[source][1] if source in shifts else 1.0,
                   intervals.get(source, (0.0, 0.0)), flipped)
        for position, key in zip(positions, keys, strict=True):
            out.at[position, "calibration"] = levels_note(calibration, family, key)
    return out


def _scale(out: pd.DataFrame, positions: list[int], name: str, factor: np.ndarray, ratio, interval, flipped: bool
           ) -> None:
    q10, q90 = interval
    if flipped:
        q10, q90 = -q90, -q10
    values = out.loc[positions, name].to_numpy(float) * factor
    out.loc[positions, name] = values
    out.loc[positions, name + "_p10"] = values * np.exp(q10 * np.asarray(ratio))
    out.loc[positions, name + "_p90"] = values * np.exp(q90 * np.asarray(ratio))


def _cap_power(out: pd.DataFrame, positions: list[int], shifts: dict, values: list[dict], catalog: Catalog) -> None:
    """Calibrated power above GPU count x TDP is held at it; the shift of every power-derived output follows."""
    ceiling = np.array([int(v["num_gpus"]) * catalog.gpus[v["gpu_model"]].tdp_watts for v in values])
    power = out.loc[positions, "avg_power_watts"].to_numpy(float)
    over = power > ceiling
    if not over.any():
        return
    excess = np.log(power / ceiling) * over
    shift, ratio = shifts["avg_power_watts"]
    shifts["avg_power_watts"] = (shift - excess, ratio)
    factor = np.exp(-excess)
    for suffix in ("", "_p10", "_p90"):
        out.loc[positions, "avg_power_watts" + suffix] = out.loc[positions, "avg_power_watts" + suffix] * factor
