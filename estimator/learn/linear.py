"""A shrunk ridge regression on the physics features: the smooth, extrapolating half of each ensemble member.

Trees cannot extrapolate past the GPUs, sizes and batches they saw; a linear model in log space over the
physics features (roofline step time, bytes per token, feasible batch...) carries a GPU or model effect as a
slope, so it transfers further. Each member predicts ``offset + (1 - w) x booster + w x ridge`` in log space
(a geometric-mean blend; ``w`` = :data:`BLEND_WEIGHT`). The ridge penalty is chosen inside every fit by
generalised cross-validation on that fit's rows only, so no held-out row ever chooses it.

Contributions are exact: ridge prediction = intercept + sum_i coef_i (x_i - mean_i) / scale_i.
"""

from __future__ import annotations

import numpy as np

#: weight of the ridge in each member's log-space blend; frozen before evaluation (equal weight, not tuned):
#: the issue 18 research note found an equal geometric-mean ensemble of boosters and a shrunk ridge better on
#: leave-one-model-out, leave-family-out and leave-GPU-out than either alone
BLEND_WEIGHT = 0.5
#: penalties tried by generalised cross-validation (features are standardised, so these are in units of rows)
LAMBDAS = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)


class ShrunkRidge:
    """Ridge regression on standardised features with a GCV-chosen penalty (scikit-learn style ``fit``).

    ``columns`` (optional) restricts it to those feature positions (the physics latents); the others get no
    weight, so contributions keep the full feature width.
    """

    def __init__(self, columns: list[int] | None = None):
        self.columns = columns

    def fit(self, matrix: np.ndarray, y: np.ndarray) -> ShrunkRidge:
        """Fit on ``matrix`` (rows x features, any units) and a log-space target ``y``."""
        mask = np.zeros(matrix.shape[1], dtype=bool)
        mask[self.columns if self.columns is not None else slice(None)] = True
        self.mean_ = matrix.mean(axis=0)
        scale = matrix.std(axis=0)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        x = np.where(mask & (scale > 1e-12), (matrix - self.mean_) / self.scale_, 0.0)
        self.intercept_ = float(y.mean())
        centred = y - self.intercept_
        u, s, vt = np.linalg.svd(x, full_matrices=False)
        uty = u.T @ centred
        best = None
        for lam in LAMBDAS:
            shrink = s**2 / (s**2 + lam)
            fitted = u @ (shrink * uty)
            dof = shrink.sum()
            gcv = len(y) * float(np.sum((centred - fitted) ** 2)) / max(len(y) - dof, 1.0) ** 2
            if best is None or gcv < best[0]:
                best = (gcv, lam)
        self.lambda_ = best[1]
        self.coef_ = vt.T @ (s / (s**2 + self.lambda_) * uty)
        return self

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Per-row, per-feature additive contributions (log space); their sum + ``intercept_`` = prediction."""
        return (matrix - self.mean_) / self.scale_ * self.coef_

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.intercept_ + self.contributions(matrix).sum(axis=1)

    def to_dict(self) -> dict:
        return {"mean": self.mean_.tolist(), "scale": self.scale_.tolist(), "coef": self.coef_.tolist(),
                "intercept": self.intercept_, "lambda": self.lambda_}

    @classmethod
    def from_dict(cls, data: dict) -> ShrunkRidge:
        ridge = cls()
        ridge.mean_, ridge.scale_ = np.asarray(data["mean"], float), np.asarray(data["scale"], float)
        ridge.coef_ = np.asarray(data["coef"], float)
        ridge.intercept_, ridge.lambda_ = float(data["intercept"]), float(data["lambda"])
        return ridge
