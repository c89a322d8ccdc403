"""The attribution reference: training means (log space) of each target's physics offset and identity terms.

"The average configuration" that attributions are measured from (``estimator/explain/attribution.py``). Training
stores it in the card (``attribution_reference``), so explaining needs no data at run time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from estimator.learn.family import family_of
from estimator.learn.predictor import OFFSETS


def offset_names(regressor) -> tuple[str, ...]:
    """The physics offsets a target regressor adds: its ensemble members' offsets (``boosters_``), or the single
    ``target.offset`` of a one-booster regressor."""
    boosters = getattr(regressor, "boosters_", None)
    if isinstance(boosters, dict) and boosters:
        return tuple(boosters)
    offsets = getattr(regressor.target, "offsets", None)
    return tuple(offsets) if offsets else (regressor.target.offset,)


def offset_function(names: tuple[str, ...]):
    """The physics offset of a target as one function of the feature frame: the members' mean (log space)."""
    def function(features: pd.DataFrame) -> np.ndarray:
        return np.mean([OFFSETS[name](features) for name in names], axis=0)
    return function


def reference_from_frames(regressors: dict, frames: dict[str, pd.DataFrame],
                          features: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Training means (log space) of each target's physics offset and of the identity terms: the reference
    point ("the average configuration") that attributions are measured from. Stored in the card by training."""
    reference: dict[str, float] = {}
    for name, regressor in regressors.items():
        family = family_of(regressor.target.family).name
        if frames[family].empty:
            continue
        reference[name] = float(np.mean(offset_function(offset_names(regressor))(features[family])))
    if not frames["llm"].empty:
        reference["output_tokens"] = float(np.mean(np.log(frames["llm"]["avg_output_len"].to_numpy(float))))
    if not frames["diffusion"].empty:
        log_batch = float(np.mean(np.log(frames["diffusion"]["batch_size"].to_numpy(float))))
        reference["per_item"], reference["batch_items"] = -log_batch, log_batch
    return reference
