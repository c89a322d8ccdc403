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
    if family == "diffusion":
        labels["energy_per_item_joules"] = ("J/video" if video else "J/image", "J")
        labels["items_per_sec"] = ("videos/s" if video else "images/s", "1/s")
    return labels


def cell(prediction, metric: str) -> str:
    m = prediction.metrics.get(metric)
    return "-" if m is None else f"{fmt(m.value)}\n[dim]{fmt(m.p10)}-{fmt(m.p90)}[/dim]"


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
    energy = prediction.metrics[est.energy_metric]
    latency = prediction.metrics[est.latency_metric]
    unit = "J/token"
    if est.energy_metric != "energy_per_token_joules":
        unit = "J/video" if est.workload.num_frames else "J/image"
    latency_unit = "ms median ITL" if est.latency_metric == "median_itl_ms" else "s batch latency"
    return (f"{label}: {describe(prediction.configuration)}: {fmt(energy.value)} {unit} "
            f"(p10-p90 {fmt(energy.p10)}-{fmt(energy.p90)}), {fmt(latency.value)} {latency_unit}")


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
            console.print(f"{label}: none; the fastest is {describe(fastest.configuration)} at "
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


def print_plan(result) -> None:
    from rich.table import Table

    console = make_console()
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
    console.print(f"[bold]Plan:[/bold] {result.model_id} / {result.task}: {ask}{limit}{budget}; "
                  f"GPUs considered: {', '.join(result.gpus_considered)}")
    if result.chosen is None:
        console.print(f"[red]No feasible deployment:[/red] {result.reason}")
    table = Table(title="Lowest-energy deployment per GPU type (chosen first)", title_justify="left",
                  show_lines=True)
    for name in ("GPU", "GPUs x replicas", "batch", f"{unit} per replica", "median ITL ms" if
                 result.latency_metric == "median_itl_ms" else "batch latency s", "power kW (p10-p90)",
                 "kWh/day", f"{unit}/W", "served"):
        table.add_column(name, justify="left" if name == "GPU" else "right")
    for d in result.alternatives:
        c = d.prediction.configuration
        batch = c.batch_size if c.batch_size is not None else c.max_num_seqs
        table.add_row(("* " if d == result.chosen else "") + c.gpu_model, f"{c.num_gpus} x {d.replicas}",
                      str(batch), fmt(d.capacity_per_replica), fmt(d.prediction.value(result.latency_metric)),
                      f"{fmt(d.power_kw)}\n[dim]{fmt(d.power_kw_p10)}-{fmt(d.power_kw_p90)}[/dim]",
                      fmt(d.energy_per_day_kwh), f"{d.throughput_per_watt:.3g}", fmt(d.demand_served))
    if result.alternatives:
        console.print(table)
    if result.chosen is not None:
        d = result.chosen
        console.print(f"[bold green]Chosen:[/bold green] {d.replicas} replica(s) of "
                      f"{describe(d.prediction.configuration)} = {d.total_gpus} GPUs, {fmt(d.power_kw)} kW "
                      f"({fmt(d.energy_per_day_kwh)} kWh/day), {d.throughput_per_watt:.3g} {unit}/W, serving "
                      f"{fmt(d.demand_served)} {unit}")
    bullets(console, "Assumptions:", result.assumptions)
    bullets(console, "Warnings:", result.warnings, style="yellow")


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
