"""Tables and lines that ``joules-estimate`` prints (rich), kept apart from the command plumbing in main.py.

Imported by the commands only after they have their results, so ``--help`` never pays for it; rich itself is
imported inside the functions.
"""

from __future__ import annotations

import sys


def make_console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def fmt(value: float | None) -> str:
    """A number for people: 3 significant figures, thousands separated."""
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def metric_labels(family: str, *, video: bool) -> dict[str, tuple[str, str]]:
    """Metric -> (column label, unit); a diffusion item is an image or a video."""
    from estimator.schema import metrics_for

    labels = dict(metrics_for(family))
    renamed = {"energy_per_token_joules": ("energy/token", "J"), "energy_per_request_joules": ("energy/response", "J"),
               "avg_power_watts": ("GPU power", "W"), "batch_latency_s": ("batch latency", "s")}
    labels.update({k: v for k, v in renamed.items() if k in labels})
    if family == "diffusion":
        labels["energy_per_item_joules"] = ("energy/video" if video else "energy/image", "J")
        labels["items_per_sec"] = ("videos/s" if video else "images/s", "1/s")
    return labels


#: metrics printed in a unit chosen by size (estimator.units): metric -> unit ladder
READABLE = {"energy_per_token_joules": "energy", "energy_per_request_joules": "energy",
            "energy_per_item_joules": "energy", "avg_power_watts": "power", "batch_latency_s": "duration"}


def readable(value: float | None, metric: str) -> str:
    """One value of ``metric`` in a readable unit (J/kJ/MJ/kWh, W/kW, s/min/h) or as a plain number."""
    from estimator.units import format_quantity

    return format_quantity(value, READABLE[metric]) if metric in READABLE else fmt(value)


def cell(prediction, metric: str) -> str:
    """Value over its dim p10-p90 range, both in the value's unit."""
    from estimator.units import choose_unit, significant

    m = prediction.metrics.get(metric)
    if m is None:
        return "-"
    if metric not in READABLE:
        return f"{fmt(m.value)}\n[dim]{fmt(m.p10)}-{fmt(m.p90)}[/dim]"
    scale, unit = choose_unit(m.value, READABLE[metric])
    return (f"{significant(m.value / scale)} {unit}\n[dim]{significant(m.p10 / scale)}-"
            f"{significant(m.p90 / scale)}[/dim]")


def describe(config) -> str:
    """'2 x B200, max_num_seqs 512 (TP 2)' or '4 x H100-SXM, batch 4 (Ulysses 4)'."""
    head = f"{config.num_gpus} x {config.gpu_model}"
    if config.batch_size is not None:
        height, width = config.video_height or config.image_height, config.video_width or config.image_width
        frames = f" x {config.num_frames} frames" if config.num_frames else ""
        return (f"{head}, batch {config.batch_size} (Ulysses {config.ulysses_degree} x Ring {config.ring_degree}), "
                f"{height}x{width}{frames}, {config.inference_steps} steps")
    layout = f"EP {config.expert_parallel}" if (config.expert_parallel or 1) > 1 else f"TP {config.tensor_parallel}"
    return f"{head}, max_num_seqs {config.max_num_seqs} ({layout}, {config.weight_precision})"


def bullets(console, title: str, items: list[str], style: str = "") -> None:
    if items:
        console.print(f"[bold]{title}[/bold]")
        for item in items:
            console.print(f"  - {item}", style=style, markup=False)


def frontier_table(est):
    from rich.table import Table


    unit = "ms" if est.latency_metric == "median_itl_ms" else "s"
    title = (f"Time-energy frontier: {est.model_id} / {est.task} / {est.gpu_model} "
             f"({len(est.frontier)} Pareto-optimal of {len(est.configurations)} feasible configurations; "
             f"value, then p10-p90)")
    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("GPUs", justify="right")
    table.add_column("batch", justify="right")
    labels = metric_labels(est.family, video=bool(est.workload.num_frames))
    for label, _unit in labels.values():
        table.add_column(label, justify="right")
    table.add_column("", justify="left")
    best = est.min_energy.configuration if est.min_energy else None
    within = est.min_energy_within_limit.configuration if est.min_energy_within_limit else None
    for p in est.frontier:
        c = p.configuration
        marks = []
        if c == best:
            marks.append("[bold green]<- min energy[/bold green]")
        if c == within:
            short = "ITL" if est.latency_metric == "median_itl_ms" else "latency"
            marks.append(f"[bold cyan]<- min energy with {short} <= {est.latency_limit:g} {unit}[/bold cyan]")
        batch = c.batch_size if c.batch_size is not None else c.max_num_seqs
        table.add_row(str(c.num_gpus), str(batch), *(cell(p, m) for m in labels), "\n".join(marks))
    return table


