"""The predictor card (``card.json``): what was trained on what, how well it does, and how to load it.

One typed, versioned schema, read through :func:`read_card` only. The card carries each target's physics offsets
*and* bounds (ceiling/floor), so a loaded predictor uses the offsets and bounds it was trained with, never a
different copy from code. Version 1 is the layout written since the first trained predictor (its files carry no
``schema_version`` key; that absence means 1). Version 2 (issue 18) adds the task-profile intervals, interval tails
per reading and quantity, and where each evaluation choice was made. Version 3 adds each target's
nearest-neighbour member (``neighbour_offset``; estimator/learn/neighbours.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from estimator.safe_io import write_text_atomic

CARD_FILE = "card.json"
SCHEMA_VERSION = 3


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetCard(_Strict):
    """One learned target as trained: its family, run column, ensemble offsets and physical bounds."""

    family: str
    column: str
    offsets: list[str]
    ceiling: str = Field(default="", description="offset name bounding the prediction from above ('' = none)")
    floor: str = Field(default="", description="offset name bounding the prediction from below ('' = none)")
    monotone: dict[str, int] = Field(default_factory=dict)
    neighbour_offset: str = Field(default="", description="offset of the physics-scaled nearest-neighbour member "
                                  "('<target>__neighbours.json'); '' = none (cards before version 3)")


class FeatureCard(_Strict):
    """One model input as trained: name, diagnosis layer and latent factor."""

    name: str
    layer: str
    factor: str


class Domain(_Strict):
    """What a family's training rows cover (prediction warns outside it)."""

    models: list[str]
    gpus: list[str]
    engines: list[str]
    gpu_engines: list[str] = Field(description="'GPU|engine' pairs measured")
    tasks: list[str]
    precisions: list[str]
    num_gpus: list[int]
    batch_min: int
    batch_max: int
    rows: int
    ranges: dict[str, list[float]] = Field(default_factory=dict, description="input column -> [min, max] trained "
                                           "on (estimator.validation.TRAINED_INPUTS); empty in older cards")


class Card(_Strict):
    """The typed ``card.json``. ``metrics`` and ``baselines`` are nested split -> family -> quantity -> numbers."""

    schema_version: int = SCHEMA_VERSION
    name: str
    targets: list[str]
    target_specs: dict[str, TargetCard]
    features: dict[str, list[FeatureCard]]
    lightgbm_params: dict[str, Any]
    num_rounds: int
    data_hash: str
    catalog_hash: str
    training_rows: dict[str, int]
    sources: list[str]
    domain: dict[str, Domain] = Field(default_factory=dict)
    versions: dict[str, str]
    attribution_reference: dict[str, float] = Field(
        default_factory=dict, description="training means (log space) of each offset and identity term")
    metrics: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    baselines: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    intervals: dict[str, dict[str, list[float]]] = Field(
        default_factory=dict, description="family -> quantity -> [low, high] log(measured / predicted) quantiles")
    intervals_task_profile: dict[str, dict[str, list[float]]] = Field(
        default_factory=dict, description="as intervals, for predictions whose output length comes from the task "
                                          "profile (they carry the output-length uncertainty)")
    interval_tails: dict[str, Any] = Field(
        default_factory=dict, description="v1: family -> tail; v2: reading -> family -> quantity -> residual "
                                          "quantile tail of the interval (0.10 = p10/p90)")
    interval_source: str = ""
    evaluation_choices: dict[str, str] = Field(default_factory=dict, description="what was chosen where")
    calibration_components: dict[str, dict[str, dict[str, float]]] = Field(
        default_factory=dict, description="family -> quantity -> variance components of the calibration model "
        "(estimator/learn/calibration_model.py); empty: models/calibration/components.json is used")

    def domain_of(self, family: str) -> Domain | None:
        """The training domain of a family, or None when the card has none (then nothing warns)."""
        return self.domain.get(family)


def read_card(directory: Path) -> Card:
    """The card of a predictor folder.

    Raises:
        FileNotFoundError: the folder has no card.json (the message says how to make one).
        ValueError: the card does not match this schema, or has a newer schema version.
    """
    path = Path(directory) / CARD_FILE
    if not path.exists():
        raise FileNotFoundError(f"no trained predictor at {directory} (card.json missing); "
                                f"run `joules-estimate train`")
    card = Card.model_validate(json.loads(path.read_text()))
    if card.schema_version > SCHEMA_VERSION:
        raise ValueError(f"{path}: card schema version {card.schema_version} is newer than this version reads "
                         f"({SCHEMA_VERSION}); update joules-estimate")
    return card


def write_card(card: Card, directory: Path) -> Path:
    """Write ``card`` as sorted, indented JSON (version 1 files omit ``schema_version``, as they always did)."""
    data = card.model_dump(exclude={"schema_version"} if card.schema_version == 1 else None)
    path = Path(directory) / CARD_FILE
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
