"""The explain waterfall as a figure: from the average configuration to this one, one bar per item.

Each bar spans running value -> running value x the item's multiplier on a log axis in the quantity's own unit
(J/token, J/image...), labelled with its x-factor and coloured by layer (algorithm, software, hardware, latent,
physics prior), so that the bars compose exactly to the prediction.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from estimator.cli.figures import style
from estimator.units import format_energy

LAYER_ORDER = ("algorithm", "software", "hardware", "latent", "physics prior", "identity")
_QUANTITY_NAMES = {"energy_per_token_joules": "energy per output token",
                   "energy_per_item_joules": "energy per image/video",
                   "energy_per_request_joules": "energy per response", "avg_power_watts": "GPU power",
                   "output_throughput_tokens_per_sec": "output throughput", "median_itl_ms": "median ITL",
                   "batch_latency_s": "batch latency"}


def _layer(item) -> str:
    if item.kind == "physics":
        return "physics prior"
    if item.kind == "identity":
        return "identity"
    return item.layer


def _label(item, configuration: dict) -> str:
    try:
        from estimator.explain.render import _label as explain_label  # the table's wording, one source

        text = explain_label(item, configuration)
    except (ImportError, AttributeError):
        text = item.group
    return textwrap.shorten(text, width=70, placeholder="...")


def plot_waterfall(attribution, path: Path | str) -> Path:
    """Write the waterfall of an ``estimator.explain.Attribution`` (PNG or SVG by suffix); returns the path.

    Raises:
        ValueError: the attribution has no prediction (status not 'ok'), or matplotlib is missing.
    """
    a = attribution
    if a.status != "ok" or not a.baseline or not a.prediction:
        raise ValueError(f"cannot plot an attribution with status {a.status}: {a.reason}")
    plt = style.pyplot()
    labels = ["average configuration (baseline)"]
    labels += [_label(i, a.configuration) for i in a.items] + ["prediction"]
    figure, axes = plt.subplots(figsize=(10.5, 0.34 * len(labels) + 1.8))
    layers = [layer for layer in LAYER_ORDER if any(_layer(i) == layer for i in a.items)]
    colours = {layer: style.colour(index) for index, layer in enumerate(layers)}
    running = a.baseline
    axes.barh(0, running, color="#999999")
    values = [running]
    for row, item in enumerate(a.items, start=1):
        start, end = running, running * item.multiplier
        axes.barh(row, end - start, left=start, color=colours[_layer(item)], height=0.7)
        axes.annotate(f"x{item.multiplier:.2f}", (max(start, end), row), textcoords="offset points", xytext=(4, 0),
                      va="center", fontsize=7)
        running = end
        values.append(end)
    axes.barh(len(labels) - 1, a.prediction, color="#333333")
    axes.annotate(f"x{a.prediction / a.baseline:.2f} in all", (a.prediction, len(labels) - 1),
                  textcoords="offset points", xytext=(4, 0), va="center", fontsize=7, fontweight="bold")
    from matplotlib.patches import Patch

    handles = [Patch(color=colours[layer], label=layer) for layer in layers]
    axes.set_xscale("log")
    low, high = min(values + [a.prediction]) / 1.5, max(values + [a.prediction]) * 1.5
    axes.set_xlim(low, high)
    style.readable_log_axis(axes.xaxis, low, high)
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.invert_yaxis()
    name = _QUANTITY_NAMES.get(a.quantity, a.quantity)
    if a.quantity == "energy_per_item_joules":
        name = "energy per video" if a.configuration.get("num_frames") else "energy per image"
    per = a.unit.split("/", 1)[1] if "/" in a.unit else ""

    def shown(value: float) -> str:
        text = format_energy(value) if a.unit.startswith("J") else f"{value:.3g} {a.unit}"
        return f"{text}/{per}" if a.unit.startswith("J") and per else text
    axes.set_xlabel(f"{name} ({a.unit}), log scale")
    axes.grid(True, axis="x", alpha=0.3)
    config = a.configuration
    head = " / ".join(str(config[k]) for k in ("model_id", "task", "gpu_model") if k in config)
    count = config.get("num_gpus")
    head += f", {int(count)} GPU{'s' if count and count > 1 else ''}" if count and not math.isnan(count) else ""
    axes.set_title(textwrap.fill(f"Why {name} is {shown(a.prediction)} vs the average {shown(a.baseline)}: "
                                 f"{head}", width=120), fontsize=9, loc="left")
    style.legend_outside(axes, handles=handles, title="layer")
    return style.save(figure, path)
