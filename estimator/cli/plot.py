"""PNG of a time-energy frontier: every feasible configuration, the Pareto frontier and the chosen points.

matplotlib is an optional dependency (``pip install -e '.[plot]'``); it is imported inside :func:`plot_frontier`
with the non-interactive Agg backend, so importing this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path

from estimator.safe_io import atomic_writer
from estimator.schema import Estimate

_LABELS = {"energy_per_token_joules": "energy per output token (J)", "energy_per_item_joules": "energy per item (J)",
           "median_itl_ms": "median inter-token latency (ms)", "batch_latency_s": "batch latency (s)"}


def plot_frontier(est: Estimate, path: Path | str) -> Path:
    """Write energy against latency for ``est`` to ``path`` (PNG, 150 dpi); returns the path.

    Points are coloured by GPU count; the frontier is a line with p10-p90 error bars on energy; the minimum-energy
    configuration (and the one within the latency limit, when given) is circled.

    Raises:
        ValueError: matplotlib is not installed (the message says how to install it).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError as exc:
        raise ValueError("--plot needs matplotlib: pip install -e '.[plot]'") from exc
    energy, latency = est.energy_metric, est.latency_metric
    figure, axes = plt.subplots(figsize=(7.5, 5))
    counts = sorted({p.configuration.num_gpus for p in est.configurations})
    colours = plt.get_cmap("viridis")
    for i, count in enumerate(counts):
        points = [p for p in est.configurations if p.configuration.num_gpus == count]
        axes.scatter([p.value(latency) for p in points], [p.value(energy) for p in points], s=18, alpha=0.7,
                     color=colours(i / max(len(counts) - 1, 1)), label=f"{count} GPU{'s' if count > 1 else ''}")
    front = est.frontier
    xs = [p.value(latency) for p in front]
    ys = [p.value(energy) for p in front]
    lower = [p.value(energy) - p.metrics[energy].p10 for p in front]
    upper = [p.metrics[energy].p90 - p.value(energy) for p in front]
    axes.errorbar(xs, ys, yerr=[lower, upper], color="black", linewidth=1.2, capsize=2, label="frontier (p10-p90)")
    for chosen, colour, label in ((est.min_energy, "tab:green", "min energy"),
                                  (est.min_energy_within_limit, "tab:red", "min energy within limit")):
        if chosen is not None:
            axes.scatter([chosen.value(latency)], [chosen.value(energy)], s=160, facecolors="none",
                         edgecolors=colour, linewidths=2, label=label, zorder=5)
    if est.latency_limit is not None:
        axes.axvline(est.latency_limit, color="tab:red", linestyle=":", linewidth=1)
    axes.set_xscale("log")
    axes.set_yscale("log")
    plain = FuncFormatter(lambda value, _position: f"{value:g}")
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(FuncFormatter(lambda value, _position: ""))
    axes.set_xlabel(_LABELS.get(latency, latency))
    axes.set_ylabel(_LABELS.get(energy, energy))
    axes.set_title(f"{est.model_id} / {est.task} / {est.gpu_model}", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    with atomic_writer(path, "wb") as handle:  # a crash or a concurrent run never leaves half a PNG
        figure.savefig(handle, dpi=150, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(figure)
    return path
