"""Explanations through the public API: what moved a what-if, and the attribution of configurations.

The attribution itself is :mod:`estimator.explain.attribution`, imported inside each function so that the cold
CLI path does not load it; these functions resolve friendly inputs, apply a calibration and check the
configuration first. Re-exported by :mod:`estimator.serve.api` (and :mod:`estimator`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from estimator.catalog.catalog import ArchitectureSpec, Catalog, load_catalog
from estimator.learn.family import family_of
from estimator.learn.prediction import predict_frame
from estimator.learn.predictor import PredictorBundle
from estimator.schema import WhatIf
from estimator.serve import inputs
from estimator.serve.calibration import CalibrationLike, with_calibration
from estimator.validation import ImpossibleConfigurationError, InputError

if TYPE_CHECKING:  # attribution loads in the functions that use it (cold CLI speed)
    from estimator.explain.attribution import ChangeAttribution

__all__ = ["explain", "explain_change", "explain_configuration"]


def explain_change(whatif: WhatIf, *, predictor: PredictorBundle | None = None,
                   calibration: CalibrationLike = None, catalog: Catalog | None = None,
                   extra_models: dict[str, ArchitectureSpec] | None = None) -> ChangeAttribution | None:
    """What moved between the two sides of a what-if (:func:`estimator.explain.attribution.explain_change`); None
    when either side was not predicted."""
    if whatif.base.status != "ok" or whatif.changed.status != "ok":
        return None
    from estimator.explain.attribution import explain_change as _explain_change

    return _explain_change(whatif.base.configuration.as_row(), whatif.changed.configuration.as_row(),
                           predictor=with_calibration(predictor, calibration, catalog, extra_models),
                                                      catalog=catalog or load_catalog(),
                           extra_models=extra_models)


def explain(configs: pd.DataFrame, *, predictor: PredictorBundle | None = None,
            calibration: CalibrationLike = None, catalog: Catalog | None = None,
            extra_models: dict[str, ArchitectureSpec] | None = None) -> list:
    """Attributions of each configuration's prediction (:func:`estimator.explain.attribution.explain_frame`)."""
    from estimator.explain.attribution import explain_frame

    return explain_frame(configs, predictor=with_calibration(predictor, calibration, catalog, extra_models),
                         catalog=catalog or load_catalog(), extra_models=extra_models)


def explain_configuration(config: dict, *, quantity: str | None = None, predictor: PredictorBundle | None = None,
                          calibration: CalibrationLike = None,
                          catalog: Catalog | None = None, extra_models: dict[str, ArchitectureSpec] | None = None):
    """The attribution of one configuration given with friendly keys (as :func:`what_if`'s ``base``).

    Args:
        config: ``model``, ``task``, ``gpu`` and optionally ``num_gpus``, ``batch``, ``precision``,
            ``output_tokens``, ``steps``, ``resolution``... Without ``num_gpus``: the fewest GPUs that fit.
        quantity: what to attribute (default energy per token, or per image/video for diffusion).

    Returns:
        :class:`estimator.explain.model.Attribution`: baseline x product of group multipliers = the prediction.
    """
    from estimator.explain.attribution import QUANTITIES, explain_frame

    checked = inputs.normalize(config, "config")
    inputs.check_text(quantity=quantity)
    catalog = catalog or load_catalog()
    bundle = with_calibration(predictor, calibration, catalog, extra_models)
    raw = inputs.with_gpu_count(checked, bundle, catalog, extra_models)
    target, row = inputs.complete(raw, catalog, extra_models)
    family = family_of(target.family)
    if quantity is not None and quantity not in QUANTITIES[family.name]:
        known = ", ".join(QUANTITIES[family.name])
        raise InputError(f"quantity {quantity!r} is not a quantity of {family.name} configurations (known: {known})")
    predicted = predict_frame(pd.DataFrame([row]), bundle, catalog, extra_models)
    if predicted.loc[0, "status"] != "ok":
        raise ImpossibleConfigurationError(str(predicted.loc[0, "reason"]))
    return explain_frame(pd.DataFrame([row]), predictor=bundle, catalog=catalog, extra_models=extra_models,
                         quantity=quantity)[0]
