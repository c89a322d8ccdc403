"""The public Python API (the CLI is a thin layer over it).

    >>> from estimator import predict_frame, load_predictor
    >>> import pandas as pd
    >>> preds = predict_frame(pd.DataFrame([{"model_id": "llama-70b", "task": "chat", "gpu_model": "b200",
    ...                                      "num_gpus": 2, "max_num_seqs": 256}]))
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd

from estimator.catalog import ArchitectureSpec, Catalog, load_catalog
from estimator.paths import predictors_dir
from estimator.prediction import predict_frame as _predict_frame
from estimator.predictor import PredictorBundle


@cache
def _load_cached(directory: str) -> PredictorBundle:
    return PredictorBundle.load(Path(directory))


def load_predictor(name_or_path: str | Path = "default") -> PredictorBundle:
    """Load a trained predictor bundle by name (under ``models/predictors/``) or path (cached per process)."""
    path = Path(name_or_path)
    if not path.exists():
        path = predictors_dir() / str(name_or_path)
    return _load_cached(str(path.resolve()))


def predict_frame(configs: pd.DataFrame, *, predictor: PredictorBundle | None = None,
                  catalog: Catalog | None = None,
                  extra_models: dict[str, ArchitectureSpec] | None = None) -> pd.DataFrame:
    """Predict time, power and energy for every configuration row (see :mod:`estimator.prediction`).

    Args:
        configs: one row per configuration, ML.ENERGY column names (``model_id, task, gpu_model, num_gpus,
            max_num_seqs, ...`` or diffusion's ``batch_size, inference_steps, ...``); names may be aliases.
        predictor: a loaded bundle (default: ``models/predictors/default``).
        catalog: catalogs (default: ``models/catalog``).
        extra_models: model descriptions not in the catalog (e.g. from an HF ``config.json``), keyed by id.

    Returns:
        The rows in order plus ``<metric>``, ``<metric>_p10``, ``<metric>_p90``, ``status``, ``reason``,
        ``warnings``. Energies in joules, power in watts (all GPUs), latency in ms or s as named.
    """
    return _predict_frame(configs, predictor or load_predictor(), catalog or load_catalog(), extra_models)
