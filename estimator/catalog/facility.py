"""Grid carbon intensity by region and data-centre defaults (PUE, host power, idle power), validated catalog data.

``models/catalog/grid_carbon.toml`` holds annual average carbon intensity of electricity generation by country
(gCO2e/kWh, with source and year per entry); ``models/catalog/datacenter.toml`` holds typical PUE values, the
host (non-GPU) power per GPU and the idle power share, each with sources. Both are validated with pydantic
``extra="forbid"`` (a misspelt field fails loudly) and resolved by exact key or explicit alias, never by substring.
These files are not part of the predictor's catalog hash: they do not change any prediction, only the cost and
carbon arithmetic on top of it (:mod:`estimator.serve.costs`).
"""

from __future__ import annotations

import difflib
import tomllib
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from estimator.paths import catalog_dir


class FacilityCatalogError(ValueError):
    """A facility catalog file is malformed, or a name resolves to no region (the message lists close matches)."""


class _Sourced(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[str] = Field(min_length=1)
    notes: str = ""


class GridRegion(_Sourced):
    """Annual average carbon intensity of one region's electricity generation."""

    name: str
    gco2_per_kwh: float = Field(gt=0, lt=2000, description="grams CO2-equivalent per kWh generated")
    year: int = Field(ge=2000, le=2100, description="the year the value describes")


class TypicalPue(_Sourced):
    value: float = Field(ge=1.0, le=3.0)
    year: int


class PueTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: float = Field(ge=1.0, le=3.0)
    typical: dict[str, TypicalPue]


class HostPower(_Sourced):
    watts_per_gpu: float = Field(ge=0, description="non-GPU server power per GPU, W")


class IdlePower(_Sourced):
    fraction_of_tdp: float = Field(gt=0, lt=1, description="idle GPU power / TDP")


class Calendar(_Sourced):
    days_per_month: float = Field(gt=27, lt=32)


class DatacenterDefaults(BaseModel):
    """The contents of ``datacenter.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pue: PueTable
    host: HostPower
    idle: IdlePower
    calendar: Calendar


class VideoFps(_Sourced):
    """Playback rate of a text-to-video model's output and the frame-count step its VAE accepts (4k + 1)."""

    fps: float = Field(gt=0, le=120)
    frame_step: int = Field(default=1, ge=1)


class VideoCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, VideoFps]


def frames_for_seconds(seconds: float, video: VideoFps) -> int:
    """Frames for ``seconds`` of video at the model's fps, on its 4k + 1 grid (at least one step + 1)."""
    raw = seconds * video.fps
    steps = max(round((raw - 1) / video.frame_step), 1)
    return steps * video.frame_step + 1


class LatencyCeiling(_Sourced):
    max_recommended_latency_s: float = Field(gt=0)


class CeilingCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: dict[str, LatencyCeiling]


class GridCatalog(BaseModel):
    """The contents of ``grid_carbon.toml``: regions by key plus lower-case aliases."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regions: dict[str, GridRegion]
    aliases: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _aliases_point_somewhere(self) -> GridCatalog:
        for alias, key in self.aliases.items():
            if key not in self.regions:
                raise ValueError(f"alias {alias!r} -> {key!r}: no such region")
            if alias != alias.lower():
                raise ValueError(f"alias {alias!r} must be lower-case")
        return self

    def resolve(self, name: str) -> str:
        """The exact region key for ``name`` (a key, any case, or an alias such as 'germany', 'deu').

        Raises:
            FacilityCatalogError: no such region; the message lists close matches.
        """
        if name in self.regions:
            return name
        lowered = name.strip().lower()
        for key in self.regions:
            if key.lower() == lowered:
                return key
        if lowered in self.aliases:
            return self.aliases[lowered]
        candidates = {c.lower(): c for c in [*self.regions, *self.aliases]}
        close = [candidates[c] for c in difflib.get_close_matches(lowered, list(candidates), n=5, cutoff=0.6)]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise FacilityCatalogError(f"unknown grid region {name!r}.{hint} (give --grid-gco2-per-kwh for a region "
                                   f"not in models/catalog/grid_carbon.toml)")

    def region(self, name: str) -> GridRegion:
        return self.regions[self.resolve(name)]


def _read(path: Path, model: type[BaseModel]) -> BaseModel:
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise FacilityCatalogError(f"{path}: catalog file missing") from exc
    except tomllib.TOMLDecodeError as exc:
        raise FacilityCatalogError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise FacilityCatalogError(f"{path}: invalid:\n{exc}") from exc


@cache
def load_grid_catalog(directory: str | None = None) -> GridCatalog:
    """Load and validate ``grid_carbon.toml`` (default: the project's ``models/catalog``)."""
    return _read(Path(directory or catalog_dir()) / "grid_carbon.toml", GridCatalog)  # type: ignore[return-value]


@cache
def load_datacenter_defaults(directory: str | None = None) -> DatacenterDefaults:
    """Load and validate ``datacenter.toml`` (default: the project's ``models/catalog``)."""
    return _read(Path(directory or catalog_dir()) / "datacenter.toml",  # type: ignore[return-value]
                 DatacenterDefaults)


@cache
def load_video_catalog(directory: str | None = None) -> VideoCatalog:
    """Load and validate ``video_fps.toml`` (default: the project's ``models/catalog``)."""
    return _read(Path(directory or catalog_dir()) / "video_fps.toml", VideoCatalog)  # type: ignore[return-value]


@cache
def load_latency_ceilings(directory: str | None = None) -> CeilingCatalog:
    """Load and validate ``latency_ceilings.toml`` (per-task product decisions)."""
    return _read(Path(directory or catalog_dir()) / "latency_ceilings.toml",  # type: ignore[return-value]
                 CeilingCatalog)
