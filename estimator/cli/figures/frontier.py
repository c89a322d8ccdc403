"""Time-energy frontiers of one or several GPU types in one figure, and energy/power/throughput against batch.

Both take :class:`estimator.schema.Estimate` objects (one per GPU type, from ``estimator.estimate``). Colour is the
GPU type, the marker is the GPU count, frontier points carry their batch size, and every interval is p10-p90.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from estimator.cli.figures import style
from estimator.schema import Estimate
from estimator.units import choose_unit

AXIS_NAMES = {"energy_per_token_joules": "energy per output token", "energy_per_item_joules": "energy per item",
              "median_itl_ms": "median inter-token latency (ms)", "batch_latency_s": "batch latency (s)",
              "avg_power_watts": "GPU power", "output_throughput_tokens_per_sec": "output throughput (tokens/s)",
              "items_per_sec": "throughput (items/s)"}


def _batch(prediction) -> int:
    config = prediction.configuration
    return int(config.batch_size if config.batch_size is not None else config.max_num_seqs)


def _item_name(est: Estimate) -> str:
    if est.energy_metric == "energy_per_token_joules":
        return "energy per output token"
    return "energy per video" if est.workload.num_frames else "energy per image"


def _free(placed: list[tuple[float, float]], x: float, y: float, gap: float = 0.035) -> bool:
    """True (and remember the spot) when no label sits within ``gap`` decades of (x, y) on log axes."""
    lx, ly = math.log10(x), math.log10(y)
    if any(abs(lx - px) < 2 * gap and abs(ly - py) < gap for px, py in placed):
        return False
    placed.append((lx, ly))
    return True


def plot_frontiers(estimates: Sequence[Estimate], path: Path | str, *, title: str | None = None) -> Path:
    """Energy against latency for every GPU type in ``estimates``, frontier points labelled with their batch.

    Args:
        estimates: one :class:`Estimate` per GPU type (same model and task).
        path: a .png or .svg file.
        title: figure title (default: model / task).

    Raises:
        ValueError: no estimate has a feasible configuration, or matplotlib is missing.
    """
    estimates = [e for e in estimates if e.configurations]
    if not estimates:
        raise ValueError("nothing to plot: no feasible configuration")
    plt = style.pyplot()
    first = estimates[0]
    energy, latency = first.energy_metric, first.latency_metric
    values = [p.value(energy) for e in estimates for p in e.configurations]
    scale, unit = choose_unit(sorted(values)[len(values) // 2], "energy")
    figure, axes = plt.subplots(figsize=(8.5, 5.2))
    counts_seen: set[int] = set()
    placed: list[tuple[float, float]] = []
    for index, est in enumerate(estimates):
        colour = style.colour(index)
        for count in sorted({p.configuration.num_gpus for p in est.configurations}):
            points = [p for p in est.configurations if p.configuration.num_gpus == count]
            axes.scatter([p.value(latency) for p in points], [p.value(energy) / scale for p in points], s=14,
                         marker=style.MARKERS.get(count, "o"), color=colour, alpha=0.25, linewidths=0)
            counts_seen.add(count)
        front = est.frontier
        xs = [p.value(latency) for p in front]
        ys = [p.value(energy) / scale for p in front]
        low = [(p.value(energy) - p.metrics[energy].p10) / scale for p in front]
        high = [(p.metrics[energy].p90 - p.value(energy)) / scale for p in front]
        axes.errorbar(xs, ys, yerr=[low, high], color=colour, linewidth=1.4, capsize=2, elinewidth=0.8,
                      label=f"{est.gpu_model} frontier (p10-p90)")
        for p, x, y in zip(front, xs, ys, strict=True):
            axes.scatter([x], [y], marker=style.MARKERS.get(p.configuration.num_gpus, "o"), s=28, color=colour,
                         edgecolors="white", linewidths=0.5, zorder=4)
            if not _free(placed, x, y):
                continue
            axes.annotate(f"{p.configuration.num_gpus}x b{_batch(p)}", (x, y), textcoords="offset points",
                          xytext=(4, 3), fontsize=6, color=colour)
        chosen = est.min_energy_within_limit if est.latency_limit is not None else est.min_energy
        if chosen is not None:
            axes.scatter([chosen.value(latency)], [chosen.value(energy) / scale], s=170, facecolors="none",
                         edgecolors=colour, linewidths=1.8, zorder=5,
                         label=f"{est.gpu_model} min energy" + (" within limit" if est.latency_limit else ""))
    for count in sorted(counts_seen):
        axes.scatter([], [], marker=style.MARKERS.get(count, "o"), color="#777777", s=20,
                     label=f"{count} GPU{'s' if count > 1 else ''} per replica")
    limit_unit = "ms" if latency == "median_itl_ms" else "s"
    if first.latency_limit is not None:
        axes.axvline(first.latency_limit, color=style.LIMIT_COLOUR, linestyle="--", linewidth=1.2,
                     label=f"limit: {latency} <= {first.latency_limit:g} {limit_unit}")
    axes.set_xscale("log")
    axes.set_yscale("log")
    xs_all = [p.value(latency) for e in estimates for p in e.configurations]
    style.readable_log_axis(axes.xaxis, min(xs_all), max(xs_all + [first.latency_limit or 0]))
    ys_all = [p.metrics[energy].p10 / scale for e in estimates for p in e.frontier] + [v / scale for v in values]
    ys_all += [p.metrics[energy].p90 / scale for e in estimates for p in e.frontier]
    style.readable_log_axis(axes.yaxis, min(ys_all), max(ys_all))
    axes.set_xlabel(AXIS_NAMES.get(latency, latency))
    axes.set_ylabel(f"{_item_name(first)} ({unit})")
    axes.set_title(title or f"{first.model_id} / {first.task}: time-energy frontier "
                            f"(labels: GPUs x batch)")
    axes.grid(True, which="major", alpha=0.3)
    style.legend_outside(axes)
    return style.save(figure, path)


def plot_against_batch(estimates: Sequence[Estimate], path: Path | str) -> Path:
    """Energy, GPU power and throughput against batch size, one line per GPU type x GPU count, p10-p90 bands."""
    estimates = [e for e in estimates if e.configurations]
    if not estimates:
        raise ValueError("nothing to plot: no feasible configuration")
    plt = style.pyplot()
    first = estimates[0]
    throughput = "items_per_sec" if first.family == "diffusion" else "output_throughput_tokens_per_sec"
    panels = [(first.energy_metric, "energy"), ("avg_power_watts", "power"), (throughput, None)]
    figure, axes_row = plt.subplots(1, 3, figsize=(13, 4.2))
    for axes, (metric, quantity) in zip(axes_row, panels, strict=True):
        values = [p.value(metric) for e in estimates for p in e.configurations]
        scale, unit = choose_unit(sorted(values)[len(values) // 2], quantity) if quantity else (1.0, "")
        series = 0
        for index, est in enumerate(estimates):
            for count in sorted({p.configuration.num_gpus for p in est.configurations}):
                points = sorted((p for p in est.configurations if p.configuration.num_gpus == count), key=_batch)
                xs = [_batch(p) for p in points]
                axes.plot(xs, [p.value(metric) / scale for p in points], color=style.colour(index),
                          marker=style.MARKERS.get(count, "o"), markersize=4, linewidth=1.2,
                          label=f"{est.gpu_model}, {count} GPU{'s' if count > 1 else ''}")
                axes.fill_between(xs, [p.metrics[metric].p10 / scale for p in points],
                                  [p.metrics[metric].p90 / scale for p in points], color=style.colour(index),
                                  alpha=0.12, linewidth=0)
                series += 1
        axes.set_xscale("log")
        batches = [_batch(p) for e in estimates for p in e.configurations]
        style.readable_log_axis(axes.xaxis, min(batches), max(batches))
        name = AXIS_NAMES.get(metric, metric) if metric != first.energy_metric else _item_name(first)
        axes.set_ylabel(f"{name} ({unit})" if unit else name)
        axes.set_xlabel("batch (max_num_seqs)" if first.family != "diffusion" else "batch size")
        axes.grid(True, alpha=0.3)
    axes_row[0].set_yscale("log")
    energies = [p.metrics[first.energy_metric].p10 for e in estimates for p in e.configurations]
    energies += [p.metrics[first.energy_metric].p90 for e in estimates for p in e.configurations]
    escale, _ = choose_unit(sorted(energies)[len(energies) // 2], "energy")
    style.readable_log_axis(axes_row[0].yaxis, min(energies) / escale, max(energies) / escale)
    figure.suptitle(f"{first.model_id} / {first.task}: against batch size (bands: p10-p90)")
    style.legend_outside(axes_row[-1])
    figure.tight_layout()
    return style.save(figure, path)
