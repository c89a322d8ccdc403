"""Trained predictors of time, power and energy: LightGBM boosters on log targets relative to physics offsets.

Each target is an ensemble of boosters, each learning ``log(y) - offset(features)`` for one physics offset
(none; GPU count x TDP; roofline throughput or latency on the configuration's GPU or on a reference GPU); the
prediction is their mean in log space. Members hedge between "hardware scales as the datasheet says" and
"hardware does not matter", which is what transfers to GPUs absent from training. (A shrunk ridge blended into
each member was tried for issue 18 and made every split worse; see benchmarks/transfer-log.md.)
Energy is never predicted directly: energy per token
= power / throughput and energy per image = power x latency / batch, so the three always agree exactly.
Artifacts are LightGBM text files plus ``card.json`` (:mod:`estimator.learn.card`); no pickles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.learn.card import Card, TargetCard, read_card, write_card
from estimator.learn.family import family_of, feature_names
from estimator.learn.neighbours import NeighbourMember
from estimator.learn.trees import TextBooster
from estimator.paths import predictors_dir

#: small trees: with ~40 models, deeper trees memorise model identity instead of physics (chosen on
#: leave-one-model-out / leave-family-out / leave-GPU-out energy error; see benchmarks/accuracy.md). One thread:
#: on 700 rows the boosters gain nothing from two, and OpenMP threads spin-wait on a shared 2-core machine (there a
#: full `joules-estimate train` took 126 CPU s with one thread and over 1,300 CPU s with two)
LGB_PARAMS = {
    "objective": "regression", "learning_rate": 0.05, "num_leaves": 7, "min_data_in_leaf": 6,
    "feature_fraction": 0.7, "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0,
    "verbose": -1, "deterministic": True, "force_row_wise": True, "num_threads": 1, "seed": 7,
}
NUM_ROUNDS = 500
#: file name suffix of a target's nearest-neighbour member (JSON; estimator/learn/neighbours.py)
NEIGHBOURS_SUFFIX = "__neighbours.json"


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
    neighbour_offset: str = ""  # the physics-scaled nearest-neighbour member's offset ('' = no such member)


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
               ceiling="gpu_tdp", neighbour_offset="gpu_tdp"),
    TargetSpec("output_throughput_tokens_per_sec", "llm", "output_throughput_tokens_per_sec",
               ("none", "roofline_throughput_ref", "roofline_throughput"), ceiling="throughput_ceiling",
               neighbour_offset="roofline_throughput"),
    TargetSpec("median_itl_ms", "llm", "median_itl_ms", ("none", "roofline_step"), floor="half_roofline_step",
               neighbour_offset="roofline_step"),
    TargetSpec("p90_itl_ms", "llm", "p90_itl_ms", ("roofline_step",), floor="half_roofline_step",
               neighbour_offset="roofline_step"),
    TargetSpec("batch_latency_s", "diffusion", "batch_latency_s", ("roofline_latency_ref", "roofline_latency"),
               floor="roofline_latency"),
    TargetSpec("diffusion_avg_power_watts", "diffusion", "avg_power_watts", ("gpu_tdp",), ceiling="gpu_tdp"),
)


def targets_for(family: str) -> list[TargetSpec]:
    """Learned targets of a task family ('mllm' shares the LLM predictors)."""
    return [t for t in TARGETS if t.family == family_of(family).name]


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
        self.boosters_ = {}
        for offset in self.target.offsets:
            residual = np.log(y) - OFFSETS[offset](features)
            dataset = lgb.Dataset(matrix, residual, feature_name=names, free_raw_data=False)
            self.boosters_[offset] = lgb.train(params, dataset, num_boost_round=self.num_rounds)
        self.neighbours_ = None
        if self.target.neighbour_offset:
            log_y = np.log(y)
            member = NeighbourMember(self.target.neighbour_offset)
            member.fit(features, names, log_y - OFFSETS[member.offset](features))
            member.centre = float(np.mean(log_y - self._mean_offset(features)))
            self.neighbours_ = member
        return self

    def _mean_offset(self, features: pd.DataFrame) -> np.ndarray:
        return np.mean([OFFSETS[o](features) for o in self.boosters_], axis=0)

    def _neighbour_log(self, features: pd.DataFrame, search_cache: dict | None = None) -> np.ndarray:
        member = self.neighbours_
        return member.predict_residual(features, search_cache) + OFFSETS[member.offset](features)

    def predict_log(self, features: pd.DataFrame, search_cache: dict | None = None) -> np.ndarray:
        """Natural log of the prediction: the members' mean, held inside the target's physical bounds.

        ``search_cache``: a dict kept by the caller for this one ``features`` frame, so that the targets' neighbour
        members share one search (:meth:`estimator.learn.neighbours.NeighbourMember.predict_residual`)."""
        matrix = self._matrix(features)
        members = [b.predict(matrix) + OFFSETS[o](features) for o, b in self.boosters_.items()]
        raw = np.mean(members, axis=0)
        if self.neighbours_ is not None:
            weight = self.neighbours_.weight
            raw = (1.0 - weight) * raw + weight * self._neighbour_log(features, search_cache)
        return self._bounded(features, raw)

    def _bounded(self, features: pd.DataFrame, raw: np.ndarray) -> np.ndarray:
        if self.target.ceiling:
            raw = np.minimum(raw, OFFSETS[self.target.ceiling](features))
        if self.target.floor:
            raw = np.maximum(raw, OFFSETS[self.target.floor](features))
        return raw

    def bound_adjustment(self, features: pd.DataFrame, search_cache: dict | None = None) -> np.ndarray:
        """log(bounded / unbounded) prediction: 0 unless a physical bound binds (see :data:`TARGETS`)."""
        contrib, bias, offset = self.contributions(features)
        raw = contrib.sum(axis=1) + bias + offset + self.neighbour_adjustment(features, search_cache)
        return self._bounded(features, raw) - raw

    def neighbour_adjustment(self, features: pd.DataFrame, search_cache: dict | None = None) -> np.ndarray:
        """log-space share of the nearest-neighbour member beyond its baseline: ``w (r + offset_nn - mean offset
        - centre)`` (0 without the member); see :mod:`estimator.learn.neighbours`."""
        member = self.neighbours_
        if member is None:
            return np.zeros(len(features))
        return member.weight * (self._neighbour_log(features, search_cache) - self._mean_offset(features)
                                - member.centre)

    def contributions(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(per-feature TreeSHAP contributions, bias, physics offset) of the boosters, in log space. With
        :meth:`neighbour_adjustment` they sum exactly to :meth:`predict_log` minus :meth:`bound_adjustment` (zero
        unless a physical bound binds). The offset is the boosters' mean prior; with a nearest-neighbour member of
        weight w, contributions are scaled by (1 - w) and the bias gains w x the member's centre."""
        matrix = self._matrix(features)
        contribs, biases, offsets = [], [], []  # unbounded; see bound_adjustment
        for offset, booster in self.boosters_.items():
            contrib = booster.predict(matrix, pred_contrib=True)
            contribs.append(contrib[:, :-1])
            biases.append(contrib[:, -1])
            offsets.append(OFFSETS[offset](features))
        contrib, bias, offset = np.mean(contribs, axis=0), np.mean(biases, axis=0), np.mean(offsets, axis=0)
        if self.neighbours_ is not None:
            weight = self.neighbours_.weight
            contrib, bias = (1.0 - weight) * contrib, (1.0 - weight) * bias + weight * self.neighbours_.centre
        return contrib, bias, offset

    def to_texts(self) -> dict[str, str]:
        return {offset: booster.model_to_string() for offset, booster in self.boosters_.items()}

    @classmethod
    def from_texts(cls, target: TargetSpec, texts: dict[str, str], neighbours_text: str = "") -> TargetRegressor:
        """A fitted regressor from its boosters' LightGBM texts (:class:`estimator.learn.trees.TextBooster`: LightGBM
        is imported only when a frame is large or TreeSHAP contributions are asked for) and its neighbour JSON."""
        regressor = cls(target)
        regressor.boosters_ = {offset: TextBooster(text) for offset, text in texts.items()}
        regressor.neighbours_ = NeighbourMember.from_text(neighbours_text) if neighbours_text else None
        return regressor


