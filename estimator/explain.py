"""Attribution that mirrors the paper's layered diagnosis: why a configuration costs what it costs.

Every learned target is ``log y = bias + sum_i phi_i + offset(config)``: LightGBM TreeSHAP contributions
``phi_i`` (``pred_contrib=True``), the booster's expected output ``bias``, and the physics prior ``offset``
the booster was trained relative to (see :mod:`estimator.predictor`). Derived quantities are exact sums of
targets in log space (energy per token = log power - log throughput; energy per image = log power + log
latency - log batch), so one attribution is exact in log space:

    log(prediction) = log(baseline) + sum over items of log_contribution

**Baseline** (same for every configuration of a family and quantity): ``exp(sum_t sign_t x (bias_t +
mean_offset_t) + identity reference)``, where ``mean_offset_t`` is the mean physics offset over the training runs
and the identity reference is the training mean of log(output tokens) (energy per request) or of log(batch size)
(diffusion energy per item). It is approximately the geometric mean prediction over the training runs: "the
average configuration". Each **item** is then one of

- a feature group ``layer/factor`` (from :func:`estimator.features.feature_table`, never hard-coded here): the
  sum of its features' TreeSHAP contributions over the quantity's parts (signed);
- a **physics prior** ``offset_t(config) - mean_offset_t`` (e.g. roofline throughput on the reference GPU),
  named explicitly, under the layer/factor of :data:`PHYSICS_ITEMS`;
- an **identity** term of the derived quantity (x output tokens, / batch size), relative to its training mean.

So ``baseline x prod(multipliers) == prediction`` exactly (to float rounding). A what-if
(:func:`explain_change`) subtracts two attributions item by item: the deltas sum exactly to
``log(changed / base)`` because the baseline cancels.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, PrivateAttr

from estimator.catalog import ArchitectureSpec, Catalog, UnknownKeyError, load_catalog
from estimator.features import feature_table, featurize
from estimator.prediction import ConfigurationError, memory_reason, resolve_row
from estimator.predictor import OFFSETS, PredictorBundle

LAYERS = ("algorithm", "software", "hardware", "latent")

#: quantity -> (unit, [(learned target, sign)], identity term or None), per family
QUANTITIES: dict[str, dict[str, tuple[str, list[tuple[str, int]], str | None]]] = {
    "llm": {
        "energy_per_token_joules": ("J/token", [("avg_power_watts", 1), ("output_throughput_tokens_per_sec", -1)],
                                    None),
        "energy_per_request_joules": ("J/request", [("avg_power_watts", 1),
                                                    ("output_throughput_tokens_per_sec", -1)], "output_tokens"),
        "avg_power_watts": ("W (all GPUs)", [("avg_power_watts", 1)], None),
        "output_throughput_tokens_per_sec": ("tokens/s", [("output_throughput_tokens_per_sec", 1)], None),
        "median_itl_ms": ("ms", [("median_itl_ms", 1)], None),
        "tokens_per_sec_per_watt": ("tokens/s/W", [("output_throughput_tokens_per_sec", 1),
                                                   ("avg_power_watts", -1)], None),
    },
    "diffusion": {
        "energy_per_item_joules": ("J/item", [("diffusion_avg_power_watts", 1), ("batch_latency_s", 1)],
                                   "per_item"),
        "batch_latency_s": ("s", [("batch_latency_s", 1)], None),
        "avg_power_watts": ("W (all GPUs)", [("diffusion_avg_power_watts", 1)], None),
        "items_per_sec": ("items/s", [("batch_latency_s", -1)], "batch_items"),
    },
}
DEFAULT_QUANTITY = {"llm": "energy_per_token_joules", "diffusion": "energy_per_item_joules"}

#: physics offset name -> (label, layer, factor); an offset missing here is shown as latent/utilization. A target
#: that is an ensemble over several offsets gets one item, the members' mean offset, labelled with all of them.
PHYSICS_ITEMS = {
    "none": ("physics prior: none", "latent", "utilization"),
    "gpu_tdp": ("physics prior: GPU count x TDP", "hardware", "gpu_count"),
    "roofline_throughput_ref": ("physics prior: roofline throughput on the reference GPU", "latent", "utilization"),
    "roofline_latency_ref": ("physics prior: roofline batch latency on the reference GPU", "latent", "utilization"),
    "per_gpu": ("physics prior: power scales with GPU count", "hardware", "gpu_count"),
    "roofline_throughput": ("physics prior: roofline throughput (expected batch / roofline step)", "latent",
                            "utilization"),
    "roofline_step": ("physics prior: roofline decode step", "latent", "utilization"),
    "roofline_latency": ("physics prior: roofline batch latency", "latent", "utilization"),
}
#: identity terms of derived quantities: name -> (label, layer, factor, sign, column of the resolved config)
IDENTITIES = {
    "output_tokens": ("identity: x output tokens per request", "algorithm", "workload", 1, "avg_output_len"),
    "per_item": ("identity: / items per batch", "software", "batch", -1, "batch_size"),
    "batch_items": ("identity: x items per batch", "software", "batch", 1, "batch_size"),
}
#: for the one-line summary: which configuration knobs a factor speaks for
FACTOR_KNOBS = {
    "model": ("model_id",), "workload": ("task", "avg_output_len", "inference_steps", "num_frames"),
    "batch": ("max_num_seqs", "batch_size"),
    "parallelism": ("tensor_parallel", "expert_parallel", "data_parallel", "ulysses_degree", "ring_degree"),
    "precision": ("weight_precision",), "engine": ("engine",), "gpu": ("gpu_model",), "gpu_count": ("num_gpus",),
}


class FeatureValue(BaseModel):
    """One feature inside a group: its value for this configuration and its log-space contribution."""

    name: str
    value: float
    log_contribution: float


class FactorContribution(BaseModel):
    """One item of the waterfall: a feature group, a physics prior, or an identity term (log space, natural log)."""

    group: str = Field(description="'layer/factor', or a 'physics prior: ...' / 'identity: ...' label")
    layer: str
    factor: str
    kind: str = Field(description="'learned' (TreeSHAP), 'physics' (offset) or 'identity' (exact term)")
    log_contribution: float
    multiplier: float = Field(description="exp(log_contribution): the factor this item multiplies by")
    top_features: list[FeatureValue] = Field(default_factory=list, description="largest |log| first (3 at most)")
    inputs: dict[str, float] = Field(default_factory=dict, description="physics prior: the features it reads")
    _features: list[FeatureValue] = PrivateAttr(default_factory=list)


class PartAttribution(BaseModel):
    """One learned target inside a derived quantity (e.g. power, or throughput entering with sign -1)."""

    target: str
    sign: int = Field(description="+1 multiplies the quantity, -1 divides it")
    baseline: float = Field(description="exp(bias + mean physics offset), in the target's units")
    prediction: float = Field(description="the target's prediction, in its units")
    physics_offset: str = Field(description="'+'-joined offset names; an ensemble's prior is their mean")
    items: list[FactorContribution] = Field(description="unsigned: they sum to log(prediction / baseline)")


class Attribution(BaseModel):
    """Why one configuration is predicted to cost what it costs (see the module docstring for the algebra)."""

    configuration: dict[str, Any] = Field(description="resolved configuration (catalog keys, defaults filled)")
    family: str = ""
    quantity: str = ""
    unit: str = ""
    status: str = "ok"
    reason: str = ""
    warnings: list[str] = Field(default_factory=list)
    baseline: float | None = Field(default=None, description="the average configuration, see module docstring")
    baseline_definition: str = ""
    prediction: float | None = None
    log_ratio: float | None = Field(default=None, description="log(prediction / baseline) = sum of items")
    items: list[FactorContribution] = Field(default_factory=list, description="layer/factor groups + priors")
    by_layer: list[FactorContribution] = Field(default_factory=list)
    by_factor: list[FactorContribution] = Field(default_factory=list)
    parts: list[PartAttribution] = Field(default_factory=list)
    summary: str = ""
    _feature_row: dict[str, float] = PrivateAttr(default_factory=dict)


class FeatureDelta(BaseModel):
    """One feature's change between two configurations and the change of its signed contribution."""

    name: str
    base_value: float
    changed_value: float
    delta_log: float


