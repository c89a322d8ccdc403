"""Where the project's data lives: one place, overridable with JOULES_ESTIMATE_HOME."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The folder holding ``datasets/`` and ``models/`` (the repository root unless overridden)."""
    override = os.environ.get("JOULES_ESTIMATE_HOME")
    return Path(override) if override else Path(__file__).resolve().parent.parent


def datasets_dir() -> Path:
    return project_root() / "datasets"


def catalog_dir() -> Path:
    return project_root() / "models" / "catalog"


def predictors_dir() -> Path:
    return project_root() / "models" / "predictors"