def predict_end_metrics(regressors: dict[str, TargetRegressor], features: pd.DataFrame, frame: pd.DataFrame,
                        family: str) -> dict[str, np.ndarray]:
    """End metrics (natural units) for rows of one family: learned targets plus the family's exact identities.

    ``frame`` supplies the workload terms of the identities (``avg_output_len`` for LLMs, ``batch_size`` for
    diffusion).
    """
    spec = family_of(family)
    search_cache: dict = {}  # one neighbour search per distinct training set, shared by the targets of this frame
    return spec.end_metrics({name: regressors[name].predict_log(features, search_cache) for name in spec.targets
                             if name in regressors}, frame)


class PredictorMismatchError(ValueError):
    """A saved predictor does not match this version's features (it must be retrained)."""


class PredictorBundle:
    """All target regressors plus the card (what was trained on what, interval calibration, bounds)."""

    def __init__(self, regressors: dict[str, TargetRegressor], card: Card, calibration=None, apply_calibration=None):
        self.regressors = regressors
        self.card = card
        #: an estimator.learn.calibration.Calibration applied to every prediction (None: the predictor as trained)
        self.calibration = calibration
        # the step that applies it (estimator.learn.calibration_apply.apply_calibration), handed in by the layer
        # that calibrates so that prediction, below the calibration modules, never imports them
        self._apply_calibration = apply_calibration

    def with_calibration(self, calibration, apply_calibration) -> PredictorBundle:
        """The same predictor with ``calibration`` applied to its predictions (a new bundle; this one unchanged).

        Args:
            calibration: an ``estimator.learn.calibration.Calibration``.
            apply_calibration: ``(out, configs, calibration, uncalibrated_bundle, catalog, extra_models) -> out``,
                i.e. ``estimator.learn.calibration_apply.apply_calibration``.
        """
        return PredictorBundle(self.regressors, self.card, calibration, apply_calibration)

    def uncalibrated(self) -> PredictorBundle:
        return self if self.calibration is None else PredictorBundle(self.regressors, self.card)

    def calibrate_output(self, out, configs, catalog, extra_models):
        """``out`` (predict_frame's frame) with this bundle's calibration applied; unchanged without one."""
        if self.calibration is None:
            return out
        return self._apply_calibration(out, configs, self.calibration, self.uncalibrated(), catalog, extra_models)

    @property
    def intervals(self) -> dict[str, dict[str, list[float]]]:
        """Per family and derived quantity: [low, high] log(measured / predicted) quantiles of the calibrated
        80%-coverage interval (see :func:`estimator.learn.holdout.choose_tail`)."""
        return self.card.intervals

    def predict_log(self, target: str, features: pd.DataFrame, search_cache: dict | None = None) -> np.ndarray:
        return self.regressors[target].predict_log(features, search_cache)

    def save(self, directory: Path) -> None:
        """Write one LightGBM text file per target member (``<target>__<offset>.txt``) and card.json."""
        directory.mkdir(parents=True, exist_ok=True)
        for stale in [*directory.glob("*.txt"), *directory.glob(f"*{NEIGHBOURS_SUFFIX}")]:
            stale.unlink()
        for name, regressor in self.regressors.items():
            for offset, text in regressor.to_texts().items():
                (directory / f"{name}__{offset}.txt").write_text(text)
            if regressor.neighbours_ is not None:
                (directory / f"{name}{NEIGHBOURS_SUFFIX}").write_text(regressor.neighbours_.to_text())
        write_card(self.card, directory)

    @classmethod
    def load(cls, directory: Path) -> PredictorBundle:
        """Load a bundle written by :meth:`save`; offsets and bounds come from its card."""
        card = read_card(directory)
        for family, features in card.features.items():
            if [f.name for f in features] != feature_names(family):
                raise PredictorMismatchError(
                    f"the predictor at {directory} was trained on other {family} features than this version "
                    f"computes; retrain it with `joules-estimate train`")
        regressors = {}
        for name in card.targets:
            spec = card.target_specs[name]
            target = TargetSpec(name, spec.family, spec.column, tuple(spec.offsets), dict(spec.monotone),
                                ceiling=spec.ceiling, floor=spec.floor, neighbour_offset=spec.neighbour_offset)
            texts = {offset: (directory / f"{name}__{offset}.txt").read_text() for offset in spec.offsets}
            neighbours = (directory / f"{name}{NEIGHBOURS_SUFFIX}").read_text() if spec.neighbour_offset else ""
            regressors[name] = TargetRegressor.from_texts(target, texts, neighbours)
        return cls(regressors, card)