def chosen_line(est, prediction, label: str) -> str:
    from estimator.units import format_interval

    energy = prediction.metrics[est.energy_metric]
    latency = prediction.metrics[est.latency_metric]
    per = "token"
    if est.energy_metric != "energy_per_token_joules":
        per = "video" if est.workload.num_frames else "image"
    if est.latency_metric == "median_itl_ms":
        latency_text = f"{fmt(latency.value)} ms median ITL"
    else:
        latency_text = f"{readable(latency.value, est.latency_metric)} batch latency"
    energy_text = format_interval(energy.value, energy.p10, energy.p90, "energy")
    return f"{label}: {describe(prediction.configuration)}: {energy_text} per {per}, {latency_text}"


def print_estimate(est) -> None:
    console = make_console()
    console.print(frontier_table(est))
    if est.min_energy:
        console.print(chosen_line(est, est.min_energy, "[bold green]Minimum energy[/bold green]"))
    if est.latency_limit is not None:
        unit = "ms" if est.latency_metric == "median_itl_ms" else "s"
        label = f"[bold cyan]Minimum energy with {est.latency_metric} <= {est.latency_limit:g} {unit}[/bold cyan]"
        if est.min_energy_within_limit:
            console.print(chosen_line(est, est.min_energy_within_limit, label))
        else:
            fastest = min(est.configurations, key=lambda p: p.metrics[est.latency_metric].value)
            console.print(f"{label}: none; the closest achievable is {describe(fastest.configuration)} at "
                          f"{fmt(fastest.metrics[est.latency_metric].value)} {unit}")
    bullets(console, "Does not fit:", [f"{p.configuration.num_gpus} x {p.configuration.gpu_model}: {p.reason}"
                                        for p in est.infeasible])
    bullets(console, "Assumptions:", est.assumptions)
    bullets(console, "Warnings:", est.warnings, style="yellow")


def print_what_if(result) -> None:
    from rich.table import Table


    console = make_console()
    changes = ", ".join(f"{k}={v}" for k, v in result.changes.items())
    table = Table(title=f"What if {changes}?", title_justify="left")
    for name, justify in (("metric", "left"), ("base", "right"), ("changed", "right"), ("delta", "right"),
                          ("delta %", "right")):
        table.add_column(name, justify=justify)
    table.add_row("configuration", describe(result.base.configuration), describe(result.changed.configuration),
                  "", "")
    video = bool(result.base.configuration.num_frames)
    for metric, (label, _) in metric_labels(result.family, video=video).items():
        d = result.deltas[metric]
        percent = "-" if d.percent is None else f"{d.percent:+.1f}%"
        style = "" if d.percent is None else ("green" if (d.percent < 0) == (metric in LOWER_IS_BETTER) else "red")
        table.add_row(label, cell(result.base, metric), cell(result.changed, metric),
                      "-" if d.absolute is None else f"{d.absolute:+.4g}", f"[{style}]{percent}[/{style}]"
                      if style else percent)
    console.print(table)
    for side, prediction in (("base", result.base), ("changed", result.changed)):
        if prediction.status != "ok":
            console.print(f"[red]{side} cannot run:[/red] {prediction.reason}", markup=True)
    bullets(console, "Assumptions:", result.assumptions)
    bullets(console, "Warnings:", list(dict.fromkeys(result.base.warnings + result.changed.warnings)),
             style="yellow")


LOWER_IS_BETTER = {"energy_per_token_joules", "energy_per_request_joules", "median_itl_ms", "avg_power_watts",
                   "energy_per_item_joules", "batch_latency_s"}


def _interval(metric, quantity: str) -> str:
    """'value unit' over a dim 'p10-p90' line, all in the value's readable unit."""
    from estimator.units import choose_unit, significant

    if metric is None:
        return "-"
    scale, unit = choose_unit(metric.value, quantity)
    return (f"{significant(metric.value / scale)} {unit}\n[dim]{significant(metric.p10 / scale)}-"
            f"{significant(metric.p90 / scale)}[/dim]")


def _usd(metric) -> str:
    from estimator.units import format_usd

    return "-" if metric is None else f"{format_usd(metric.value)}\n[dim]{format_usd(metric.p10)}-" \
                                      f"{format_usd(metric.p90)}[/dim]"


