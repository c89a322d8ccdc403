"""The hierarchical random-effects model behind calibration: one Gaussian linear model per quantity, in log space.

For one quantity (power, throughput, median ITL, diffusion batch latency, or the energy used only for intervals)
the residual of a measured run ``i`` against the uncalibrated predictor is

    log(measured_i / predicted_i) = a_model + a_deployment + a_gpu + a_engine + b_deployment * (x_i - c_d) + e_i

with ``x = log(batch)`` (``max_num_seqs`` for LLMs, ``batch_size`` for diffusion), ``c_d`` the mean ``x`` of the
deployment's runs, every effect drawn from N(0, sd_level^2) and ``e`` from N(0, sd_noise^2). With the variance
components fixed (:class:`Components`, estimated from held-out residuals of the uncalibrated predictor, see
:func:`estimate_components`) the posterior of the effects is Gaussian and exact:

    Sigma = (Z'Z / sd_noise^2 + D^-1)^-1,   mean = Sigma Z' r / sd_noise^2

so a level without runs stays at zero (the predictor), one run moves a level part of the way (shrinkage by
tau^2 / (tau^2 + sd_noise^2) when it is the only level), more runs move it further, and levels compete for a
residual in proportion to their prior variance. A GPU effect learnt from one model carries to every other model
on that GPU. This is the empirical-Bayes random-effects model of e.g. Gelman & Hill, "Data Analysis Using
Regression and Multilevel/Hierarchical Models" (2007), ch. 12-13, with a random slope (ch. 13.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

LEVELS = ("model", "deployment", "gpu", "engine")
SLOPE = "slope"


class Components(BaseModel):
    """Prior standard deviations (natural-log units) of each level's effect, the slope, and the run noise."""

    model_config = ConfigDict(extra="forbid")

    model: float
    deployment: float
    gpu: float
    engine: float
    slope: float  # per unit of log(batch)
    noise: float
    slope_spread: float  # RMS of (log batch - deployment mean) in the data the components came from

    def prior_sd(self, level: str) -> float:
        return float(getattr(self, level))

    def prior_variance(self) -> float:
        """Variance of the residual of a configuration with no calibration evidence at all."""
        return (sum(self.prior_sd(level) ** 2 for level in LEVELS) + (self.slope * self.slope_spread) ** 2
                + self.noise ** 2)


@dataclass(frozen=True)
class RowKeys:
    """The level keys of one configuration (resolved names) and its log batch."""

    model: str
    deployment: str
    gpu: str
    engine: str
    log_batch: float

    def key(self, level: str) -> str:
        return getattr(self, level)


@dataclass
class Posterior:
    """Posterior of one quantity's effects: column index (level, key) -> position, mean, covariance."""

    columns: list[tuple[str, str]]
    mean: np.ndarray
    cov: np.ndarray
    centers: dict[str, float]  # deployment key -> c_d
    evidence: dict[tuple[str, str], int]  # (level, key) -> runs
    components: Components

    def effect(self, level: str, key: str) -> tuple[float, float]:
        """(posterior mean, posterior sd) of one effect; (0, prior sd) for a level without runs."""
        try:
            position = self.columns.index((level, key))
        except ValueError:
            return 0.0, self.components.prior_sd(level)
        return float(self.mean[position]), float(math.sqrt(self.cov[position, position]))

    def shift(self, rows: list[RowKeys]) -> tuple[np.ndarray, np.ndarray]:
        """(posterior mean shift of log prediction, predictive variance of the residual) for target rows."""
        index = {column: position for position, column in enumerate(self.columns)}
        z = np.zeros((len(rows), len(self.columns)))
        missing = np.zeros(len(rows))
        for i, row in enumerate(rows):
            for level in LEVELS:
                position = index.get((level, row.key(level)))
                if position is None:
                    missing[i] += self.components.prior_sd(level) ** 2
                else:
                    z[i, position] = 1.0
            position = index.get((SLOPE, row.deployment))
            if position is None:
                missing[i] += (self.components.slope * self.components.slope_spread) ** 2
            else:
                z[i, position] = row.log_batch - self.centers[row.deployment]
        mean = z @ self.mean
        variance = np.einsum("ij,jk,ik->i", z, self.cov, z) + missing + self.components.noise ** 2
        return mean, variance