class GroupDelta(BaseModel):
    """The change of one item between two attributions (log space and as a multiplier)."""

    group: str
    layer: str
    factor: str
    kind: str
    base_log: float
    changed_log: float
    delta_log: float
    multiplier: float
    top_features: list[FeatureDelta] = Field(default_factory=list)


class ChangeAttribution(BaseModel):
    """A what-if: which groups moved the prediction, summing exactly to log(changed / base)."""

    base: Attribution
    changed: Attribution
    changed_keys: dict[str, list[Any]] = Field(description="key -> [base value, changed value] (resolved)")
    quantity: str
    unit: str
    log_ratio: float = Field(description="log(changed prediction / base prediction) = sum of deltas")
    ratio: float
    deltas: list[GroupDelta]
    by_layer: list[GroupDelta]
    by_factor: list[GroupDelta]
    part_deltas: dict[str, float] = Field(description="target (or identity term) -> signed delta log")
    summary: str = ""


# --------------------------------------------------------------------------------------------------- offsets
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


def _physics_meta(names: tuple[str, ...]) -> tuple[str, str, str]:
    """(label, layer, factor) of a target's physics item."""
    informative = [n for n in names if n != "none"] or list(names)
    label, layer, factor = PHYSICS_ITEMS.get(informative[0], (f"physics prior: {informative[0]}", "latent",
                                                               "utilization"))
    if len(names) > 1:
        label = f"physics prior: mean of {' / '.join(names)}"
    return label, layer, factor


