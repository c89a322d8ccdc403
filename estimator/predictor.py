"""Trained predictors of time, power and energy: LightGBM boosters on log targets relative to physics offsets.

Each target is an ensemble of boosters, each learning ``log(y) - offset(features)`` for one physics offset
(none; GPU count x TDP; roofline throughput or latency on the configuration's GPU or on a reference GPU); the
prediction is their mean in log space. Members hedge between "hardware scales as the datasheet says" and
"hardware does not matter", which is what transfers to GPUs absent from training.
Energy is never predicted directly: energy per token
= power / throughput and energy per image = power x latency / batch, so the three always agree exactly.
Artifacts are LightGBM text files plus ``card.json``; no pickles.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.features import feature_names
from estimator.linear_member import BLEND_WEIGHT, ShrunkRidge

#: small trees: with ~40 models, deeper trees memorise model identity instead of physics (chosen on
#: leave-one-model-out / leave-family-out / leave-GPU-out energy error; see benchmarks/accuracy.md)
LGB_PARAMS = {
    "objective": "regression", "learning_rate": 0.05, "num_leaves": 7, "min_data_in_leaf": 6,
    "feature_fraction": 0.7, "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0,
    "verbose": -1, "deterministic": True, "force_row_wise": True, "num_threads": 2, "seed": 7,
}
NUM_ROUNDS = 500


@dataclass(frozen=True)
class TargetSpec:
    """One learned quantity: the run column, and the physics offset (a feature expression) it is relative to."""

    name: str
    family: str  # "llm" (LLM and MLLM) or "diffusion"
    column: str
    offsets: tuple[str, ...]  # one ensemble member per offset function below
    monotone: dict[str, int] = field(default_factory=dict)
    ceiling: str = ""  # physical upper bound (an offset name): the prediction never exceeds it
    floor: str = ""  # physical lower bound (an offset name)


def _zero(features: pd.DataFrame) -> np.ndarray:
    return np.zeros(len(features))


def _gpu_tdp(features: pd.DataFrame) -> np.ndarray:
    return np.log(features["num_gpus"].to_numpy(float) * features["gpu_tdp_watts"].to_numpy(float))


def _batch_log(features: pd.DataFrame) -> np.ndarray:
    return features["log2_expected_batch"].to_numpy(float) * math.log(2)


def _roofline_throughput_ref(features: pd.DataFrame) -> np.ndarray:
    return _batch_log(features) - (features["log_roofline_step_ms_ref"].to_numpy(float) - math.log(1e3))


def _roofline_throughput(features: pd.DataFrame) -> np.ndarray:
    return _batch_log(features) - (features["log_roofline_step_ms"].to_numpy(float) - math.log(1e3))


def _roofline_step(features: pd.DataFrame) -> np.ndarray:
    return features["log_roofline_step_ms"].to_numpy(float)


def _roofline_latency_ref(features: pd.DataFrame) -> np.ndarray:
    return features["log_roofline_latency_s_ref"].to_numpy(float)


def _roofline_latency(features: pd.DataFrame) -> np.ndarray:
    return features["log_roofline_latency_s"].to_numpy(float)


def _throughput_ceiling(features: pd.DataFrame) -> np.ndarray:
    return features["log_throughput_ceiling"].to_numpy(float)


def _half_roofline_step(features: pd.DataFrame) -> np.ndarray:
    return _roofline_step(features) - math.log(2.0)


#: physics offsets (log space), named so the card and the attribution can say which prior a member used
OFFSETS = {"none": _zero, "gpu_tdp": _gpu_tdp, "roofline_throughput_ref": _roofline_throughput_ref,
           "roofline_throughput": _roofline_throughput, "roofline_step": _roofline_step,
           "half_roofline_step": _half_roofline_step, "throughput_ceiling": _throughput_ceiling,
           "roofline_latency_ref": _roofline_latency_ref, "roofline_latency": _roofline_latency}

#: Bounds are physics that holds with margin in every measured run: power <= GPUs x TDP (max 0.99 of it);
#: throughput <= the roofline on the configuration's GPU with prefill counted (max 0.88); median ITL >= half the
#: roofline step (min 0.72 of the step); diffusion latency >= the roofline (min 1.9x). They never bind on the
#: training data; they keep the ensemble's GPU-agnostic members from promising an L4 H100-class numbers.
TARGETS = (
    TargetSpec("avg_power_watts", "llm", "avg_power_watts", ("none", "gpu_tdp"), {"log2_max_num_seqs": 1},
               ceiling="gpu_tdp"),
    TargetSpec("output_throughput_tokens_per_sec", "llm", "output_throughput_tokens_per_sec",
               ("none", "roofline_throughput_ref", "roofline_throughput"), ceiling="throughput_ceiling"),
    TargetSpec("median_itl_ms", "llm", "median_itl_ms", ("none", "roofline_step"), floor="half_roofline_step"),
    TargetSpec("p90_itl_ms", "llm", "p90_itl_ms", ("roofline_step",), floor="half_roofline_step"),
    TargetSpec("batch_latency_s", "diffusion", "batch_latency_s", ("roofline_latency_ref", "roofline_latency"),
               floor="roofline_latency"),
    TargetSpec("diffusion_avg_power_watts", "diffusion", "avg_power_watts", ("gpu_tdp",), ceiling="gpu_tdp"),
)


def targets_for(family: str) -> list[TargetSpec]:
    """Learned targets of a task family ('mllm' shares the LLM predictors)."""
    family = "diffusion" if family == "diffusion" else "llm"
    return [t for t in TARGETS if t.family == family]


class TargetRegressor:
    """An ensemble of LightGBM boosters for one target, one per physics offset (scikit-learn style: ``fit``
    sets the trailing-underscore state ``boosters_``, a dict offset name -> booster)."""

    def __init__(self, target: TargetSpec, params: dict | None = None, num_rounds: int = NUM_ROUNDS):
        self.target = target
        self.params = params
        self.num_rounds = num_rounds

    def _matrix(self, features: pd.DataFrame) -> np.ndarray:
        return features[feature_names(self.target.family)].to_numpy(dtype=float)

    def fit(self, features: pd.DataFrame, y: np.ndarray) -> TargetRegressor:
        """Fit every member on features and the target in natural units (positive)."""
        import lightgbm as lgb

        names = feature_names(self.target.family)
        params = {**LGB_PARAMS, **(self.params or {})}
        if self.target.monotone:
            params["monotone_constraints"] = [self.target.monotone.get(n, 0) for n in names]
        matrix = self._matrix(features)
        self.boosters_, self.linear_ = {}, {}
        for offset in self.target.offsets:
            residual = np.log(y) - OFFSETS[offset](features)
            dataset = lgb.Dataset(matrix, residual, feature_name=names, free_raw_data=False)
            self.boosters_[offset] = lgb.train(params, dataset, num_boost_round=self.num_rounds)
            self.linear_[offset] = ShrunkRidge().fit(matrix, residual)
        return self

    def _blend(self, offset: str) -> float:
        """Ridge weight of a member (0 for members saved without a ridge)."""
        return BLEND_WEIGHT if offset in getattr(self, "linear_", {}) else 0.0

    def predict_log(self, features: pd.DataFrame) -> np.ndarray:
        """Natural log of the prediction: the members' mean, held inside the target's physical bounds. Each
        member is its offset plus a log-space blend of its booster and its ridge (:mod:`estimator.linear_member`)."""
        matrix = self._matrix(features)
        members = []
        for offset, booster in self.boosters_.items():
            w = self._blend(offset)
            learned = (1 - w) * booster.predict(matrix) + (w * self.linear_[offset].predict(matrix) if w else 0.0)
            members.append(learned + OFFSETS[offset](features))
        return self._bounded(features, np.mean(members, axis=0))

    def _bounded(self, features: pd.DataFrame, raw: np.ndarray) -> np.ndarray:
        if self.target.ceiling:
            raw = np.minimum(raw, OFFSETS[self.target.ceiling](features))
        if self.target.floor:
            raw = np.maximum(raw, OFFSETS[self.target.floor](features))
        return raw

    def bound_adjustment(self, features: pd.DataFrame) -> np.ndarray:
        """log(bounded / unbounded) prediction: 0 unless a physical bound binds (see :data:`TARGETS`)."""
        contrib, bias, offset = self.contributions(features)
        raw = contrib.sum(axis=1) + bias + offset
        return self._bounded(features, raw) - raw

    def contributions(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(per-feature TreeSHAP contributions, bias, physics offset) averaged over members, in log space; they
        sum exactly to :meth:`predict_log` plus :meth:`bound_adjustment` (zero unless a physical bound binds)."""
        matrix = self._matrix(features)
        contribs, biases, offsets = [], [], []  # unbounded; see bound_adjustment
        for offset, booster in self.boosters_.items():
            contrib = booster.predict(matrix, pred_contrib=True)
            w = self._blend(offset)
            if w:
                ridge = self.linear_[offset]
                contribs.append((1 - w) * contrib[:, :-1] + w * ridge.contributions(matrix))
                biases.append((1 - w) * contrib[:, -1] + w * ridge.intercept_)
            else:
                contribs.append(contrib[:, :-1])
                biases.append(contrib[:, -1])
            offsets.append(OFFSETS[offset](features))
        return np.mean(contribs, axis=0), np.mean(biases, axis=0), np.mean(offsets, axis=0)

    def to_texts(self) -> dict[str, str]:
        return {offset: booster.model_to_string() for offset, booster in self.boosters_.items()}

    def linear_to_dict(self) -> dict[str, dict]:
        """The members' ridges as JSON-able dicts (kept in card.json; no pickles)."""
        return {offset: ridge.to_dict() for offset, ridge in getattr(self, "linear_", {}).items()}

    @classmethod
    def from_texts(cls, target: TargetSpec, texts: dict[str, str], linear: dict | None = None) -> TargetRegressor:
        import lightgbm as lgb

        regressor = cls(target)
        regressor.boosters_ = {offset: lgb.Booster(model_str=text) for offset, text in texts.items()}
        regressor.linear_ = {offset: ShrunkRidge.from_dict(data) for offset, data in (linear or {}).items()}
        return regressor