def _design(rows: list[RowKeys], components: Components) -> tuple[np.ndarray, list[tuple[str, str]], dict]:
    columns: list[tuple[str, str]] = []
    for level in LEVELS:
        columns += [(level, key) for key in dict.fromkeys(row.key(level) for row in rows)]
    deployments = list(dict.fromkeys(row.deployment for row in rows))
    centers = {d: float(np.mean([r.log_batch for r in rows if r.deployment == d])) for d in deployments}
    if components.slope > 0:
        columns += [(SLOPE, d) for d in deployments]
    index = {column: position for position, column in enumerate(columns)}
    z = np.zeros((len(rows), len(columns)))
    for i, row in enumerate(rows):
        for level in LEVELS:
            z[i, index[(level, row.key(level))]] = 1.0
        if (SLOPE, row.deployment) in index:
            z[i, index[(SLOPE, row.deployment)]] = row.log_batch - centers[row.deployment]
    return z, columns, centers


def fit_posterior(residuals: np.ndarray, rows: list[RowKeys], components: Components) -> Posterior:
    """Posterior of every level present in ``rows`` given their log residuals (measured / predicted)."""
    z, columns, centers = _design(rows, components)
    prior = np.array([components.prior_sd(level) ** 2 for level, _ in columns])
    keep = prior > 0  # a level with zero prior variance is fixed at zero
    z, prior, columns = z[:, keep], prior[keep], [c for c, k in zip(columns, keep, strict=True) if k]
    noise = components.noise ** 2
    precision = z.T @ z / noise + np.diag(1.0 / prior)
    cov = np.linalg.inv(precision)
    cov = (cov + cov.T) / 2
    mean = cov @ (z.T @ np.asarray(residuals, float)) / noise
    evidence = {}
    for level, key in columns:  # runs whose configuration has this level (the slope's: its deployment's runs)
        evidence[(level, key)] = sum(1 for row in rows if row.key("deployment" if level == SLOPE else level) == key)
    return Posterior(columns, mean, cov, centers, evidence, components)


def _neg_log_likelihood(log_sds: np.ndarray, blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """Restricted (intercept-profiled) Gaussian negative log-likelihood of the residuals under the variance model.

    The covariance is block-diagonal by model (deployment and slope effects nest inside a model), so each model's
    block (residuals, same-deployment indicator, slope outer product) is factorised on its own.
    """
    model_var, deployment_var, slope_var, noise_var = np.exp(2 * log_sds)
    logdet, ones_ones, ones_r, r_r = 0.0, 0.0, 0.0, 0.0
    for residuals, same_deployment, slope_block in blocks:
        variance = (noise_var * np.eye(len(residuals)) + model_var + deployment_var * same_deployment
                    + slope_var * slope_block)
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
    """Model, deployment, slope and noise sds from held-out (leave-one-model-out) residuals, by restricted maximum
    likelihood with a free intercept (the predictor's overall bias is not a level effect).

    Returns the four sds and ``slope_spread`` (RMS centred log batch).
    """
    from scipy.optimize import minimize

    residuals = np.asarray(residuals, float)
    model = np.array([r.model for r in rows])
    deployment = np.array([r.deployment for r in rows])
    log_batch = np.array([r.log_batch for r in rows])
    centred = log_batch.copy()
    for key in np.unique(deployment):
        mask = deployment == key
        centred[mask] -= log_batch[mask].mean()
    blocks = []
    for key in np.unique(model):
        mask = model == key
        same = (deployment[mask][:, None] == deployment[mask][None, :]).astype(float)
        blocks.append((residuals[mask], same, same * np.outer(centred[mask], centred[mask])))
    start = np.log([0.1, 0.1, 0.05, 0.05])
    result = minimize(_neg_log_likelihood, start, args=(blocks,), method="Nelder-Mead",
                      options={"xatol": 1e-3, "fatol": 1e-4, "maxiter": 800})
    sds = np.exp(result.x)
    return {"model": float(sds[0]), "deployment": float(sds[1]), "slope": float(sds[2]), "noise": float(sds[3]),
            "slope_spread": float(np.sqrt(np.mean(centred ** 2)))}


def group_effect_sd(residuals: np.ndarray, groups: np.ndarray) -> float:
    """RMS over groups of the mean residual of each group (held-out groups: each mean is one effect draw)."""
    means = [float(np.mean(residuals[groups == g])) for g in np.unique(groups)]
    return float(np.sqrt(np.mean(np.square(means)))) if means else 0.0


def frame_keys(frame, family: str) -> list[RowKeys]:
    """Level keys of every row of a canonical run frame (``estimator.data.load_runs`` columns)."""
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

    - model, deployment, slope, noise: restricted maximum likelihood (:func:`estimate_within`) on the
      ``leave-one-model-out`` residuals (what a user's own model looks like to the predictor);
    - gpu: RMS of the mean residual of each GPU held out in ``leave-gpu-out``, published-engine rows only;
    - engine: |mean residual| of the non-published-engine runs on a GPU present in training (``leave-engine-out``).

    Args:
        frames: run frame per family (``estimator.training.split_by_family``).
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
