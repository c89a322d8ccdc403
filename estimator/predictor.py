"""Trained predictors of time, power and energy: LightGBM boosters on log targets relative to physics offsets.

Each target is learned as ``log(y) - offset(features)``, where the offset is a physics prior (per-GPU power
scale, roofline throughput or latency on a reference GPU). Energy is never predicted directly: energy per token
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

LGB_PARAMS = {
    "objective": "regression", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 4,
    "feature_fraction": 0.8, "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0,
    "verbose": -1, "deterministic": True, "force_row_wise": True, "num_threads": 2, "seed": 7,
}
NUM_ROUNDS = 400


@dataclass(frozen=True)
class TargetSpec:
    """One learned quantity: the run column, and the physics offset (a feature expression) it is relative to."""

    name: str
    family: str  # "llm" (LLM and MLLM) or "diffusion"
    column: str
    offset: str  # name of an offset function below
    monotone: dict[str, int] = field(default_factory=dict)


def _offset_per_gpu(features: pd.DataFrame) -> np.ndarray:
    return np.log(features["num_gpus"].to_numpy(float))


def _offset_roofline_throughput(features: pd.DataFrame) -> np.ndarray:
    batch_log = features["log2_expected_batch"].to_numpy(float) * math.log(2)
    return batch_log - (features["log_roofline_step_ms_ref"].to_numpy(float) - math.log(1e3))


def _offset_roofline_step(features: pd.DataFrame) -> np.ndarray:
    return features["log_roofline_step_ms_ref"].to_numpy(float)


def _offset_roofline_latency(features: pd.DataFrame) -> np.ndarray:
    return features["log_roofline_latency_s_ref"].to_numpy(float)


OFFSETS = {"per_gpu": _offset_per_gpu, "roofline_throughput": _offset_roofline_throughput,
           "roofline_step": _offset_roofline_step, "roofline_latency": _offset_roofline_latency}

TARGETS = (
    TargetSpec("avg_power_watts", "llm", "avg_power_watts", "per_gpu", {"log2_max_num_seqs": 1}),
    TargetSpec("output_throughput_tokens_per_sec", "llm", "output_throughput_tokens_per_sec",
               "roofline_throughput"),
    TargetSpec("median_itl_ms", "llm", "median_itl_ms", "roofline_step"),
    TargetSpec("batch_latency_s", "diffusion", "batch_latency_s", "roofline_latency"),
    TargetSpec("diffusion_avg_power_watts", "diffusion", "avg_power_watts", "per_gpu"),
)


def targets_for(family: str) -> list[TargetSpec]:
    """Learned targets of a task family ('mllm' shares the LLM predictors)."""
    family = "diffusion" if family == "diffusion" else "llm"
    return [t for t in TARGETS if t.family == family]


class TargetRegressor:
    """One LightGBM booster for one target (scikit-learn style: ``fit`` sets trailing-underscore state)."""

    def __init__(self, target: TargetSpec, params: dict | None = None, num_rounds: int = NUM_ROUNDS):
        self.target = target
        self.params = params
        self.num_rounds = num_rounds

    def _matrix(self, features: pd.DataFrame) -> np.ndarray:
        return features[feature_names(self.target.family)].to_numpy(dtype=float)

    def fit(self, features: pd.DataFrame, y: np.ndarray) -> TargetRegressor:
        """Fit on features and the target in natural units (positive)."""
        import lightgbm as lgb

        names = feature_names(self.target.family)
        params = {**LGB_PARAMS, **(self.params or {})}
        if self.target.monotone:
            params["monotone_constraints"] = [self.target.monotone.get(n, 0) for n in names]
        residual = np.log(y) - OFFSETS[self.target.offset](features)
        dataset = lgb.Dataset(self._matrix(features), residual, feature_name=names, free_raw_data=False)
        self.booster_ = lgb.train(params, dataset, num_boost_round=self.num_rounds)
        return self

    def predict_log(self, features: pd.DataFrame) -> np.ndarray:
        """Natural log of the prediction."""
        return self.booster_.predict(self._matrix(features)) + OFFSETS[self.target.offset](features)

    def contributions(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(per-feature TreeSHAP contributions, bias, physics offset), all in log space; they sum exactly to
        :meth:`predict_log`."""
        contrib = self.booster_.predict(self._matrix(features), pred_contrib=True)
        return contrib[:, :-1], contrib[:, -1], OFFSETS[self.target.offset](features)

    @classmethod
    def from_text(cls, target: TargetSpec, text: str) -> TargetRegressor:
        import lightgbm as lgb

        regressor = cls(target)
        regressor.booster_ = lgb.Booster(model_str=text)
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
        """Write one LightGBM text file per target and card.json."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, regressor in self.regressors.items():
            (directory / f"{name}.txt").write_text(regressor.booster_.model_to_string())
        (directory / "card.json").write_text(json.dumps(self.card, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path) -> PredictorBundle:
        """Load a bundle written by :meth:`save`; fails with the path when files are missing."""
        card_path = directory / "card.json"
        if not card_path.exists():
            raise FileNotFoundError(f"no trained predictor at {directory} (card.json missing); "
                                    f"run `joules-estimate train`")
        card = json.loads(card_path.read_text())
        by_name = {t.name: t for t in TARGETS}
        regressors = {name: TargetRegressor.from_text(by_name[name], (directory / f"{name}.txt").read_text())
                      for name in card["targets"]}
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
