"""Side-by-side bars with p10-p90 intervals: what-if before/after, plan alternatives, cost and carbon per day.

:func:`plot_bars` is the one drawing routine (one panel per quantity, one bar per option); the other functions
only pick what goes into it from :mod:`estimator.schema` objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from estimator.cli.figures import style
from estimator.schema import Metric, WhatIf, metrics_for
from estimator.units import choose_unit, significant

#: metric -> (readable name, unit ladder in estimator.units, or a fixed unit label)
_METRIC_NAMES = {"energy_per_token_joules": ("energy per output token", "energy"),
                 "energy_per_request_joules": ("energy per response", "energy"),
                 "energy_per_item_joules": ("energy per image/video", "energy"),
                 "avg_power_watts": ("GPU power", "power"), "median_itl_ms": ("median ITL", "ms"),
                 "output_throughput_tokens_per_sec": ("throughput", "tokens/s"),
                 "tokens_per_sec_per_watt": ("tokens/s per W", "tokens/s/W"),
                 "batch_latency_s": ("batch latency", "duration"), "items_per_sec": ("throughput", "items/s")}
_LADDERS = {"energy", "power", "duration", "co2"}


@dataclass(frozen=True)
class Panel:
    """One quantity across options: a title, a unit ladder ('energy', 'power', 'duration', 'co2') or a fixed
    unit label, and one interval per option (None where the option has no value)."""

    title: str
    unit: str
    values: Sequence[Metric | None]


def _scaled(panel: Panel) -> tuple[float, str]:
    known = [m.value for m in panel.values if m is not None]
    if panel.unit in _LADDERS and known:
        return choose_unit(max(abs(v) for v in known), panel.unit)
    return 1.0, panel.unit


def plot_bars(labels: Sequence[str], panels: Sequence[Panel], path: Path | str, *, title: str,
              highlight: int | None = None, note: str = "", groups: Sequence[str] | None = None) -> Path:
    """One panel per quantity, one bar per option (``labels``), whiskers at p10-p90, values printed on the bars.

    Args:
        labels: option names, in the order of each panel's values.
        panels: quantities to show.
        path: a .png or .svg file.
        title: figure title.
        highlight: index of the option to outline (e.g. the chosen deployment).
        note: a line under the figure (assumptions).
        groups: a colour key per option (e.g. its GPU type); default: one colour per option.
    """
    plt = style.pyplot()
    keys = list(groups) if groups is not None else list(range(len(labels)))
    palette = {key: style.colour(i) for i, key in enumerate(dict.fromkeys(keys))}
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(3.6 * columns + 2.0, 0.5 * len(labels) + 2.4 * rows),
                                squeeze=False, sharey=True)
    for axes in grid.flat[len(panels):]:
        axes.set_visible(False)
    for axes, panel in zip(grid.flat, panels, strict=False):
        scale, unit = _scaled(panel)
        for row, metric in enumerate(panel.values):
            if metric is None:
                axes.text(0, row, " n/a", va="center", fontsize=7, color="#777777")
                continue
            value = metric.value / scale
            axes.barh(row, value, color=palette[keys[row]], alpha=0.85,
                      edgecolor="black" if row == highlight else "none", linewidth=1.5)
            axes.errorbar(value, row, xerr=[[value - metric.p10 / scale], [metric.p90 / scale - value]],
                          color="black", capsize=3, linewidth=0.9)
            text = f"{value:,.0f}" if float(value).is_integer() else significant(value)
            axes.annotate(text, (metric.p90 / scale, row), textcoords="offset points", xytext=(4, 0),
                          va="center", fontsize=7)
        axes.set_yticks(range(len(labels)), labels, fontsize=7)
        axes.set_title(f"{panel.title} ({unit})" if unit else panel.title, fontsize=9)
        axes.grid(True, axis="x", alpha=0.3)
        axes.margins(x=0.25)
    grid.flat[0].invert_yaxis()  # shared: once for all panels
    figure.suptitle(title)
    if note:
        figure.text(0.01, -0.01, note, fontsize=7, color="#444444", ha="left", va="top", wrap=True)
    figure.tight_layout()
    return style.save(figure, path)


def plot_what_if(result: WhatIf, path: Path | str) -> Path:
    """Before/after bars of every metric of a what-if, with p10-p90 whiskers and the change in percent."""
    labels = ["base", "changed"]
    panels = []
    for metric in metrics_for(result.family):
        name, unit = _METRIC_NAMES.get(metric, (metric, ""))
        values = [p.metrics.get(metric) for p in (result.base, result.changed)]
        delta = result.deltas.get(metric)
        if delta is not None and delta.percent is not None:
            name = f"{name}: {delta.percent:+.0f}%"
        panels.append(Panel(name, unit, values))
    changes = ", ".join(f"{k}={v}" for k, v in result.changes.items())
    return plot_bars(labels, panels, path, title=f"What if {changes}? (whiskers: p10-p90)")


def deployment_label(deployment) -> str:
    """'H200: 2 GPUs x 3 replicas, batch 256' for a :class:`estimator.schema.Deployment` (extrapolated marked)."""
    config = deployment.prediction.configuration
    batch = config.batch_size if config.batch_size is not None else config.max_num_seqs
    mark = " (EXTRAPOLATED)" if getattr(deployment, "extrapolated", False) else ""
    return f"{config.gpu_model}{mark}: {config.num_gpus} GPUs x {deployment.replicas}, batch {batch}"


def plot_plan(plan, path: Path | str) -> Path:
    """Plan alternatives side by side: fleet power, energy per day and, when the plan has them, $ and CO2 per day.

    Args:
        plan: an :class:`estimator.schema.Plan`; the chosen deployment is outlined.
    """
    options = ([plan.chosen] if plan.chosen is not None else []) + list(plan.alternatives)
    if not options:
        raise ValueError(f"nothing to plot: {plan.reason or 'no deployment'}")
    labels = [deployment_label(d) for d in options]
    panels = [Panel("GPUs", "", [Metric(value=d.total_gpus, p10=d.total_gpus, p90=d.total_gpus) for d in options]),
              Panel("fleet GPU power", "power",
                    [Metric(value=d.power_kw * 1e3, p10=d.power_kw_p10 * 1e3, p90=d.power_kw_p90 * 1e3)
                     for d in options])]
    costs = [getattr(d, "costs", None) for d in options]
    if any(c is not None for c in costs):
        panels += cost_panels(costs)
    else:
        panels.append(Panel("energy per day", "energy",
                            [Metric(value=d.energy_per_day_kwh * 3.6e6, p10=d.power_kw_p10 * 24 * 3.6e6,
                                    p90=d.power_kw_p90 * 24 * 3.6e6) for d in options]))
    chosen = 0 if plan.chosen is not None else None
    demand = f"{plan.demand:,.0f} {plan.demand_unit}" if plan.demand is not None else "the budget"
    limit = f" with {plan.latency_metric} <= {plan.latency_limit:g}" if plan.latency_limit is not None else ""
    return plot_bars(labels, panels, path, highlight=chosen,
                     groups=[d.prediction.configuration.gpu_model for d in options],
                     title=f"{plan.model_id} / {plan.task}: deployments for {demand}{limit} (outlined: chosen)")


def cost_panels(costs: Sequence) -> list[Panel]:
    """Energy, $ and CO2 per day panels from :class:`estimator.serve.costs.CostCarbon` objects (None allowed)."""

    def pick(name: str, factor: float = 1.0) -> list[Metric | None]:
        out = []
        for c in costs:
            m = getattr(c, name, None) if c is not None else None
            out.append(None if m is None else Metric(value=m.value * factor, p10=m.p10 * factor, p90=m.p90 * factor))
        return out

    panels = [Panel("facility energy per day", "energy", pick("energy_per_day_kwh", 3.6e6))]
    if any(m is not None for m in pick("total_usd_per_day")):
        panels.append(Panel("cost per day", "USD", pick("total_usd_per_day")))
    if any(m is not None for m in pick("carbon_kg_per_day")):
        panels.append(Panel("carbon per day", "co2", pick("carbon_kg_per_day", 1e3)))
    return panels


def plot_costs(labels: Sequence[str], costs: Sequence, path: Path | str, *, title: str) -> Path:
    """Energy, cost and carbon per day of several deployments (:class:`CostCarbon` each), p10-p90 whiskers."""
    first = next((c for c in costs if c is not None), None)
    note = "; ".join(first.assumptions) if first is not None else ""
    return plot_bars(labels, cost_panels(costs), path, title=title, note=note)