def derive_llm(log_power: np.ndarray, log_throughput: np.ndarray, output_tokens: np.ndarray) -> dict:
    """Energy quantities implied by power (W, all GPUs) and throughput (tokens/s): exact identities."""
    power = np.exp(log_power)
    throughput = np.exp(log_throughput)
    energy_per_token = power / throughput
    return {"avg_power_watts": power, "output_throughput_tokens_per_sec": throughput,
            "energy_per_token_joules": energy_per_token,
            "energy_per_request_joules": energy_per_token * output_tokens,
            "tokens_per_sec_per_watt": throughput / power}


def derive_diffusion(log_power: np.ndarray, log_latency: np.ndarray, batch_size: np.ndarray) -> dict:
    """Energy per image/video = power x batch latency / batch size."""
    power, latency = np.exp(log_power), np.exp(log_latency)
    return {"avg_power_watts": power, "batch_latency_s": latency,
            "energy_per_item_joules": power * latency / batch_size, "items_per_sec": batch_size / latency}


def predict_end_metrics(regressors: dict[str, TargetRegressor], features: pd.DataFrame, frame: pd.DataFrame,
                        family: str) -> dict[str, np.ndarray]:
    """End metrics (natural units) for rows of one family: learned targets plus the exact identities.

    ``frame`` supplies the workload terms of the identities (``avg_output_len`` for LLMs, ``batch_size`` for
    diffusion).
    """
    if family == "diffusion":
        return derive_diffusion(regressors["diffusion_avg_power_watts"].predict_log(features),
                                regressors["batch_latency_s"].predict_log(features),
                                frame["batch_size"].to_numpy(float))
    derived = derive_llm(regressors["avg_power_watts"].predict_log(features),
                         regressors["output_throughput_tokens_per_sec"].predict_log(features),
                         frame["avg_output_len"].to_numpy(float))
    derived["median_itl_ms"] = np.exp(regressors["median_itl_ms"].predict_log(features))
    if "p90_itl_ms" in regressors:  # a tail never below the median (both learned, so hold the order)
        derived["p90_itl_ms"] = np.maximum(np.exp(regressors["p90_itl_ms"].predict_log(features)),
                                           derived["median_itl_ms"])
    return derived


