"""The hierarchical random-effects model behind calibration: one Gaussian model per quantity, in log space.

For one quantity (power, throughput, median ITL, diffusion batch latency, or the energy used only for intervals)
the residual of a measured run ``i`` against the uncalibrated predictor is

    log(measured_i / predicted_i) = a_model + a_gpu + a_engine + a_deployment + f_deployment(x_i) + e_i

with ``x = log(batch)`` (``max_num_seqs`` for LLMs, ``batch_size`` for diffusion). Every level effect ``a`` is drawn
from N(0, sd_level^2); ``f_deployment`` is the deployment's batch curve, a Gaussian process in log batch with a
squared-exponential kernel ``sd_curve^2 exp(-(x - x')^2 / (2 length^2))`` (so nearby batch sizes share their
error and two runs at different batch sizes correct the slope between and around them); ``e`` is run noise,
N(0, sd_noise^2). With the variance components fixed (:class:`Components`, estimated from held-out residuals of the
uncalibrated predictor, see :mod:`estimator.learn.calibration_components`) the posterior is Gaussian and exact
(kriging):

    mean(t) = k_t' K^-1 r,   var(t) = k_tt - k_t' K^-1 k_t + sd_noise^2

where ``K`` is the runs' covariance and ``k_t`` the covariance between the target and the runs. A configuration
sharing no level with the runs keeps shift 0 and the prior variance (the predictor as is); one run moves its levels
part of the way, more runs further, and levels share a residual in proportion to their prior variances, so a GPU
effect learnt from one model carries to every other model on that GPU. This is the empirical-Bayes random-effects
model of Gelman & Hill, "Data Analysis Using Regression and Multilevel/Hierarchical Models" (2007), ch. 12-13, with
the batch curve of Rasmussen & Williams, "Gaussian Processes for Machine Learning" (2006), eq. 2.19-2.26.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

LEVELS = ("model", "gpu", "engine", "deployment")
CURVE = "batch curve"


class Components(BaseModel):
    """Prior standard deviations (natural-log units) of each level's effect, the batch curve and the run noise."""

    model_config = ConfigDict(extra="forbid")

    model: float
    deployment: float
    gpu: float
    engine: float
    curve: float  # sd of the deployment's batch curve
    length: float  # its length scale, in natural-log batch units
    noise: float
    interval_scale: float = 1.0  # see interval_ratio

    def interval_ratio(self, variance: np.ndarray) -> np.ndarray:
        """How much of the predictor card's interval width a calibrated configuration keeps:
        ``min(1, interval_scale x sqrt(v / v0))``. ``v0`` (no evidence) gives 1, the card's interval exactly.
        ``interval_scale`` >= 1 widens calibrated intervals: residuals are heavier-tailed than Gaussian, so the
        variance ratio alone over-narrows them; it is chosen so that 80% of held-back runs fall inside in the
        one-run-per-deployment scenario (``benchmarks/calibration_components.py``)."""
        return np.minimum(1.0, self.interval_scale * np.sqrt(np.asarray(variance) / self.prior_variance()))

    def prior_sd(self, level: str) -> float:
        return float(self.curve if level == CURVE else getattr(self, level))

    def prior_variance(self) -> float:
        """Variance of the residual of a configuration with no calibration evidence at all."""
        return sum(self.prior_sd(level) ** 2 for level in LEVELS) + self.curve ** 2 + self.noise ** 2


@dataclass(frozen=True)
class RowKeys:
    """The level keys of one configuration (resolved names) and its log batch."""

    model: str
    deployment: str
    gpu: str
    engine: str
    log_batch: float

    def key(self, level: str) -> str:
        return self.deployment if level == CURVE else getattr(self, level)


def covariance(a: list[RowKeys], b: list[RowKeys], components: Components) -> np.ndarray:
    """Prior covariance of the residuals of rows ``a`` and rows ``b`` (noise excluded)."""
    out = np.zeros((len(a), len(b)))
    for level in LEVELS:
        keys_a = np.array([r.key(level) for r in a], dtype=object)
        keys_b = np.array([r.key(level) for r in b], dtype=object)
        same = (keys_a[:, None] == keys_b[None, :]).astype(float)
        out += components.prior_sd(level) ** 2 * same
        if level == "deployment" and components.curve > 0:
            xa = np.array([r.log_batch for r in a])[:, None]
            xb = np.array([r.log_batch for r in b])[None, :]
            out += components.curve ** 2 * same * np.exp(-((xa - xb) ** 2) / (2 * components.length ** 2))
    return out


@dataclass
class Posterior:
    """Posterior of one quantity given calibration runs: the runs, K^-1 r and K^-1."""

    rows: list[RowKeys]
    alpha: np.ndarray  # K^-1 r
    k_inv: np.ndarray
    components: Components

    def shift(self, targets: list[RowKeys]) -> tuple[np.ndarray, np.ndarray]:
        """(posterior mean of the log residual, its predictive variance incl. run noise) for target rows."""
        cross = covariance(targets, self.rows, self.components)
        mean = cross @ self.alpha
        prior = self.components.prior_variance() - self.components.noise ** 2
        variance = prior - np.einsum("ij,jk,ik->i", cross, self.k_inv, cross) + self.components.noise ** 2
        return mean, np.maximum(variance, self.components.noise ** 2)

    def evidence(self, level: str, key: str) -> int:
        return sum(1 for row in self.rows if row.key(level) == key)

    def effect(self, level: str, key: str) -> tuple[float, float]:
        """(posterior mean, posterior sd) of one level's effect; (0, prior sd) for a level without runs."""
        prior = self.components.prior_sd(level) ** 2
        indicator = np.array([row.key(level) == key for row in self.rows], dtype=float)
        if level == CURVE or not indicator.any():
            return 0.0, math.sqrt(prior)
        c = prior * indicator
        return float(c @ self.alpha), float(math.sqrt(max(prior - c @ self.k_inv @ c, 0.0)))

    def curve_slope(self, deployment: str) -> tuple[float, float, int] | None:
        """Posterior slope of the deployment's batch curve per doubling of the batch between its smallest and
        largest measured batch: (mean, sd, runs); None with fewer than two distinct batch sizes."""
        xs = sorted({row.log_batch for row in self.rows if row.deployment == deployment})
        if len(xs) < 2:
            return None
        ends = [RowKeys("", deployment, "", "", x) for x in (xs[0], xs[-1])]
        c = self.components
        scale = math.log(2) / (xs[-1] - xs[0])
        same = np.array([row.deployment == deployment for row in self.rows], dtype=float)
        kernel = [c.curve ** 2 * same * np.exp(-((np.array([r.log_batch for r in self.rows]) - e.log_batch) ** 2)
                                               / (2 * c.length ** 2)) for e in ends]
        g = (kernel[1] - kernel[0]) * scale
        prior = 2 * c.curve ** 2 * (1 - math.exp(-((xs[-1] - xs[0]) ** 2) / (2 * c.length ** 2))) * scale ** 2
        runs = int(same.sum())
        return float(g @ self.alpha), float(math.sqrt(max(prior - g @ self.k_inv @ g, 0.0))), runs


def fit_posterior(residuals: np.ndarray, rows: list[RowKeys], components: Components) -> Posterior:
    """Posterior given the runs' log residuals (measured / predicted) and their level keys."""
    k = covariance(rows, rows, components) + components.noise ** 2 * np.eye(len(rows))
    k_inv = np.linalg.inv(k)
    k_inv = (k_inv + k_inv.T) / 2
    return Posterior(list(rows), k_inv @ np.asarray(residuals, float), k_inv, components)