def _plan_headline(result) -> str:
    unit = result.demand_unit
    if result.demand is not None:
        rps = f" ({result.demand_requests_per_sec:g} requests/s)" if result.demand_requests_per_sec else ""
        ask = f"serve {fmt(result.demand)} {unit}{rps}"
    else:
        ask = "the most demand the budget serves"
    limit = "" if result.latency_limit is None else f" with {result.latency_metric} <= {result.latency_limit:g}"
    budgets = [f"{result.power_budget_kw:g} kW" if result.power_budget_kw is not None else "",
               f"{result.gpu_budget} GPUs" if result.gpu_budget is not None else ""]
    budget = " within " + " and ".join(b for b in budgets if b) if any(budgets) else ""
    left_out = f"; left out (no training data): {', '.join(result.excluded_gpus)}" if result.excluded_gpus else ""
    return (f"[bold]Plan:[/bold] {result.model_id} / {result.task}: {ask}{limit}{budget} at confidence "
            f"{result.confidence}; GPUs considered: {', '.join(result.gpus_considered)}{left_out}")


def plan_table(result):
    """Chosen first, then distinct alternatives: size, checked latency and capacity, margin, risk, power, energy,
    cost and carbon per day (p10-p90 under each value)."""
    from rich.table import Table

    diffusion = result.latency_metric != "median_itl_ms"
    checked = "p90 " if result.confidence == "p90" else ""
    lat_label = f"{checked}batch latency" if diffusion else f"{checked}ITL ms"
    cap_label = ("p10 " if checked else "") + result.demand_unit.replace("tokens", "tok") + "\nper replica"
    table = Table(title="Deployments (chosen first; alternatives differ from it)", title_justify="left",
                  show_lines=True)
    for name in ("", "GPU", "GPUs x replicas", "batch", lat_label, cap_label, "margin\nlatency / capacity", "risk",
                 "GPU power", "energy/day", "$/day", "CO2e/day"):
        table.add_column(name, justify="left" if name in ("", "GPU") else "right")
    options = ([result.chosen] if result.chosen else []) + list(result.alternatives)
    for index, d in enumerate(options):
        c = d.prediction.configuration
        batch = c.batch_size if c.batch_size is not None else c.max_num_seqs
        mark = "[bold green]chosen[/bold green]" if index == 0 and result.chosen else ""
        if d.distinguishable_from_next is False:
            mark += ("\n" if mark else "") + "[yellow]overlaps\nnext[/yellow]"
        gpu = c.gpu_model + ("\n[bold red]EXTRAPOLATED[/bold red]" if d.extrapolated else "")
        latency = "-" if d.latency_checked is None else (f"{d.latency_checked:.3g} s" if diffusion else
                                                         f"{d.latency_checked:.3g}")
        margin = " / ".join("-" if m is None else f"{m:+.0f}%" for m in (d.latency_margin_pct,
                                                                         d.capacity_margin_pct))
        power = _interval(_metric(d.power_kw * 1e3, d.power_kw_p10 * 1e3, d.power_kw_p90 * 1e3), "power")
        costs = d.costs
        energy = _interval(None if costs is None else _scaled(costs.energy_per_day_kwh, 3.6e6), "energy")
        carbon = "-" if costs is None or costs.carbon_kg_per_day is None else _interval(
            _scaled(costs.carbon_kg_per_day, 1e3), "co2")
        table.add_row(mark, gpu, f"{c.num_gpus} x {d.replicas}", str(batch), latency,
                      fmt(d.capacity_checked_per_replica), margin, f"{100 * (d.risk or 0):.0f}%", power, energy,
                      _usd(None if costs is None else costs.total_usd_per_day), carbon)
    return table


def _metric(value: float, p10: float, p90: float):
    from estimator.schema import Metric

    return Metric(value=value, p10=p10, p90=p90)


def _scaled(metric, factor: float):
    return _metric(metric.value * factor, metric.p10 * factor, metric.p90 * factor)


