"""Capacity planning with uncertainty, cost and carbon: the decision inside :func:`estimator.serve.api.plan`.

Steps (each a named function, the arithmetic in :mod:`estimator.serve.planning`, :mod:`estimator.serve.risk` and
:mod:`estimator.serve.costs`):

1. sweep the GPU types x counts x batches and predict them (as ``estimate`` does);
2. :func:`_split_domain` - leave out GPU types without training data for the engine unless extrapolation is
   allowed (then every such deployment is marked ``extrapolated``);
3. qualify on the latency at the chosen confidence (p90 end or point value) and size replicas on the capacity
   at that confidence (p10 end or point value), within any power/GPU budget;
4. :func:`_rank` - the least facility energy per day (GPUs at the load profile, idle replicas, host power, PUE;
   :mod:`estimator.serve.costs`), then alternatives that differ from it (the best of every other GPU type
   and the chosen type's runner-up), each with margin, risk and whether it can be told apart from the next;
5. cost and carbon per deployment (:func:`estimator.serve.costs.fleet_costs`) at the stated load profile (the
   catalog defaults when none is given: full load, 350 W host per GPU, PUE 1.0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from estimator.schema import Deployment, Metric
from estimator.serve import costs as cost_steps
from estimator.serve import planning, risk
from estimator.serve.inputs import prediction_from_row

HOURS_PER_DAY = 24.0


def _split_domain(ok: pd.DataFrame, trained: list[str] | None, allow_extrapolation: bool):
    """(rows kept, GPU types left out, GPU types kept but outside the training data)."""
    outside = risk.outside_domain(sorted(set(ok["gpu_model"])), trained)
    if allow_extrapolation or not outside:
        return ok, [], outside
    return ok[~ok["gpu_model"].isin(outside)], outside, []


def _best(frame: pd.DataFrame, *, demand_given: bool):
    """Label of the least facility energy per day for a demand; otherwise of the most demand served."""
    if frame.empty:
        return None
    keys = ["energy_day_kwh", "total_gpus"] if demand_given else ["_neg_served", "energy_day_kwh"]
    return frame.assign(_neg_served=-frame["demand_served"]).sort_values(keys, kind="stable").index[0]


def _rank(fleets: pd.DataFrame, *, demand_given: bool) -> tuple[object, list]:
    """(chosen label, alternative labels): alternatives exclude the chosen row, one per GPU type (the chosen
    type's runner-up included), best first."""
    chosen = _best(fleets, demand_given=demand_given)
    if chosen is None:
        return None, []
    others = fleets.drop(index=chosen)
    labels = [_best(group, demand_given=demand_given) for _, group in others.groupby("gpu_model", sort=False)]
    ordered = fleets.loc[labels].assign(_neg_served=-fleets.loc[labels, "demand_served"])
    keys = ["energy_day_kwh"] if demand_given else ["_neg_served", "energy_day_kwh"]
    return chosen, list(ordered.sort_values(keys, kind="stable").index)


def _energy(row) -> tuple[float, float, float]:
    return float(row["energy_day_kwh"]), float(row["energy_day_kwh_p10"]), float(row["energy_day_kwh_p90"])


def _deployment(row: dict, target: planning.Target, throughput: str, *, capacity_col: str, latency_col: str,
                extrapolated: bool, distinguishable: bool | None, costs) -> Deployment:
    power_kw = row["fleet_power_watts"] / 1e3
    finite = {k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v))
              for k, v in ((k, row.get(k)) for k in ("latency_margin_pct", "capacity_margin_pct"))}
    return Deployment(
        prediction=prediction_from_row(row, target.family), replicas=int(row["replicas"]),
        total_gpus=int(row["total_gpus"]), capacity_per_replica=float(row[throughput]),
        capacity_total=float(row["capacity_total"]), demand_served=float(row["demand_served"]),
        power_kw=power_kw, power_kw_p10=row["fleet_power_watts_p10"] / 1e3,
        power_kw_p90=row["fleet_power_watts_p90"] / 1e3, energy_per_day_kwh=power_kw * HOURS_PER_DAY,
        throughput_per_watt=float(row["demand_served"]) / row["fleet_power_watts"], extrapolated=extrapolated,
        latency_checked=float(row[latency_col]) if latency_col in row else None,
        capacity_checked_per_replica=float(row[capacity_col]), risk_latency=float(row["risk_latency"]),
        risk_capacity=float(row["risk_capacity"]), risk=float(row["risk"]), distinguishable_from_next=distinguishable,
        costs=costs, **finite)


def _costs(row: dict, target: planning.Target, throughput: str, demand: float | None, inputs, catalog):
    def metric(name):
        return (Metric(value=float(row[name]), p10=float(row[f"{name}_p10"]),
                                      p90=float(row[f"{name}_p90"])))
    per_response = 1.0 if target.is_diffusion else float(row["avg_output_len"])
    peak = demand if demand is not None else float(row["demand_served"])
    return cost_steps.fleet_costs(
        replicas=int(row["replicas"]), gpus_per_replica=int(row["num_gpus"]),
        busy_watts_per_replica=metric("avg_power_watts"), capacity_per_replica=metric(throughput),
        peak_demand=peak, units_per_response=per_response, gpu_tdp_watts=catalog.gpus[row["gpu_model"]].tdp_watts,
        inputs=inputs, tokens=not target.is_diffusion)


