"""Attributions for people: one-line summaries, rich waterfalls and a matplotlib PNG.

rich and matplotlib are imported inside the functions that draw.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from estimator.explain.model import FACTOR_KNOBS, Attribution, ChangeAttribution, FactorContribution
from estimator.safe_io import atomic_writer


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
    with atomic_writer(path, "wb") as handle:  # a crash or a concurrent run never leaves half a PNG
        fig.savefig(handle, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
