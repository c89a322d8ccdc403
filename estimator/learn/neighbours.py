"""Physics-scaled nearest neighbours: an ensemble member that predicts from the most similar measured runs.

For a configuration ``x`` the member predicts ``log y = offset(x) + r(x)``, where ``offset`` is a physics prior of
:data:`estimator.learn.predictor.OFFSETS` (GPUs x TDP for power, the roofline for throughput and ITL) and ``r(x)``
is the inverse-distance weighted mean of ``log y - offset`` over the ``k`` training runs nearest to ``x``. The
distance is Euclidean over standardised features *without* the GPU datasheet descriptors
(:data:`EXCLUDED_FEATURES`): the nearest runs are the most similar model, workload, batch and layout on any GPU, and
the hardware enters only through the physics prior. That is how a GPU effect measured on one GPU is carried to
another by physics, and why the member helps where the boosters' trees are flat (a held-out model or family has
near relatives in configuration space even when no tree split isolates them).

Chosen (k = 5, this feature set, weight 1/3 beside the boosters' 2/3) on leave-family-out and leave-GPU-out LLM
energy per token, not on the headline leave-one-model-out split; see benchmarks/transfer-log.md. On diffusion the
member did not help (leave-one-model-out 18.1% either way, leave-GPU-out 7.5% -> 15.0%), so only LLM targets use it.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

#: GPU datasheet descriptors left out of the distance (the physics offset carries the hardware); the GPU count
#: stays in (it is a layout choice)
EXCLUDED_FEATURES = frozenset({"gpu_memory_gb", "gpu_bandwidth_tb_per_sec", "gpu_peak_tflops", "gpu_tdp_watts",
                               "gpu_generation", "gpu_interconnect_gb_per_sec"})
#: names the member's algorithm (cached out-of-fold predictions are keyed by it, benchmarks/calibration_folds.py)
ALGORITHM = "rows-1"
#: neighbours averaged, and the member's weight in the target's log-space ensemble (the boosters share the rest)
NEIGHBOURS_K = 5
NEIGHBOUR_WEIGHT = 1.0 / 3.0
#: added to squared distances before inverting them (a run identical in every feature gets a large, finite weight)
_DISTANCE_FLOOR = 1e-3
#: rows per distance block when predicting (bounds memory at about CHUNK x training rows x 8 bytes)
_CHUNK_ROWS = 4096


class NeighbourMember:
    """k nearest measured runs, residuals relative to one physics offset (scikit-learn style ``fit``/``predict``).

    After :meth:`fit`: ``features_`` (names), ``mean_``/``scale_`` (standardisation), ``rows_`` (standardised
    training matrix), ``residuals_`` (``log y - offset`` per training row, natural log).
    """

    def __init__(self, offset: str, k: int = NEIGHBOURS_K, weight: float = NEIGHBOUR_WEIGHT, centre: float = 0.0):
        self.offset = offset
        self.k = k
        self.weight = weight
        #: training mean of log(y) minus the boosters' mean physics offset (set by the target regressor): the part
        #: of this member's prediction that attribution counts as baseline rather than as "similar runs"
        self.centre = centre

    def fit(self, features: pd.DataFrame, names: list[str], residuals: np.ndarray) -> NeighbourMember:
        """Remember the training runs.

        Args:
            features: training feature frame.
            names: the family's model inputs; :data:`EXCLUDED_FEATURES` are dropped from them.
            residuals: ``log(y) - offset(features)`` per row (natural log, dimensionless).
        """
        self.features_ = [n for n in names if n not in EXCLUDED_FEATURES]
        matrix = features[self.features_].to_numpy(float)
        self.mean_ = matrix.mean(axis=0)
        scale = matrix.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)  # a constant column adds no distance
        self.rows_ = (matrix - self.mean_) / self.scale_
        self.residuals_ = np.asarray(residuals, dtype=float)
        self.fingerprint_ = None
        return self

    def predict_residual(self, features: pd.DataFrame, search_cache: dict | None = None) -> np.ndarray:
        """Inverse-squared-distance weighted mean residual of the ``k`` nearest training runs, per row.

        ``search_cache`` (a dict the caller keeps for one frame of features) shares the neighbour search between
        members with the same training rows and features: the targets of one family usually have them.
        """
        key = (self._fingerprint(), self.k)
        found = search_cache.get(key) if search_cache is not None else None
        if found is None:
            found = self._search(features)
            if search_cache is not None:
                search_cache[key] = found
        nearest, weights = found
        return (self.residuals_[nearest] * weights).sum(axis=1) / weights.sum(axis=1)

    def _search(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(indices of the k nearest training runs, their inverse-squared-distance weights), per row."""
        query = (features[self.features_].to_numpy(float) - self.mean_) / self.scale_
        k = min(self.k, len(self.rows_))
        row_norms = (self.rows_ ** 2).sum(axis=1)
        nearest = np.empty((len(query), k), dtype=np.int64)
        weights = np.empty((len(query), k))
        for start in range(0, len(query), _CHUNK_ROWS):
            block = query[start:start + _CHUNK_ROWS]
            distance = (block ** 2).sum(axis=1)[:, None] + row_norms[None, :] - 2.0 * block @ self.rows_.T
            distance = np.maximum(distance, 0.0)
            chosen = np.argpartition(distance, k - 1, axis=1)[:, :k]
            nearest[start:start + len(block)] = chosen
            weights[start:start + len(block)] = 1.0 / (np.take_along_axis(distance, chosen, axis=1)
                                                       + _DISTANCE_FLOOR)
        return nearest, weights

    def _fingerprint(self) -> str:
        """Identifies the training rows and distance features (equal fingerprints: the same neighbour search)."""
        if getattr(self, "fingerprint_", None) is None:
            digest = hashlib.sha256(json.dumps(self.features_).encode())
            for array in (self.rows_, self.mean_, self.scale_):
                digest.update(np.ascontiguousarray(array, dtype=float).tobytes())
            self.fingerprint_ = digest.hexdigest()[:16]
        return self.fingerprint_

    def to_text(self) -> str:
        """JSON text of the fitted member (floats at 9 significant digits; no pickles)."""
        return json.dumps({"offset": self.offset, "k": self.k, "weight": self.weight, "centre": self.centre,
                           "features": self.features_,
                           "mean": _rounded(self.mean_), "scale": _rounded(self.scale_),
                           "rows": [_rounded(row) for row in self.rows_], "residuals": _rounded(self.residuals_)},
                          separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> NeighbourMember:
        data = json.loads(text)
        member = cls(data["offset"], int(data["k"]), float(data["weight"]), float(data["centre"]))
        member.features_ = list(data["features"])
        member.mean_, member.scale_ = np.array(data["mean"]), np.array(data["scale"])
        member.rows_ = np.array(data["rows"], dtype=float).reshape(-1, len(member.features_))
        member.residuals_ = np.array(data["residuals"], dtype=float)
        return member


def _rounded(values: np.ndarray) -> list[float]:
    return [float(f"{v:.9g}") for v in np.asarray(values, dtype=float)]