# --------------------------------------------------------------------------------------------------- reference
_REFERENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def reference_from_frames(regressors: dict, frames: dict[str, pd.DataFrame],
                          features: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Training means (log space) of each target's physics offset and of the identity terms: the reference
    point ("the average configuration") that attributions are measured from. Stored in the card by training."""
    reference: dict[str, float] = {}
    for name, regressor in regressors.items():
        family = "diffusion" if regressor.target.family == "diffusion" else "llm"
        if frames[family].empty:
            continue
        reference[name] = float(np.mean(offset_function(offset_names(regressor))(features[family])))
    if not frames["llm"].empty:
        reference["output_tokens"] = float(np.mean(np.log(frames["llm"]["avg_output_len"].to_numpy(float))))
    if not frames["diffusion"].empty:
        log_batch = float(np.mean(np.log(frames["diffusion"]["batch_size"].to_numpy(float))))
        reference["per_item"], reference["batch_items"] = -log_batch, log_batch
    return reference


def attribution_reference(bundle: PredictorBundle, catalog: Catalog) -> tuple[dict[str, float], str]:
    """Training means of each physics offset and identity term (log space), and where they came from.

    Read from ``card["attribution_reference"]`` when training stored it; otherwise computed once per bundle from
    the runs in ``datasets/`` (the rows the predictor was trained on, if the data hash matches). Without data the
    reference is 0 and the baseline is ``exp(bias)`` relative to the raw physics prior.
    """
    stored = bundle.card.get("attribution_reference")
    if stored:
        return dict(stored), "card"
    if bundle in _REFERENCE:
        return _REFERENCE[bundle]
    try:
        from estimator.data import load_runs
        from estimator.training import data_hash, split_by_family

        runs = load_runs(catalog=catalog)
        frames = split_by_family(runs)
        source = "training runs" if data_hash(runs) == bundle.card.get("data_hash") else "current datasets/"
        features = {family: featurize(frame, catalog) for family, frame in frames.items() if not frame.empty}
        reference = reference_from_frames(bundle.regressors, frames, features)
        result = (reference, source)
    except (FileNotFoundError, OSError, ValueError, KeyError) as exc:
        result = ({}, f"unavailable ({exc.__class__.__name__}); baseline = exp(bias)")
    _REFERENCE[bundle] = result
    return result


# --------------------------------------------------------------------------------------------------- building
def _family(arch: ArchitectureSpec) -> str:
    return "diffusion" if arch.kind == "diffusion" else "llm"


def _quantity_for(family: str, quantity: str | None) -> str:
    if quantity is None or quantity not in QUANTITIES[family]:
        if quantity is not None and not any(quantity in q for q in QUANTITIES.values()):
            known = sorted({q for table in QUANTITIES.values() for q in table})
            raise ValueError(f"unknown quantity {quantity!r}; known: {', '.join(known)}")
        return DEFAULT_QUANTITY[family]
    return quantity


@dataclass
class _Group:
    """Internal accumulator of one item: its metadata, log contribution and every feature's (value, log)."""

    layer: str
    factor: str
    kind: str
    log: float = 0.0
    features: dict[str, list[float]] = dc_field(default_factory=dict)
    inputs: dict[str, float] = dc_field(default_factory=dict)

    def add(self, sign: int, other: _Group) -> None:
        self.log += sign * other.log
        self.inputs.update(other.inputs)
        for name, (value, log) in other.features.items():
            slot = self.features.setdefault(name, [value, 0.0])
            slot[1] += sign * log


def _item(group: str, data: _Group) -> FactorContribution:
    features = [FeatureValue(name=n, value=float(v), log_contribution=float(c)) for n, (v, c) in data.features.items()]
    features.sort(key=lambda f: -abs(f.log_contribution))
    item = FactorContribution(group=group, layer=data.layer, factor=data.factor, kind=data.kind,
                              log_contribution=float(data.log), multiplier=math.exp(data.log),
                              top_features=features[:3], inputs=data.inputs)
    item._features = features
    return item


def _layer_rank(layer: str) -> int:
    return LAYERS.index(layer) if layer in LAYERS else len(LAYERS)


def _ordered(groups: dict[str, _Group]) -> list[FactorContribution]:
    """Items in layer order; within a layer learned groups first (feature-table order), then priors/identities."""
    names = sorted(groups, key=lambda g: (_layer_rank(groups[g].layer), groups[g].kind != "learned"))
    return [_item(name, groups[name]) for name in names]


def _rollup(items: list[FactorContribution], key: str) -> list[FactorContribution]:
    """Sum items by layer or by factor (physics and identity items included in theirs)."""
    totals: dict[str, _Group] = {}
    for item in items:
        name = getattr(item, key)
        slot = totals.setdefault(name, _Group(item.layer, "*" if key == "layer" else item.factor, "total"))
        slot.log += item.log_contribution
    order = sorted(totals, key=lambda n: _layer_rank(totals[n].layer))
    return [_item(n, totals[n]) for n in order]


def _target_groups(values: np.ndarray, phi: np.ndarray, offset: float, ref: float, family: str,
                   names: tuple[str, ...], inputs: dict[str, float]) -> dict[str, _Group]:
    """Groups of one learned target (unsigned): its feature groups plus its physics prior."""
    groups: dict[str, _Group] = {}
    for feature, value, contribution in zip(feature_table(family), values, phi, strict=True):
        slot = groups.setdefault(f"{feature.layer}/{feature.factor}", _Group(feature.layer, feature.factor,
                                                                              "learned"))
        slot.log += float(contribution)
        slot.features[feature.name] = [float(value), float(contribution)]
    label, layer, factor = _physics_meta(names)
    groups[label] = _Group(layer, factor, "physics", offset - ref, inputs=inputs)
    return groups


_INPUTS: dict[str, list[str]] = {}


def offset_inputs(names: tuple[str, ...], row: pd.DataFrame) -> list[str]:
    """The feature columns a physics offset reads, found by perturbing each numeric column of a 1-row frame
    (so nothing here names features; cached per offset)."""
    key = "+".join(names)
    if key not in _INPUTS:
        function = offset_function(names)
        base = float(function(row)[0])
        found = []
        for column in row.columns:
            if not pd.api.types.is_numeric_dtype(row[column]):
                continue
            bumped = row.copy()
            bumped[column] = bumped[column].astype(float) * 1.25 + 0.5
            with np.errstate(all="ignore"):
                value = float(function(bumped)[0])
            if not math.isclose(value, base, rel_tol=0, abs_tol=1e-12):
                found.append(column)
        _INPUTS[key] = found
    return _INPUTS[key]


def _shapley(function, x: pd.DataFrame, y: pd.DataFrame, inputs: list[str]) -> dict[str, float]:
    """Exact Shapley split of ``function(y) - function(x)`` over ``inputs`` (2^k evaluations, k small)."""
    k = len(inputs)
    hybrids = pd.concat([x] * (2 ** k), ignore_index=True)
    for mask in range(2 ** k):
        for bit, name in enumerate(inputs):
            if mask >> bit & 1:
                hybrids.loc[mask, name] = y[name].iloc[0]
    values = function(hybrids)
    shares = dict.fromkeys(inputs, 0.0)
    for bit, name in enumerate(inputs):
        for mask in range(2 ** k):
            if mask >> bit & 1:
                continue
            size = bin(mask).count("1")
            weight = math.factorial(size) * math.factorial(k - size - 1) / math.factorial(k)
            shares[name] += weight * float(values[mask | 1 << bit] - values[mask])
    return shares


def _attribute_family(rows: list[tuple[int, dict]], family: str, quantity: str | None, bundle: PredictorBundle,
                      catalog: Catalog, extra_models: dict[str, ArchitectureSpec],
                      warnings: dict[int, list[str]], out: dict[int, Attribution]) -> None:
    frame = pd.DataFrame([values for _, values in rows], index=[p for p, _ in rows])
    features = featurize(frame, catalog, extra_models)
    names = [f.name for f in feature_table(family)]
    reference, source = attribution_reference(bundle, catalog)
    quantity = _quantity_for(family, quantity)
    unit, part_specs, identity = QUANTITIES[family][quantity]
    matrix = features[names].to_numpy(float)
    per_target = {}
    for target, _ in part_specs:
        regressor = bundle.regressors[target]
        phi, bias, offset = regressor.contributions(features)
        names = offset_names(regressor)
        inputs = offset_inputs(names, features.iloc[:1])
        bound = (regressor.bound_adjustment(features) if hasattr(regressor, "bound_adjustment")
                 else np.zeros(len(features)))
        per_target[target] = (phi, bias, offset, bundle.predict_log(target, features), names,
                              features[inputs].to_numpy(float), inputs, bound)
    for row_index, (position, values) in enumerate(rows):
        parts = []
        combined: dict[str, _Group] = {}
        baseline_log = prediction_log = 0.0
        for target, sign in part_specs:
            phi, bias, offset, predicted_log, offset_name, input_values, inputs, bound = per_target[target]
            ref = reference.get(target, 0.0)
            groups = _target_groups(matrix[row_index], phi[row_index], float(offset[row_index]), ref, family,
                                    offset_name, dict(zip(inputs, map(float, input_values[row_index]), strict=True)))
            if abs(float(bound[row_index])) > 1e-12:  # a physical bound (e.g. power <= GPUs x TDP) binds
                spec = bundle.regressors[target].target
                limit = f"{target} <= {spec.ceiling}" if spec.ceiling else f"{target} >= {spec.floor}"
                groups[f"physical bound: {limit}"] = _Group("latent", "utilization", "physics",
                                                            float(bound[row_index]))
            for name, group in groups.items():
                combined.setdefault(name, _Group(group.layer, group.factor, group.kind)).add(sign, group)
            part_baseline = float(bias[row_index]) + ref
            baseline_log += sign * part_baseline
            prediction_log += sign * float(predicted_log[row_index])
            parts.append(PartAttribution(target=target, sign=sign, baseline=math.exp(part_baseline),
                                         prediction=math.exp(float(predicted_log[row_index])),
                                         physics_offset="+".join(offset_name), items=_ordered(groups)))
        if identity:
            label, layer, factor, sign, column = IDENTITIES[identity]
            log_value = sign * math.log(float(values[column]))
            ref = reference.get(identity, 0.0)
            combined[label] = _Group(layer, factor, "identity", log_value - ref,
                                     {column: [float(values[column]), log_value - ref]})
            baseline_log += ref
            prediction_log += log_value
        items = _ordered(combined)
        attribution = Attribution(
            configuration=_plain(values), family=family, quantity=quantity, unit=unit, warnings=warnings[position],
            baseline=math.exp(baseline_log), prediction=math.exp(prediction_log),
            baseline_definition=(f"geometric-mean {quantity} of the average configuration: exp(signed sum of "
                                 f"booster bias + mean physics offset over {source})"),
            log_ratio=prediction_log - baseline_log, items=items, by_layer=_rollup(items, "layer"),
            by_factor=_rollup(items, "factor"), parts=parts)
        attribution.summary = summarize(attribution)
        attribution._feature_row = features.loc[position].to_dict()
        out[position] = attribution


def _plain(values: dict) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _resolve_context(predictor, catalog):
    if predictor is None:
        from estimator.api import load_predictor

        predictor = load_predictor()
    return predictor, catalog or load_catalog()


def explain_frame(configs: pd.DataFrame, *, predictor: PredictorBundle | None = None, catalog: Catalog | None = None,
                  extra_models: dict[str, ArchitectureSpec] | None = None,
                  quantity: str | None = None) -> list[Attribution]:
    """Attribute the prediction of every configuration row to layers, latent factors and physics priors.

    Args:
        configs: one row per configuration, the same columns as :func:`estimator.api.predict_frame` (aliases
            allowed; blanks mean "as the engine would").
        predictor: a loaded bundle (default: ``models/predictors/default``).
        catalog: catalogs (default: ``models/catalog``).
        extra_models: model descriptions not in the catalog, keyed by id.
        quantity: what to explain; LLM default ``energy_per_token_joules`` (J/token), diffusion default
            ``energy_per_item_joules`` (J per image or video). A quantity of the other family falls back to the
            row family's default. See :data:`QUANTITIES`.

    Returns:
        One :class:`Attribution` per row, in order. A row that cannot be predicted (unknown name, does not fit
        in memory) has ``status="error"``, a ``reason`` and no items; it never aborts the frame.
    """
    bundle, catalog = _resolve_context(predictor, catalog)
    extra_models = extra_models or {}
    out: dict[int, Attribution] = {}
    by_family: dict[str, list[tuple[int, dict]]] = {"llm": [], "diffusion": []}
    warnings: dict[int, list[str]] = {}
    for position, raw in enumerate(configs.to_dict("records")):
        try:
            row = resolve_row(raw, catalog, extra_models, bundle)
            why = memory_reason(row.arch, row.values, catalog)
            if why:
                raise ConfigurationError(why)
        except (ConfigurationError, UnknownKeyError) as exc:
            out[position] = Attribution(configuration=_plain(raw), status="error", reason=str(exc))
            continue
        family = _family(row.arch)
        by_family[family].append((position, row.values))
        warnings[position] = list(row.warnings)
    for family, rows in by_family.items():
        if rows:
            _attribute_family(rows, family, quantity, bundle, catalog, extra_models, warnings, out)
    return [out[p] for p in range(len(configs))]


def explain_change(base: dict, changed: dict, *, predictor: PredictorBundle | None = None,
                   catalog: Catalog | None = None, extra_models: dict[str, ArchitectureSpec] | None = None,
                   quantity: str | None = None) -> ChangeAttribution:
    """What-if attribution: which groups moved the prediction from ``base`` to ``changed``, and by how much.

    Args:
        base: one configuration (same keys as a :func:`explain_frame` row).
        changed: the changes, applied on top of ``base`` (a full configuration works too); a key set to None
            falls back to the engine default.
        predictor, catalog, extra_models, quantity: as in :func:`explain_frame`.

    Returns:
        A :class:`ChangeAttribution` whose deltas sum exactly to ``log(changed / base)`` of the predictions.

    Raises:
        ValueError: either configuration cannot be predicted, or the two are of different families.
    """
    bundle, catalog = _resolve_context(predictor, catalog)
    merged = {**base, **changed}
    frame = pd.DataFrame([base, merged])
    first, second = explain_frame(frame, predictor=bundle, catalog=catalog, extra_models=extra_models,
                                  quantity=quantity)
    for name, attribution in (("base", first), ("changed", second)):
        if attribution.status != "ok":
            raise ValueError(f"{name} configuration cannot be predicted: {attribution.reason}")
    if first.family != second.family or first.quantity != second.quantity:
        raise ValueError(f"cannot compare a {first.family} {first.quantity} with a {second.family} "
                         f"{second.quantity}")
    keys = sorted(set(first.configuration) | set(second.configuration))
    changed_keys = {k: [first.configuration.get(k), second.configuration.get(k)] for k in keys
                    if first.configuration.get(k) != second.configuration.get(k)}
    deltas = _deltas(first.items, second.items, with_features=True)
    _split_physics(deltas, first, second)
    change = ChangeAttribution(
        base=first, changed=second, changed_keys=changed_keys, quantity=first.quantity, unit=first.unit,
        log_ratio=second.log_ratio - first.log_ratio, ratio=second.prediction / first.prediction,
        deltas=deltas,
        by_layer=_deltas(first.by_layer, second.by_layer), by_factor=_deltas(first.by_factor, second.by_factor),
        part_deltas=_part_deltas(first, second))
    change.summary = summarize_change(change)
    return change


def _split_physics(deltas: list[GroupDelta], first: Attribution, second: Attribution) -> None:
    """Give each physics-prior delta its inputs (before -> after) and their exact Shapley shares."""
    x = pd.DataFrame([first._feature_row])
    y = pd.DataFrame([second._feature_row])
    by_group = {d.group: d for d in deltas}
    shares: dict[str, dict[str, float]] = {}
    for part in first.parts:
        names = tuple(part.physics_offset.split("+"))
        label = _physics_meta(names)[0]
        inputs = offset_inputs(names, x)
        for name, share in _shapley(offset_function(names), x, y, inputs).items():
            bucket = shares.setdefault(label, {})
            bucket[name] = bucket.get(name, 0.0) + part.sign * share
    for label, split in shares.items():
        delta = by_group.get(label)
        if delta is None:
            continue
        delta.top_features = sorted(
            (FeatureDelta(name=n, base_value=float(x[n].iloc[0]), changed_value=float(y[n].iloc[0]), delta_log=v)
             for n, v in split.items()), key=lambda f: -abs(f.delta_log))


def _part_deltas(first: Attribution, second: Attribution) -> dict[str, float]:
    """Signed change of each learned part, plus the identity term (they sum to the log ratio)."""
    out = {p2.target: p2.sign * math.log(p2.prediction / p1.prediction)
           for p1, p2 in zip(first.parts, second.parts, strict=True)}
    before = {i.group: i.log_contribution for i in first.items if i.kind == "identity"}
    for item in second.items:
        if item.kind == "identity":
            out[item.group] = item.log_contribution - before.get(item.group, 0.0)
    return out


def _deltas(before: list[FactorContribution], after: list[FactorContribution],
            with_features: bool = False) -> list[GroupDelta]:
    a = {i.group: i for i in before}
    b = {i.group: i for i in after}
    out = []
    for group in [*a, *(g for g in b if g not in a)]:
        x, y = a.get(group), b.get(group)
        ref = x or y
        base_log = x.log_contribution if x else 0.0
        changed_log = y.log_contribution if y else 0.0
        features = []
        if with_features and ref.kind != "total":
            fa = {f.name: f for f in (x._features if x else [])}
            fb = {f.name: f for f in (y._features if y else [])}
            for name in [*fa, *(n for n in fb if n not in fa)]:
                u, v = fa.get(name), fb.get(name)
                features.append(FeatureDelta(
                    name=name, base_value=u.value if u else math.nan, changed_value=v.value if v else math.nan,
                    delta_log=(v.log_contribution if v else 0.0) - (u.log_contribution if u else 0.0)))
            features = sorted(features, key=lambda f: -abs(f.delta_log))[:3]
        delta = changed_log - base_log
        out.append(GroupDelta(group=group, layer=ref.layer, factor=ref.factor, kind=ref.kind, base_log=base_log,
                              changed_log=changed_log, delta_log=delta, multiplier=math.exp(delta),
                              top_features=features))
    return out


# --------------------------------------------------------------------------------------------------- text
def _fmt(value: float) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _knobs(configuration: dict, factor: str) -> str:
    parts = []
    for key in FACTOR_KNOBS.get(factor, ()):
        if key in configuration:
            value = configuration[key]
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            elif isinstance(value, float):
                value = _fmt(value)
            parts.append(f"{key}={value}")
    return ", ".join(parts[:3])


def _label(item: FactorContribution, configuration: dict) -> str:
    if item.kind != "learned":
        return item.group
    knobs = _knobs(configuration, item.factor)
    return f"{item.group} ({knobs})" if knobs else item.group


def _x(multiplier: float) -> str:
    return f"x{multiplier:.2f}" if 0.01 <= multiplier < 100 else f"x{multiplier:.3g}"


def summarize(attribution: Attribution, top: int = 5) -> str:
    """One line: the largest items, e.g. ``software/batch (max_num_seqs=128): x0.61 through ...``."""
    if attribution.status != "ok":
        return f"error: {attribution.reason}"
    items = sorted(attribution.items, key=lambda i: -abs(i.log_contribution))[:top]
    pieces = []
    for item in items:
        through = ", ".join(f.name for f in item.top_features[:2]) if item.kind == "learned" else ""
        pieces.append(f"{_label(item, attribution.configuration)}: {_x(item.multiplier)}"
                      + (f" through {through}" if through else ""))
    return (f"{attribution.quantity} {_fmt(attribution.prediction)} {attribution.unit} vs the average "
            f"{_fmt(attribution.baseline)}: " + "; ".join(pieces))


def summarize_change(change: ChangeAttribution, top: int = 5) -> str:
    """One line: ``max_num_seqs 64 -> 256: x0.45 = software/batch x0.7; ...``."""
    keys = ", ".join(f"{k} {_fmt_value(v[0])} -> {_fmt_value(v[1])}" for k, v in change.changed_keys.items())
    items = sorted(change.deltas, key=lambda d: -abs(d.delta_log))[:top]
    pieces = "; ".join(f"{d.group} {_x(d.multiplier)}" for d in items if abs(d.delta_log) > 1e-12)
    return f"{keys or 'no change'}: {change.quantity} {_x(change.ratio)} = {pieces or 'no group moved'}"


def _fmt_value(value: Any) -> str:
    if value is None:
        return "default"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else _fmt(value)
    return str(value)


def _bar(log: float, scale: float, width: int = 20) -> str:
    cells = 0 if scale <= 0 else round(abs(log) / scale * width)
    return ("[red]" + "+" * cells + "[/red]") if log > 0 else ("[green]" + "-" * cells + "[/green]")


def render_attribution(a: Attribution):
    """A rich renderable: the waterfall of one attribution (baseline, each item's multiplier, prediction)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    if a.status != "ok":
        return Text(f"cannot explain: {a.reason}", style="bold red")
    config = a.configuration
    title = " · ".join(str(config.get(k)) for k in ("model_id", "task", "gpu_model") if k in config)
    title += f" · {_fmt_value(config.get('num_gpus'))} GPU(s)"
    table = Table(title=f"{a.quantity} for {title}", show_lines=False)
    for column, justify in (("item", "left"), ("x", "right"), ("running", "right"), ("", "left"),
                            ("through (feature = value: log)", "left")):
        table.add_column(column, justify=justify)
    table.add_row("baseline (average configuration)", "", f"{_fmt(a.baseline)} {a.unit}", "", "")
    running = a.baseline
    scale = max((abs(i.log_contribution) for i in a.items), default=0.0)
    for item in a.items:
        running *= item.multiplier
        through = "; ".join(f"{f.name} = {_fmt(f.value)}: {f.log_contribution:+.2f}" for f in item.top_features)
        table.add_row(_label(item, config), _x(item.multiplier), _fmt(running), _bar(item.log_contribution, scale),
                      through)
    table.add_row("[bold]prediction[/bold]", _x(a.prediction / a.baseline), f"[bold]{_fmt(a.prediction)}[/bold] "
                  f"{a.unit}", "", "")
    layers = "  ".join(f"{i.group} {_x(i.multiplier)}" for i in a.by_layer)
    parts = "  ".join(f"{'x' if p.sign > 0 else '/'} {p.target} {_fmt(p.prediction)} (avg {_fmt(p.baseline)})"
                      for p in a.parts)
    lines = [table, Text(f"by layer: {layers}"), Text(f"parts: {parts}")]
    if a.warnings:
        lines.append(Text("warnings: " + "; ".join(a.warnings), style="yellow"))
    return Group(*lines)


def render_change(c: ChangeAttribution):
    """A rich renderable: which groups moved a what-if prediction, as multipliers that multiply to the ratio."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    keys = ", ".join(f"{k} {_fmt_value(v[0])} -> {_fmt_value(v[1])}" for k, v in c.changed_keys.items())
    table = Table(title=f"{c.quantity}: {_fmt(c.base.prediction)} -> {_fmt(c.changed.prediction)} {c.unit} "
                        f"({_x(c.ratio)}) for {keys or 'no change'}")
    for column, justify in (("group", "left"), ("x", "right"), ("", "left"), ("what moved (before -> after)", "left")):
        table.add_column(column, justify=justify)
    moved = [d for d in c.deltas if abs(d.delta_log) > 1e-9]
    scale = max((abs(d.delta_log) for d in moved), default=0.0)
    for d in sorted(moved, key=lambda d: -abs(d.delta_log)):
        what = "; ".join(f"{f.name} {_fmt(f.base_value)} -> {_fmt(f.changed_value)}: {f.delta_log:+.2f}"
                         for f in d.top_features)
        table.add_row(d.group, _x(d.multiplier), _bar(d.delta_log, scale), what)
    table.add_row("[bold]total[/bold]", f"[bold]{_x(c.ratio)}[/bold]", "", "")
    layers = "  ".join(f"{d.group} {_x(d.multiplier)}" for d in c.by_layer)
    parts = "  ".join(f"{target} {_x(math.exp(delta))}" for target, delta in c.part_deltas.items())
    return Group(table, Text(f"by layer: {layers}"), Text(f"parts (signed): {parts}"))


def plot_attribution(a: Attribution, path: str | Path) -> Path:
    """Write a PNG waterfall of ``a`` (log scale) to ``path``; matplotlib is imported only here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if a.status != "ok":
        raise ValueError(f"cannot plot an attribution with status {a.status}: {a.reason}")
    labels = ["baseline", *(_label(i, a.configuration) for i in a.items), "prediction"]
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(labels) + 1.5))
    running = math.log(a.baseline)
    ax.barh(0, running, color="grey")
    for row, item in enumerate(a.items, start=1):
        start = running
        running += item.log_contribution
        ax.barh(row, item.log_contribution, left=start, color="tab:red" if item.log_contribution > 0 else "tab:green")
    ax.barh(len(labels) - 1, running, color="tab:blue")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"ln {a.quantity} ({a.unit})")
    ax.set_title(a.summary[:110], fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