class PredictorMismatchError(ValueError):
    """A saved predictor does not match this version's features (it must be retrained)."""


class PredictorBundle:
    """All target regressors plus the interval calibration and the card (what was trained on what)."""

    def __init__(self, regressors: dict[str, TargetRegressor], card: dict):
        self.regressors = regressors
        self.card = card

    @property
    def intervals(self) -> dict[str, list[float]]:
        """Per derived quantity: [q10, q90] of log(measured / predicted) from leave-one-model-out residuals."""
        return self.card.get("intervals", {})

    def predict_log(self, target: str, features: pd.DataFrame) -> np.ndarray:
        return self.regressors[target].predict_log(features)

    def save(self, directory: Path) -> None:
        """Write one LightGBM text file per target member (``<target>__<offset>.txt``) and card.json."""
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.txt"):
            stale.unlink()
        for name, regressor in self.regressors.items():
            for offset, text in regressor.to_texts().items():
                (directory / f"{name}__{offset}.txt").write_text(text)
        (directory / "card.json").write_text(json.dumps(self.card, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path) -> PredictorBundle:
        """Load a bundle written by :meth:`save`; fails with the path when files are missing."""
        card_path = directory / "card.json"
        if not card_path.exists():
            raise FileNotFoundError(f"no trained predictor at {directory} (card.json missing); "
                                    f"run `joules-estimate train`")
        card = json.loads(card_path.read_text())
        for family, features in card.get("features", {}).items():
            if [f["name"] for f in features] != feature_names(family):
                raise PredictorMismatchError(
                    f"the predictor at {directory} was trained on other {family} features than this version "
                    f"computes; retrain it with `joules-estimate train`")
        by_name = {t.name: t for t in TARGETS}
        regressors = {}
        for name in card["targets"]:
            offsets = card["target_specs"][name]["offsets"]
            texts = {offset: (directory / f"{name}__{offset}.txt").read_text() for offset in offsets}
            regressors[name] = TargetRegressor.from_texts(by_name[name], texts,
                                                          card.get("linear_members", {}).get(name))
        return cls(regressors, card)


def fit_regressors(features: dict[str, pd.DataFrame], frames: dict[str, pd.DataFrame],
                   targets: list[TargetSpec] | None = None) -> dict[str, TargetRegressor]:
    """Fit every target on its family's rows. ``features``/``frames`` are keyed by 'llm' and 'diffusion'."""
    fitted = {}
    for target in targets or TARGETS:
        frame = frames[target.family]
        if frame.empty:
            continue
        fitted[target.name] = TargetRegressor(target).fit(features[target.family],
                                                          frame[target.column].to_numpy(float))
    return fitted
