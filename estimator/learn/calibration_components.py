"""Variance components of the calibration model, estimated from held-out residuals of the uncalibrated predictor.

The components say how far, a priori, a model / deployment / GPU / engine / batch curve of runs may sit from the
predictor (see :mod:`estimator.learn.calibration_model`). They are estimated once from out-of-fold predictions and
frozen in ``models/calibration/components.json`` by ``benchmarks/calibration_components.py``:

- model, deployment, batch curve (sd, length) and noise: restricted maximum likelihood on the
  ``leave-one-model-out`` log residuals (what a user's own model looks like to the predictor);
- gpu: RMS of the mean residual of each GPU held out in ``leave-gpu-out`` (published-engine rows);
- engine: |mean residual| of the non-published-engine runs on a GPU present in training (``leave-engine-out``).
"""

from __future__ import annotations

import math

import numpy as np

from estimator.learn.calibration_model import RowKeys


def _neg_log_likelihood(params: np.ndarray, blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """Restricted (intercept-profiled) Gaussian negative log-likelihood of the residuals under the variance model.

    ``params``: log of (model sd, deployment sd, curve sd, curve length, noise sd). The covariance is block-diagonal
    by model (deployments and their curves nest inside a model), so each model's block is factorised on its own.
    """
    model_sd, deployment_sd, curve_sd, length, noise_sd = np.exp(params)
    logdet, ones_ones, ones_r, r_r = 0.0, 0.0, 0.0, 0.0
    for residuals, same_deployment, squared_distance in blocks:
        variance = (noise_sd ** 2 * np.eye(len(residuals)) + model_sd ** 2 + same_deployment * (
            deployment_sd ** 2 + curve_sd ** 2 * np.exp(-squared_distance / (2 * length ** 2))))
        try:
            chol = np.linalg.cholesky(variance)
        except np.linalg.LinAlgError:
            return 1e12
        ones = np.linalg.solve(chol, np.ones(len(residuals)))
        white = np.linalg.solve(chol, residuals)
        logdet += float(np.sum(np.log(np.diag(chol))))
        ones_ones += ones @ ones
        ones_r += ones @ white
        r_r += white @ white
    quadratic = r_r - ones_r ** 2 / ones_ones
    return float(logdet + 0.5 * quadratic + 0.5 * math.log(ones_ones))


def estimate_within(residuals: np.ndarray, rows: list[RowKeys]) -> dict[str, float]:
    """Model, deployment, batch-curve (sd and length) and noise from held-out (leave-one-model-out) residuals, by
    restricted maximum likelihood with a free intercept (the predictor's overall bias is not a level effect)."""
    from scipy.optimize import minimize

    residuals = np.asarray(residuals, float)
    model = np.array([r.model for r in rows])
    deployment = np.array([r.deployment for r in rows])
    log_batch = np.array([r.log_batch for r in rows])
    blocks = []
    for key in np.unique(model):
        mask = model == key
        same = (deployment[mask][:, None] == deployment[mask][None, :]).astype(float)
        blocks.append((residuals[mask], same, (log_batch[mask][:, None] - log_batch[mask][None, :]) ** 2))
    start = np.log([0.1, 0.1, 0.1, 1.5, 0.05])
    result = minimize(_neg_log_likelihood, start, args=(blocks,), method="Nelder-Mead",
                      options={"xatol": 1e-3, "fatol": 1e-4, "maxiter": 1500})
    model_sd, deployment_sd, curve_sd, length, noise_sd = np.exp(result.x)
    return {"model": float(model_sd), "deployment": float(deployment_sd), "curve": float(curve_sd),
            "length": float(length), "noise": float(noise_sd)}


def group_effect_sd(residuals: np.ndarray, groups: np.ndarray) -> float:
    """RMS over groups of the mean residual of each group (held-out groups: each mean is one effect draw)."""
    means = [float(np.mean(residuals[groups == g])) for g in np.unique(groups)]
    return float(np.sqrt(np.mean(np.square(means)))) if means else 0.0


def frame_keys(frame, family: str) -> list[RowKeys]:
    """Level keys of every row of a canonical run frame (``estimator.learn.data.load_runs`` columns)."""
    batch = frame["batch_size"] if family == "diffusion" else frame["max_num_seqs"]
    precision = frame["weight_precision"].fillna("bfloat16").astype(str)
    deployment = (frame["model_id"] + "|" + frame["task"] + "|" + frame["gpu_model"] + "|"
                  + frame["num_gpus"].astype(int).astype(str) + "|" + precision)
    return [RowKeys(m, d, g, str(e), math.log(float(b))) for m, d, g, e, b in zip(
        frame["model_id"], deployment, frame["gpu_model"], frame["engine"], batch, strict=True)]


#: per family: learned quantity -> measured column of the run frame
COMPONENT_QUANTITIES = {
    "llm": {"avg_power_watts": "avg_power_watts",
            "output_throughput_tokens_per_sec": "output_throughput_tokens_per_sec",
            "median_itl_ms": "median_itl_ms", "energy_per_token_joules": "energy_per_token_joules"},
    "diffusion": {"avg_power_watts": "avg_power_watts", "batch_latency_s": "batch_latency_s",
                  "energy_per_item_joules": "energy_per_item_joules"},
}
#: diffusion has one engine in the data; its engine sd is borrowed from the LLM quantity of the same kind
ENGINE_BORROW = {"avg_power_watts": "avg_power_watts", "batch_latency_s": "output_throughput_tokens_per_sec",
                 "energy_per_item_joules": "energy_per_token_joules"}


def _log_residual(frame, oof, column: str, quantity: str) -> np.ndarray:
    return np.log(frame[column].to_numpy(float) / oof[f"pred_{quantity}"].to_numpy(float))


def estimate_components(frames: dict, oof: dict[str, dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Variance components per family and quantity from out-of-fold predictions of the uncalibrated predictor.

    (see the module docstring for which residuals inform which component).

    Args:
        frames: run frame per family (``estimator.learn.training.split_by_family``).
        oof: {split: {family: out-of-fold frame with ``pred_<quantity>`` and ``fold``}}.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for family in ("llm", "diffusion"):
        frame = frames[family]
        keys = frame_keys(frame, family)
        published = frame["source"].eq("mlenergy-v3").to_numpy()
        out[family] = {}
        for quantity, column in COMPONENT_QUANTITIES[family].items():
            lomo = _log_residual(frame, oof["leave-one-model-out"][family], column, quantity)
            within = estimate_within(lomo, keys)
            gpu_oof = oof["leave-gpu-out"][family]
            gpu_res = _log_residual(frame, gpu_oof, column, quantity)
            gpu = group_effect_sd(gpu_res[published], gpu_oof["fold"].to_numpy()[published])
            out[family][quantity] = {**within, "gpu": gpu, "engine": _engine_sd(frame, oof, family, quantity, column)}
    for quantity, borrowed in ENGINE_BORROW.items():
        out["diffusion"][quantity]["engine"] = out["llm"][borrowed]["engine"]
    return out


def _engine_sd(frame, oof, family: str, quantity: str, column: str) -> float:
    engine_oof = oof["leave-engine-out"].get(family)
    if engine_oof is None or f"pred_{quantity}" not in engine_oof:
        return 0.0
    seen_gpus = set(frame.loc[frame["engine"].eq("vllm"), "gpu_model"])
    held = (engine_oof["fold"].astype(str).ne("") & frame["gpu_model"].isin(seen_gpus)).to_numpy()
    if not held.any():
        return 0.0
    residual = _log_residual(frame[held], engine_oof[held], column, quantity)
    return float(abs(np.mean(residual)))
