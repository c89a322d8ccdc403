"""Figures: each is written as PNG and SVG, carries what the issue asked for (limit in the legend, labelled points,
readable ticks, layer legend), and refuses bad paths before drawing."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from estimator.cli.figures import compare, frontier, style, waterfall  # noqa: E402
from estimator.schema import Metric  # noqa: E402


@pytest.fixture(scope="module")
def estimates():
    from estimator import estimate

    return [estimate("qwen3-32b", "chat", gpu, max_itl_ms=40, num_gpus=[1, 2]) for gpu in ("b200", "h200")]


def _svg(path) -> str:
    text = path.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    return text


def test_frontier_has_every_gpu_the_limit_and_batch_labels(estimates, tmp_path):
    """One figure for several GPUs, points labelled 'GPUs x batch', the limit named in the legend."""
    svg = _svg(frontier.plot_frontiers(estimates, tmp_path / "f.svg"))
    for text in ("B200 frontier", "H200 frontier", "median_itl_ms &lt;= 40 ms", "1x b", "2 GPUs per replica"):
        assert text in svg, text
    png = frontier.plot_frontiers(estimates, tmp_path / "f.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batch_sweep_has_three_quantities(estimates, tmp_path):
    """Energy, power and throughput against batch, each with its unit."""
    svg = _svg(frontier.plot_against_batch(estimates, tmp_path / "b.svg"))
    for text in ("energy per output token (J)", "GPU power (", "output throughput (tokens/s)", "p10-p90"):
        assert text in svg, text


def test_readable_log_ticks_are_plain_numbers():
    """'10^1' style or a single tick per axis was the issue's complaint: several plain labels per axis."""
    assert [style.tick_label(v) for v in (0.05, 2, 300, 4000, 1.5e6)] == ["0.05", "2", "300", "4k", "1.5M"]
    plt = style.pyplot()
    figure, axes = plt.subplots()
    axes.set_xscale("log")
    style.readable_log_axis(axes.xaxis, 20, 90)
    assert len(axes.xaxis.get_major_locator().tick_values(20, 90)) >= 3
    plt.close(figure)


def test_bars_outline_the_chosen_and_print_units(tmp_path):
    """Plan/cost comparisons: one panel per quantity in a readable unit, the chosen option outlined."""
    values = [Metric(value=4.0e3, p10=3e3, p90=5e3), Metric(value=5.5e3, p10=4e3, p90=7e3)]
    path = compare.plot_bars(["a", "b"], [compare.Panel("fleet power", "power", values)], tmp_path / "c.svg",
                             title="t", highlight=0)
    assert "fleet power (kW)" in _svg(path)


def test_waterfall_names_quantity_unit_layers_and_factors(tmp_path):
    """The explain figure: x-factor labels, quantity and unit on the axis (not 'ln ...'), a legend by layer."""
    from estimator.serve.api import explain_configuration

    attribution = explain_configuration({"model": "qwen3-32b", "task": "gpqa", "gpu": "b200", "max_num_seqs": 128})
    svg = _svg(waterfall.plot_waterfall(attribution, tmp_path / "w.svg"))
    assert "energy per output token (J/token), log scale" in svg and "ln energy" not in svg
    assert "in all" in svg and "algorithm" in svg and "physics prior" in svg
    assert svg.count(">x0.") + svg.count(">x1.") >= 5


def test_bad_plot_path_refused_before_drawing(tmp_path):
    """A .jpg or a missing folder must fail up front, not after minutes of work."""
    with pytest.raises(ValueError, match=".png or .svg"):
        style.check_plot_path(tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="does not exist"):
        style.check_plot_path(tmp_path / "missing" / "x.png")
