"""The calibration part of the public API: fit a calibration on measured runs, or apply one to a predictor.

    >>> from estimator import calibrate, predict_frame
    >>> cal = calibrate(pd.read_csv("my_runs.csv"))           # a few measured runs, ML.ENERGY column names
    >>> cal.save("cal.json")
    >>> predict_frame(configs, calibration=cal)                # or calibration="cal.json"

See :mod:`estimator.learn.calibration` for the model and ``benchmarks/calibration.md`` for what it buys.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from estimator.catalog.catalog import ArchitectureSpec, Catalog, load_catalog
from estimator.learn.calibration import Calibration, as_calibration
from estimator.learn.calibration import calibrate as _calibrate
from estimator.learn.calibration_apply import apply_calibration
from estimator.learn.predictor import PredictorBundle, load_predictor

CalibrationLike = Calibration | str | Path | None


def calibrate(frame: pd.DataFrame, *, predictor: PredictorBundle | None = None, catalog: Catalog | None = None,
              extra_models: dict[str, ArchitectureSpec] | None = None,
              sources: list[str] | None = None) -> Calibration:
    """Fit a calibration of ``predictor`` (default: ``models/predictors/default``) on measured runs.

    Args:
        frame: one row per run, ML.ENERGY column names: the configuration (``model_id, task, gpu_model,
            num_gpus`` and optionally ``weight_precision, max_num_seqs, tensor_parallel, expert_parallel,
            data_parallel, avg_input_len, avg_output_len, engine`` or the diffusion inputs) and any measured columns
            (``energy_per_token_joules, energy_per_request_joules, avg_power_watts`` (W, all GPUs),
            ``output_throughput_tokens_per_sec, median_itl_ms``; diffusion ``batch_latency_s, avg_power_watts,
            energy_per_image_joules, energy_per_video_joules``).
        sources: a label per row for the report of rows left out (default ``row N``).

    Raises:
        estimator.learn.calibration.CalibrationError: no usable run (each row's reason in the message).
    """
    return _calibrate(frame, predictor or load_predictor(), catalog=catalog or load_catalog(),
                      extra_models=extra_models, sources=sources)


def with_calibration(predictor: PredictorBundle | None, calibration: CalibrationLike, catalog: Catalog | None,
                     extra_models: dict[str, ArchitectureSpec] | None) -> PredictorBundle:
    """The predictor (default: ``models/predictors/default``) with a calibration (object or CAL.json path)
    applied; a CAL.json fitted against another predictor is re-fitted from its stored runs (its notes say so)."""
    bundle = predictor or load_predictor()
    if calibration is None:
        return bundle
    loaded = as_calibration(calibration, bundle.uncalibrated(), catalog=catalog or load_catalog(),
                            extra_models=extra_models)
    return bundle if loaded is None else bundle.with_calibration(loaded, apply_calibration)
