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


def cache_dir() -> Path | None:
    """Where derived files that can be rebuilt at any time are kept (parsed boosters, estimator/learn/trees.py):
    ``$JOULES_ESTIMATE_CACHE_DIR`` (an empty value: no cache), else ``$XDG_CACHE_HOME/joules-estimate``, else
    ``~/.cache/joules-estimate``."""
    override = os.environ.get("JOULES_ESTIMATE_CACHE_DIR")
    if override is not None:
        return Path(override) if override else None
    base = os.environ.get("XDG_CACHE_HOME")
    if base:
        return Path(base) / "joules-estimate"
    try:
        return Path.home() / ".cache" / "joules-estimate"
    except RuntimeError:  # no home directory: no cache
        return None