def target_card(target: TargetSpec) -> TargetCard:
    """How a target is recorded in the card (offsets and bounds travel with the artifact)."""
    return TargetCard(family=target.family, column=target.column, offsets=list(target.offsets),
                      ceiling=target.ceiling, floor=target.floor, monotone=dict(target.monotone),
                      neighbour_offset=target.neighbour_offset)


@cache
def _load_cached(directory: str) -> PredictorBundle:
    return PredictorBundle.load(Path(directory))


def load_predictor(name_or_path: str | Path = "default") -> PredictorBundle:
    """Load a trained predictor bundle by name (under ``models/predictors/``) or path (cached per process)."""
    path = Path(name_or_path)
    if not path.exists():
        path = predictors_dir() / str(name_or_path)
    return _load_cached(str(path.resolve()))


def fit_regressors(features: dict[str, pd.DataFrame], frames: dict[str, pd.DataFrame],
                   targets: list[TargetSpec] | None = None) -> dict[str, TargetRegressor]:
    """Fit every target on its family's rows that measured it (``p90_itl_ms`` is optional in run records).
    ``features``/``frames`` are keyed by 'llm' and 'diffusion'."""
    fitted = {}
    for target in targets or TARGETS:
        frame = frames[target.family]
        y = frame[target.column].to_numpy(float) if target.column in frame else np.array([])
        measured = np.isfinite(y)
        if not measured.any():
            continue
        fitted[target.name] = TargetRegressor(target).fit(features[target.family][measured], y[measured])
    return fitted
