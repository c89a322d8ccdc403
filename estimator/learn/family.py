"""The two predictor families, LLM (text and multimodal LLMs) and diffusion, as one object each.

A :class:`Family` owns what differs between them: the feature table, the learned targets, the measured and the
predicted end metrics, the axes of the time-energy frontier, the batch knob, the default engine, and the exact
identities that derive energy from the learned targets. Code asks ``family_of(kind)`` instead of re-deciding
``"diffusion" if ... else "llm"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from estimator.learn.features import DIFFUSION_FEATURES, LLM_FEATURES, Feature


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


def _llm_end_metrics(log_targets: dict[str, np.ndarray], frame: pd.DataFrame) -> dict[str, np.ndarray]:
    derived = derive_llm(log_targets["avg_power_watts"], log_targets["output_throughput_tokens_per_sec"],
                         frame["avg_output_len"].to_numpy(float))
    derived["median_itl_ms"] = np.exp(log_targets["median_itl_ms"])
    return derived


def _diffusion_end_metrics(log_targets: dict[str, np.ndarray], frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return derive_diffusion(log_targets["diffusion_avg_power_watts"], log_targets["batch_latency_s"],
                            frame["batch_size"].to_numpy(float))


@dataclass(frozen=True)
class Family:
    """Everything that differs between the LLM and the diffusion predictors (see the module docstring)."""

    name: str  # "llm" (LLM and MLLM tasks share it) or "diffusion"
    features: tuple[Feature, ...]
    targets: tuple[str, ...]  # learned target names (estimator/learn/predictor.py TARGETS)
    measured: tuple[str, ...]  # end metrics measured in the runs (run columns of the same name)
    derived_only: tuple[str, ...]  # end metrics only derived (reciprocals), never measured
    energy_metric: str
    latency_metric: str
    throughput_metric: str
    demand_unit: str
    batch_column: str  # the batch knob: vLLM max_num_seqs or the diffusion batch size
    default_engine: str
    end_metrics: Callable[[dict[str, np.ndarray], pd.DataFrame], dict[str, np.ndarray]]

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every end metric predicted, in output-column order."""
        return (*self.measured, *self.derived_only)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


LLM = Family(
    name="llm", features=tuple(LLM_FEATURES),
    targets=("avg_power_watts", "output_throughput_tokens_per_sec", "median_itl_ms"),
    measured=("energy_per_token_joules", "energy_per_request_joules", "avg_power_watts",
              "output_throughput_tokens_per_sec", "median_itl_ms"),
    derived_only=("tokens_per_sec_per_watt",), energy_metric="energy_per_token_joules",
    latency_metric="median_itl_ms", throughput_metric="output_throughput_tokens_per_sec", demand_unit="tokens/s",
    batch_column="max_num_seqs", default_engine="vllm", end_metrics=_llm_end_metrics)
DIFFUSION = Family(
    name="diffusion", features=tuple(DIFFUSION_FEATURES), targets=("batch_latency_s", "diffusion_avg_power_watts"),
    measured=("energy_per_item_joules", "batch_latency_s", "avg_power_watts"), derived_only=("items_per_sec",),
    energy_metric="energy_per_item_joules", latency_metric="batch_latency_s", throughput_metric="items_per_sec",
    demand_unit="items/s", batch_column="batch_size", default_engine="xdit", end_metrics=_diffusion_end_metrics)
FAMILIES = (LLM, DIFFUSION)


def family_of(kind: str) -> Family:
    """The predictor family of a model/task kind or family name: 'diffusion' -> DIFFUSION; 'llm', 'mllm' -> LLM."""
    return DIFFUSION if kind == "diffusion" else LLM


def family_column(task_family: pd.Series) -> pd.Series:
    """Per row of a run frame: the predictor family name of its ``task_family`` ('mllm' rows -> 'llm')."""
    return task_family.where(task_family.eq("diffusion"), "llm")


def feature_table(kind: str) -> list[Feature]:
    """The feature table of a kind's family (model inputs with their layer and latent factor)."""
    return list(family_of(kind).features)


def feature_names(kind: str) -> list[str]:
    """Model input columns of a kind's family ('llm', 'mllm' -> the LLM set, or 'diffusion')."""
    return family_of(kind).feature_names
