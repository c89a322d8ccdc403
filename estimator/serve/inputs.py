"""Configurations between the user's words and the predictor's rows, and prediction rows back to schema objects.

Friendly keys (``model``, ``gpu``, ``batch``, ``resolution``...) become ML.ENERGY column names with every default
filled as the engine would (:func:`complete`); a ``predict_frame`` output row becomes a
:class:`estimator.schema.Prediction` (:func:`prediction_from_row`); a whole result frame becomes the table a
user reads (:func:`output_frame`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import get_args

import numpy as np
import pandas as pd

from estimator.catalog.catalog import Catalog, UnknownKeyError
from estimator.learn.family import DIFFUSION, LLM
from estimator.learn.features import DEFAULT_MAX_NUM_SEQS, is_blank
from estimator.learn.prediction import PHYSICS_ONLY_OUTPUTS
from estimator.learn.prediction import predict_frame as _predict_frame
from estimator.learn.predictor import PredictorBundle
from estimator.schema import Configuration, Metric, Prediction, metrics_for
from estimator.serve import planning
from estimator.validation import InputError, check_number


def split_warnings(text) -> list[str]:
    """``predict_frame``'s '; '-joined warnings back into a list (no single warning contains '; ')."""
    if is_blank(text):
        return []
    return str(text).split("; ")


#: Configuration fields declared as integers (``int`` or ``int | None``), read from the pydantic model's types
INT_FIELDS = frozenset(name for name, field in Configuration.model_fields.items()
                       if field.annotation is int or int in get_args(field.annotation))


def _configuration(row: dict) -> Configuration:
    values = {}
    for name in Configuration.model_fields:
        value = row.get(name)
        if is_blank(value):
            continue
        values[name] = int(value) if name in INT_FIELDS and isinstance(value, float) else value
    return Configuration(**values)


def prediction_from_row(row: dict, family: str) -> Prediction:
    """One ``predict_frame`` output row -> :class:`Prediction` (metrics of the row's family)."""
    metrics = {}
    if row.get("status") == "ok":
        for name in metrics_for(family):
            value = row.get(name)
            if not is_blank(value):
                metrics[name] = Metric(value=float(value), p10=float(row[f"{name}_p10"]),
                                       p90=float(row[f"{name}_p90"]))
    physics_only = {name: float(row[name]) for name in PHYSICS_ONLY_OUTPUTS
                    if row.get("status") == "ok" and not is_blank(row.get(name))}
    return Prediction(configuration=_configuration(row), status=row.get("status", "error"),
                      reason=str(row.get("reason") or ""), warnings=split_warnings(row.get("warnings")),
                      metrics=metrics, physics_only=physics_only, calibration=str(row.get("calibration") or ""))


def unique(items) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


def as_list(value, name: str = "value") -> list[int] | None:
    """One number or a sequence of them -> a list of checked whole numbers (None stays None).

    Raises:
        InputError: a non-number, a fraction, a non-finite or out-of-range value, naming ``name``.
    """
    if value is None:
        return None
    if isinstance(value, Mapping | set | bytes):
        raise InputError(f"{name} must be a number or a list of numbers, got {type(value).__name__}")
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    return [int(check_number(name, v)) for v in values]


def checked_numbers(**numbers) -> dict:
    """Each argument checked against :data:`estimator.validation.BOUNDS` (lists item by item) and converted;
    None stays None. Raises :class:`InputError` naming the first bad argument and value."""
    out = {}
    for name, value in numbers.items():
        if value is None:
            out[name] = None
        elif isinstance(value, list | tuple):
            out[name] = [check_number(name, item) for item in value]
        else:
            out[name] = check_number(name, value)
    return out


def require_text(**values) -> None:
    """Required names (model, task, gpu): present and text."""
    for name, value in values.items():
        if value is None:
            raise InputError(f"{name} is required (a catalog name or alias)")
    check_text(**values)


def check_text(**values) -> None:
    """Names (model, task, gpu, precision, resolution) must be text; None is allowed for optional ones."""
    for name, value in values.items():
        if value is not None and not isinstance(value, str):
            raise InputError(f"{name} must be a name (text), got {type(value).__name__} {value!r}")


#: friendly names accepted by what_if / --set -> ML.ENERGY column names
_KEY_NAMES = {"model": "model_id", "gpu": "gpu_model", "gpus": "num_gpus", "precision": "weight_precision",
              "tp": "tensor_parallel", "ep": "expert_parallel", "dp": "data_parallel",
              "input_tokens": "avg_input_len", "output_tokens": "avg_output_len", "steps": "inference_steps",
              "frames": "num_frames", "ulysses": "ulysses_degree", "ring": "ring_degree"}
_SPECIAL_KEYS = ("batch", "resolution", "height", "width")
_NAME_KEYS = ("model_id", "task", "gpu_model", "weight_precision")


def normalize(config: Mapping, what: str = "configuration") -> dict:
    """Friendly keys -> ML.ENERGY column names, every number checked (:mod:`estimator.validation`).

    Raises:
        InputError: ``config`` is not a mapping, a key is unknown or given twice (``gpus`` and ``num_gpus``), a
            name is not text, or a number is malformed or out of range.
    """
    if not isinstance(config, Mapping):
        raise InputError(f"{what} must be a dict of configuration keys (model, task, gpu, ...), got "
                         f"{type(config).__name__}")
    known = set(Configuration.model_fields) | set(_KEY_NAMES) | set(_SPECIAL_KEYS)
    out: dict = {}
    given: dict[str, str] = {}
    for key, value in config.items():
        if value is None:
            continue
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise InputError(f"unknown configuration key {key!r}.{hint} Known: {', '.join(sorted(known))}")
        name = _KEY_NAMES.get(key, key)
        slot = "batch" if name in ("batch", "max_num_seqs", "batch_size") else name
        if slot in given:
            raise InputError(f"{slot} given more than once ({given[slot]} and {key})")
        given[slot] = key
        if name in _NAME_KEYS or name == "resolution":
            check_text(**{key: value})
        else:
            value = check_number(key, value)
        out[name] = value
    return out