def plan_fleet(target: planning.Target, *, predictions: pd.DataFrame, feasible: np.ndarray,
               demand: float | None, limit: float | None, power_budget_kw: float | None, gpu_budget: int | None,
               trained_gpus: list[str] | None, confidence: risk.Confidence = "p90",
               allow_extrapolation: bool = False, max_p90_itl_ms: float | None = None,
               cost_inputs: cost_steps.CostInputs | None = None, catalog=None) -> dict:
    """Choose a deployment from predicted configurations; returns the :class:`Plan` fields this step decides
    (plus the frames ``ok`` and ``within`` and the checked column names, for the caller's reason text).

    Args:
        target: resolved model and task.
        predictions, feasible: the sweep's predictions and the memory-feasibility mask.
        demand: tokens/s (LLM) or items/s (diffusion); None for a budget-only plan.
        limit: latency limit in the latency metric's unit (median ITL ms, or batch latency s).
        power_budget_kw, gpu_budget: fleet limits.
        trained_gpus: GPU types in the predictor's training data for this family (the card's domain).
        confidence: 'p90' (latency p90 <= limit, sized on capacity p10) or 'median' (point values).
        allow_extrapolation: keep GPU types outside the training data (marked ``extrapolated``).
        max_p90_itl_ms: a tail limit on p90 ITL, when the predictor predicts it (``p90_itl_ms``).
        cost_inputs: prices, grid, PUE, host power, load profile (None: the defaults of CostInputs).
    """
    if confidence not in ("median", "p90"):
        raise ValueError(f"confidence must be 'median' or 'p90', got {confidence!r}")
    latency = "batch_latency_s" if target.is_diffusion else "median_itl_ms"
    throughput = "items_per_sec" if target.is_diffusion else "output_throughput_tokens_per_sec"
    lat_col, cap_col = risk.latency_column(latency, confidence), risk.capacity_column(throughput, confidence)
    ok, excluded, outside = _split_domain(predictions[feasible], trained_gpus, allow_extrapolation)
    within = ok if limit is None else ok[ok[lat_col] <= limit]
    if max_p90_itl_ms is not None:
        if "p90_itl_ms" not in within:
            raise ValueError("--max-p90-itl-ms needs a predictor that predicts p90 ITL; this one predicts the "
                             "median ITL only (use --max-itl-ms)")
        within = within[within["p90_itl_ms"] <= max_p90_itl_ms]
    fleets = planning.size_fleet(within, throughput=cap_col, demand=demand, gpu_budget=gpu_budget,
                                 power_budget_watts=None if power_budget_kw is None else power_budget_kw * 1e3)
    fleets = risk.miss_risk(fleets, latency=latency, limit=limit, throughput=throughput, demand=demand)
    fleets = risk.margins(fleets, latency_col=lat_col, limit=limit, capacity_col=cap_col, demand=demand)
    inputs = cost_inputs or cost_steps.CostInputs()
    costs = {label: _costs(fleets.loc[label].to_dict(), target, throughput, demand, inputs, catalog)
             for label in fleets.index}
    fleets = fleets.assign(**{f"energy_day_kwh{suffix}": [getattr(costs[label].energy_per_day_kwh, attr)
                                                          for label in fleets.index]
                              for suffix, attr in (("", "value"), ("_p10", "p10"), ("_p90", "p90"))})
    chosen_label, alternative_labels = _rank(fleets, demand_given=demand is not None)
    order = ([chosen_label] if chosen_label is not None else []) + alternative_labels
    deployments = []
    for position, label in enumerate(order):
        row = fleets.loc[label].to_dict()
        after = order[position + 1] if position + 1 < len(order) else None
        separable = None if after is None else risk.distinguishable(_energy(row), _energy(fleets.loc[after]))
        deployments.append(_deployment(row, target, throughput, capacity_col=cap_col, latency_col=lat_col,
                                       extrapolated=row["gpu_model"] in outside, distinguishable=separable,
                                       costs=costs[label]))
    closest = float(ok[lat_col].min()) if (limit is not None and within.empty and not ok.empty) else None
    return {"chosen": deployments[0] if deployments else None, "alternatives": deployments[1:],
            "excluded_gpus": excluded, "confidence": confidence, "closest_latency": closest,
            "ok": ok, "within": within, "latency_column": lat_col, "capacity_column": cap_col}


def notes(chosen: Deployment | None, alternatives: Sequence[Deployment], excluded: Sequence[str],
          confidence: str) -> list[str]:
    """Lines a person should read next to the plan: the indistinguishable runner-up, left-out and extrapolated
    GPU types, and what the confidence level means."""
    lines = []
    if chosen is not None and chosen.distinguishable_from_next is False and alternatives:
        nxt = alternatives[0].prediction.configuration
        mine, theirs = chosen.costs.energy_per_day_kwh, alternatives[0].costs.energy_per_day_kwh
        lines.append(f"not distinguishable: the chosen deployment's energy per day ({mine.value:.3g} kWh, p10-p90 "
                     f"{mine.p10:.3g}-{mine.p90:.3g}) and the next one's ({nxt.num_gpus} x {nxt.gpu_model}, "
                     f"{theirs.value:.3g} kWh, {theirs.p10:.3g}-{theirs.p90:.3g}) overlap; the ranking between them "
                     f"is within the predictor's error")
    if excluded:
        lines.append(f"left out (no training data for this engine; --allow-extrapolation keeps them, marked): "
                     f"{', '.join(excluded)}")
    marked = sorted({d.prediction.configuration.gpu_model for d in [chosen, *alternatives] if d and d.extrapolated})
    if marked:
        lines.append(f"EXTRAPOLATED (no training data for this engine): {', '.join(marked)}")
    if confidence == "p90":
        lines.append("confidence p90: the latency limit is met by the p90 end of the predicted interval and "
                     "replicas are sized on the p10 end of capacity; risk = chance of missing either, read off "
                     "the p10-p90 intervals (log-normal each side, misses independent)")
    return lines