def chosen_summary(result) -> str:
    """One paragraph answering 'how many of which GPUs, at what kWh, $ and CO2 per day, with what risk'."""
    from estimator.units import format_co2, format_energy, format_usd

    d = result.chosen
    c = d.prediction.configuration
    text = (f"[bold green]Chosen:[/bold green] {d.replicas} replica(s) of {describe(c)} = {d.total_gpus} x "
            f"{c.gpu_model}; risk of missing the target {100 * (d.risk or 0):.0f}% (latency "
            f"{100 * (d.risk_latency or 0):.0f}%, capacity {100 * (d.risk_capacity or 0):.0f}%)")
    costs = d.costs
    if costs is not None:
        e = costs.energy_per_day_kwh
        text += (f"; per day {format_energy(e.value * 3.6e6)} (p10-p90 {format_energy(e.p10 * 3.6e6)}-"
                 f"{format_energy(e.p90 * 3.6e6)})")
        if costs.total_usd_per_day is not None:
            u = costs.total_usd_per_day
            text += f", {format_usd(u.value)} ({format_usd(u.p10)}-{format_usd(u.p90)})"
        if costs.carbon_kg_per_day is not None:
            k = costs.carbon_kg_per_day
            text += f", {format_co2(k.value * 1e3)} ({format_co2(k.p10 * 1e3)}-{format_co2(k.p90 * 1e3)})"
        if costs.usd_per_million_tokens is not None:
            text += f"; {format_usd(costs.usd_per_million_tokens.value)} per million tokens"
        text += (f"; {format_energy(costs.energy_per_response_joules.value)} per response at "
                 f"{costs.average_load_share_of_peak:.0%} average load")
    return text


def print_plan(result) -> None:
    console = make_console()
    console.print(_plan_headline(result))
    if result.chosen is None:
        console.print(f"[red]No feasible deployment:[/red] {result.reason}")
    if result.chosen is not None or result.alternatives:
        console.print(plan_table(result))
    if result.chosen is not None:
        console.print(chosen_summary(result))
    bullets(console, "Assumptions:", result.assumptions)
    bullets(console, "Warnings:", result.warnings, style="yellow")


def print_costs(labels: list[str], costs: list) -> None:
    """Energy, cost and carbon per response and per day for configurations (what-if sides, frontier rows)."""
    from rich.table import Table

    table = Table(title="Cost and carbon (one replica at the stated load; facility = (GPU + host) x PUE)",
                  title_justify="left", show_lines=True)
    for name in ("", "energy/response", "energy/day", "$/day", "$/M tokens", "CO2e/response", "CO2e/day"):
        table.add_column(name, justify="left" if not name else "right")
    for label, c in zip(labels, costs, strict=True):
        if c is None:
            table.add_row(label, *["-"] * 6)
            continue
        table.add_row(label, _interval(c.energy_per_response_joules, "energy"),
                      _interval(_scaled(c.energy_per_day_kwh, 3.6e6), "energy"), _usd(c.total_usd_per_day),
                      _usd(c.usd_per_million_tokens),
                      "-" if c.carbon_g_per_response is None else _interval(c.carbon_g_per_response, "co2"),
                      "-" if c.carbon_kg_per_day is None else _interval(_scaled(c.carbon_kg_per_day, 1e3), "co2"))
    console = make_console()
    console.print(table)
    first = next((c for c in costs if c is not None), None)
    if first is not None:
        bullets(console, "Cost assumptions:", first.assumptions)


def accuracy_summary(card) -> dict:
    """Per split: energy-per-token (LLM/MLLM) and energy-per-item (diffusion) median / p90 APE % and rows, from an
    :class:`estimator.learn.card.Card`."""
    out = {}
    for split, families in card.metrics.items():
        row = {}
        for family, metric in (("llm", "energy_per_token_joules"), ("diffusion", "energy_per_item_joules")):
            values = families.get(family, {}).get(metric)
            if values:
                row[family] = {"metric": metric, "median_ape_pct": values.get("median_ape_pct"),
                               "p90_ape_pct": values.get("p90_ape_pct"), "n": values.get("n")}
        out[split] = row
    return out


def print_summary(summary: dict, source: str) -> None:
    from rich.table import Table

    table = Table(title=f"Held-out accuracy of energy predictions ({source}); APE = |predicted - measured| / "
                        f"measured", title_justify="left")
    for name in ("split", "LLM J/token median APE %", "p90 %", "n", "diffusion J/item median APE %", "p90 %", "n"):
        table.add_column(name, justify="left" if name == "split" else "right")
    for split, row in summary.items():
        cells = []
        for family in ("llm", "diffusion"):
            v = row.get(family)
            cells += (["-"] * 3 if v is None else
                      [f"{v['median_ape_pct']:.1f}", f"{v['p90_ape_pct']:.1f}", str(v["n"])])
        table.add_row(split, *cells)
    make_console().print(table)
