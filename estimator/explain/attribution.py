"""Attribution that mirrors the paper's layered diagnosis: why a configuration costs what it costs.

Every learned target is ``log y = bias + sum_i phi_i + offset(config)``: LightGBM TreeSHAP contributions
``phi_i`` (``pred_contrib=True``), the booster's expected output ``bias``, and the physics prior ``offset``
the booster was trained relative to (see :mod:`estimator.learn.predictor`). Derived quantities are exact sums of
targets in log space (energy per token = log power - log throughput; energy per image = log power + log
latency - log batch), so one attribution is exact in log space:

    log(prediction) = log(baseline) + sum over items of log_contribution

**Baseline** (same for every configuration of a family and quantity): ``exp(sum_t sign_t x (bias_t +
mean_offset_t) + identity reference)``, where ``mean_offset_t`` is the mean physics offset over the training runs
and the identity reference is the training mean of log(output tokens) (energy per request) or of log(batch size)
(diffusion energy per item). It is approximately the geometric mean prediction over the training runs: "the
average configuration". Each **item** is then one of

- a feature group ``layer/factor`` (from :func:`estimator.learn.family.feature_table`, never hard-coded here): the
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
from typing import Any

import numpy as np
import pandas as pd

from estimator.catalog.catalog import ArchitectureSpec, Catalog, UnknownKeyError, load_catalog
from estimator.explain.model import (
    IDENTITIES,
    LAYERS,
    PHYSICS_ITEMS,
    QUANTITIES,
    Attribution,
    ChangeAttribution,
    FactorContribution,
    FeatureDelta,
    FeatureValue,
    GroupDelta,
    PartAttribution,
)
from estimator.explain.render import summarize, summarize_change
from estimator.learn.family import family_of, feature_table
from estimator.learn.features import featurize
from estimator.learn.prediction import ConfigurationError, memory_reason, resolve_row
from estimator.learn.predictor import PredictorBundle, load_predictor
from estimator.learn.reference import offset_function, offset_names, reference_from_frames


# --------------------------------------------------------------------------------------------------- offsets
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


def attribution_reference(bundle: PredictorBundle, catalog: Catalog) -> tuple[dict[str, float], str]:
    """Training means of each physics offset and identity term (log space), and where they came from.

    Read from the card's ``attribution_reference`` when training stored it; otherwise computed once per bundle from
    the runs in ``datasets/`` (the rows the predictor was trained on, if the data hash matches). Without data the
    reference is 0 and the baseline is ``exp(bias)`` relative to the raw physics prior.
    """
    stored = bundle.card.attribution_reference
    if stored:
        return dict(stored), "card"
    if bundle in _REFERENCE:
        return _REFERENCE[bundle]
    try:
        from estimator.learn.data import load_runs
        from estimator.learn.training import data_hash, split_by_family

        runs = load_runs(catalog=catalog)
        frames = split_by_family(runs)
        source = "training runs" if data_hash(runs) == bundle.card.data_hash else "current datasets/"
        features = {family: featurize(frame, catalog) for family, frame in frames.items() if not frame.empty}
        reference = reference_from_frames(bundle.regressors, frames, features)
        result = (reference, source)
    except (FileNotFoundError, OSError, ValueError, KeyError) as exc:
        result = ({}, f"unavailable ({exc.__class__.__name__}); baseline = exp(bias)")
    _REFERENCE[bundle] = result
    return result


# --------------------------------------------------------------------------------------------------- building
def _quantity_for(family: str, quantity: str | None) -> str:
    if quantity is None or quantity not in QUANTITIES[family]:
        if quantity is not None and not any(quantity in q for q in QUANTITIES.values()):
            known = sorted({q for table in QUANTITIES.values() for q in table})
            raise ValueError(f"unknown quantity {quantity!r}; known: {', '.join(known)}")
        return family_of(family).energy_metric
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


#: the nearest-neighbour member's item (estimator/learn/neighbours.py)
NEIGHBOUR_LABEL = "similar measured runs (nearest neighbours, physics-scaled)"


def _adjustments(regressor, features: pd.DataFrame, search_cache: dict) -> tuple[np.ndarray, np.ndarray]:
    """(physical-bound adjustment, nearest-neighbour share) per row, log space; zeros where a regressor has none.
    ``search_cache`` shares one neighbour search per training set over this frame (see predict_end_metrics)."""
    zeros = np.zeros(len(features))
    bound = (regressor.bound_adjustment(features, search_cache) if hasattr(regressor, "bound_adjustment")
             else zeros)
    neighbour = (regressor.neighbour_adjustment(features, search_cache) if hasattr(regressor, "neighbour_adjustment")
                 else zeros)
    return bound, neighbour


def _adjustment_groups(regressor, adjust: tuple[np.ndarray, np.ndarray], row: int) -> dict[str, _Group]:
    """Items beyond TreeSHAP and the prior: a binding physical bound, and the nearest-neighbour member's share."""
    bound, neighbour = (float(values[row]) for values in adjust)
    groups = {}
    if abs(bound) > 1e-12:  # a physical bound (e.g. power <= GPUs x TDP) binds
        spec = regressor.target
        limit = f"{spec.name} <= {spec.ceiling}" if spec.ceiling else f"{spec.name} >= {spec.floor}"
        groups[f"physical bound: {limit}"] = _Group("latent", "utilization", "physics", bound)
    if abs(neighbour) > 1e-12:
        groups[NEIGHBOUR_LABEL] = _Group("latent", "similarity", "neighbours", neighbour)
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
    search_cache: dict = {}  # one neighbour search per training set for this frame (estimator/learn/neighbours.py)
    for target, _ in part_specs:
        regressor = bundle.regressors[target]
        phi, bias, offset = regressor.contributions(features)
        names = offset_names(regressor)
        inputs = offset_inputs(names, features.iloc[:1])
        per_target[target] = (phi, bias, offset, bundle.predict_log(target, features, search_cache), names,
                              features[inputs].to_numpy(float), inputs,
                              _adjustments(regressor, features, search_cache))
    calibrated = _calibration_items(bundle, family, [values for _, values in rows])
    for row_index, (position, values) in enumerate(rows):
        parts = []
        combined: dict[str, _Group] = {}
        baseline_log = prediction_log = 0.0
        for target, sign in part_specs:
            phi, bias, offset, predicted_log, offset_name, input_values, inputs, adjust = per_target[target]
            ref = reference.get(target, 0.0)
            groups = _target_groups(matrix[row_index], phi[row_index], float(offset[row_index]), ref, family,
                                    offset_name, dict(zip(inputs, map(float, input_values[row_index]), strict=True)))
            groups.update(_adjustment_groups(bundle.regressors[target], adjust, row_index))
            shift = 0.0
            if calibrated:  # the calibration's shift of this target: its own item (estimator/learn/calibration.py)
                label, shifts = calibrated
                shift = float(shifts[target][row_index])
                groups[label[row_index]] = _Group("latent", "calibration", "calibration", shift)
            for name, group in groups.items():
                combined.setdefault(name, _Group(group.layer, group.factor, group.kind)).add(sign, group)
            part_baseline = float(bias[row_index]) + ref
            baseline_log += sign * part_baseline
            prediction_log += sign * (float(predicted_log[row_index]) + shift)
            parts.append(PartAttribution(target=target, sign=sign, baseline=math.exp(part_baseline),
                                         prediction=math.exp(float(predicted_log[row_index]) + shift),
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


def _calibration_items(bundle: PredictorBundle, family: str, rows: list[dict]
                       ) -> tuple[list[str], dict[str, np.ndarray]] | None:
    """(item label per row, log shift per learned target per row) of the bundle's calibration, or None."""
    if bundle.calibration is None:
        return None
    from estimator.learn.calibration import family_row_keys
    from estimator.learn.calibration_apply import levels_note, row_shifts

    keys = [family_row_keys(values, family) for values in rows]
    shifts = row_shifts(bundle.calibration, family, keys)
    by_target = {target: shifts[target.removeprefix("diffusion_")][0] for target in bundle.regressors
                 if target.removeprefix("diffusion_") in shifts}
    return [levels_note(bundle.calibration, family, k) for k in keys], by_target


def _plain(values: dict) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _resolve_context(predictor, catalog):
    if predictor is None:
        predictor = load_predictor()
    return predictor, catalog or load_catalog()


def explain_frame(configs: pd.DataFrame, *, predictor: PredictorBundle | None = None, catalog: Catalog | None = None,
                  extra_models: dict[str, ArchitectureSpec] | None = None,
                  quantity: str | None = None) -> list[Attribution]:
    """Attribute the prediction of every configuration row to layers, latent factors and physics priors.

    Args:
        configs: one row per configuration, the same columns as :func:`estimator.serve.api.predict_frame` (aliases
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
        family = family_of(row.arch.kind).name
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
