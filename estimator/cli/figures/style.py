"""Shared look of every figure: a colour-blind-safe palette, readable log ticks, legends outside the data, saving.

matplotlib is optional (``pip install -e '.[plot]'``): :func:`require_matplotlib` checks for it without drawing
anything, so a command can refuse ``--plot`` before it does any work; :func:`pyplot` imports it with the
non-interactive Agg backend inside the drawing functions only.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

#: Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision deficiencies.
#: Yellow (#F0E442) is left out: it vanishes on white.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
#: markers by GPU count, so count reads without colour
MARKERS = {1: "o", 2: "s", 4: "^", 8: "D", 16: "v"}
LIMIT_COLOUR = "#555555"
SUFFIXES = (".png", ".svg")


def require_matplotlib() -> None:
    """Raise ``ValueError`` (with the install command) when matplotlib is missing; draws nothing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError("--plot needs matplotlib: pip install -e '.[plot]' (or pip install matplotlib)")


def check_plot_path(path: Path | str) -> Path:
    """The path, when its suffix is .png or .svg and its folder exists; ``ValueError`` otherwise."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"--plot {path}: give a .png or .svg file name")
    if not path.parent.exists():
        raise ValueError(f"--plot {path}: folder {path.parent} does not exist")
    return path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (after :func:`require_matplotlib`)."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
                         "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none"})
    return plt


def colour(index: int) -> str:
    return OKABE_ITO[index % len(OKABE_ITO)]


def tick_label(value: float, _position=None) -> str:
    """A tick as a plain number: 0.05, 2, 300, 4k, 1.5M (never 10^x)."""
    if value <= 0 or not math.isfinite(value):
        return ""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def readable_log_axis(axis, low: float, high: float) -> None:
    """Log scale with enough labelled ticks (1-2-5 steps) for any span, plain numbers, no bare decade."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    low, high = max(low, 1e-12), max(high, low * 1.0001)
    span = math.log10(high / low)
    steps = (1, 1.5, 2, 3, 4, 5, 7) if span <= 1 else (1, 2, 5) if span <= 3 else (1,) if span > 5 else (1, 3)
    ticks = [m * 10 ** e for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
             for m in steps]
    ticks = [t for t in ticks if low / 1.02 <= t <= high * 1.02]
    if len(ticks) < 3:  # a narrow span: add the ends themselves
        ticks = sorted({*ticks, float(f"{low:.2g}"), float(f"{high:.2g}")})
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(tick_label))
    axis.set_minor_formatter(NullFormatter())


def legend_outside(axes, **kwargs) -> None:
    """Legend to the right of the axes, outside the data."""
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False, **kwargs)


def save(figure, path: Path | str) -> Path:
    """Write ``figure`` as PNG (150 dpi) or SVG by the path's suffix, then close it; returns the path."""
    path = check_plot_path(path)
    from estimator.safe_io import atomic_writer

    with atomic_writer(path, "wb") as handle:  # a crash or a concurrent run never leaves half a file
        figure.savefig(handle, dpi=150, bbox_inches="tight", format=Path(path).suffix.lstrip(".").lower() or "png")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path