def complete(raw: dict, catalog: Catalog, extra_models: dict | None) -> tuple[planning.Target, dict]:
    """Resolve names and fill every default as the engine would (``num_gpus`` must be set)."""
    missing = [k for k in ("model_id", "task", "gpu_model") if k not in raw]
    if missing:
        raise ValueError(f"the configuration lacks {', '.join(missing)} (give model, task and gpu)")
    target = planning.resolve_target(str(raw["model_id"]), str(raw["task"]), catalog, extra_models)
    gpu = catalog.resolve("gpu", str(raw["gpu_model"]))
    values = dict(raw)
    height, width = values.pop("height", None), values.pop("width", None)
    if "resolution" in values:
        height, width = planning.parse_resolution(str(values.pop("resolution")))
    batch = values.pop("batch", None)
    num_gpus = int(values["num_gpus"])
    if target.is_diffusion:
        video = target.arch.modality == "text-to-video"
        height = height or values.get("video_height" if video else "image_height")
        width = width or values.get("video_width" if video else "image_width")
        row = planning.diffusion_row(target, gpu, num_gpus, int(batch or values.get("batch_size") or 1),
                                     steps=values.get("inference_steps"), height=height, width=width,
                                     frames=values.get("num_frames"), ulysses_degree=values.get("ulysses_degree"),
                                     ring_degree=values.get("ring_degree"))
        if row is None:
            raise ValueError(f"ulysses_degree x ring_degree must equal num_gpus = {num_gpus}")
    else:
        row = planning.llm_row(target, gpu, num_gpus, int(batch or values.get("max_num_seqs")
                                                          or DEFAULT_MAX_NUM_SEQS),
                               precision=values.get("weight_precision"), input_tokens=values.get("avg_input_len"),
                               output_tokens=values.get("avg_output_len"))
        row.update({k: values[k] for k in ("tensor_parallel", "expert_parallel", "data_parallel") if k in values})
    return target, row


def with_gpu_count(raw: dict, bundle: PredictorBundle, catalog: Catalog, extra_models) -> dict:
    """``raw`` with ``num_gpus`` set: as given, else the fewest of 1, 2, 4, 8 that fit (1 when none does: the
    prediction's reason then says why)."""
    if "num_gpus" in raw:
        return raw
    candidates = []
    for count in planning.GPU_COUNTS:
        try:
            candidates.append(complete({**raw, "num_gpus": count}, catalog, extra_models)[1])
        except ValueError:  # e.g. a Ulysses x Ring layout that cannot make this count
            continue
    if candidates:
        predicted = _predict_frame(pd.DataFrame(candidates), bundle, catalog, extra_models)
        for row, status in zip(candidates, predicted["status"], strict=True):
            if status == "ok":
                return {**raw, "num_gpus": row["num_gpus"]}
    return {**raw, "num_gpus": 1}


def output_frame(configs: pd.DataFrame, predictions: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
    """``predict_frame`` results as a user's table: the input rows, then the metrics of the families present (each
    with ``_p10``/``_p90``; energy per item named per image or video), then ``status``, ``reason``, ``warnings``.
    Whole numbers read as floats (blank cells) are given back as integers."""
    modality = []
    for task in predictions["task"]:
        try:
            modality.append(catalog.tasks[catalog.resolve("task", str(task))].modality)
        except UnknownKeyError:  # the row's reason already says so
            modality.append("")
    modality = np.array(modality, dtype=object)
    out = configs.reset_index(drop=True).copy()
    llm = not np.isin(modality, ["text-to-image", "text-to-video"]).all()
    groups = []
    if llm or (modality == "").all():
        groups += [(m, m, None) for m in LLM.outputs]
    if (modality == "text-to-image").any():
        groups.append(("energy_per_item_joules", "energy_per_image_joules", "text-to-image"))
    if (modality == "text-to-video").any():
        groups.append(("energy_per_item_joules", "energy_per_video_joules", "text-to-video"))
    if np.isin(modality, ["text-to-image", "text-to-video"]).any():
        groups += [(m, m, None) for m in DIFFUSION.outputs if m not in ("energy_per_item_joules",)
                   and m not in LLM.outputs]
        if not llm:
            groups.append(("avg_power_watts", "avg_power_watts", None))
    for source, name, only in groups:
        for suffix in ("", "_p10", "_p90"):
            values = predictions[source + suffix].to_numpy(float).copy()
            if only is not None:
                values[modality != only] = np.nan
            out[name + suffix] = values
    for column in ("status", "reason", "warnings", "calibration"):  # calibration: only when one is applied
        if column in predictions:
            out[column] = predictions[column].to_numpy()
    for column in configs.columns:  # blanks make pandas read whole numbers as floats; give them back as written
        values = out[column]
        if values.dtype.kind == "f" and values.notna().any() and (values.dropna() % 1 == 0).all():
            out[column] = values.astype("Int64")
    return out
