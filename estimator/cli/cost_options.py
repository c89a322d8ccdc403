"""Options shared by the frontier, ``what-if`` and ``plan``: cost, carbon, load profile, confidence, plots.

Only typer is imported here (``--help`` stays fast). :func:`cost_inputs` turns the options into
:class:`estimator.serve.costs.CostInputs` (validated there; the catalog defaults are read only when used).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ElectricityPrice = Annotated[float | None, typer.Option(
    "--electricity-usd-per-kwh", min=0, metavar="USD", help="Electricity price in $/kWh (e.g. 0.08); adds $ per "
    "day/month.")]
GridIntensity = Annotated[float | None, typer.Option(
    "--grid-gco2-per-kwh", min=0, metavar="G", help="Grid carbon intensity in gCO2e/kWh; adds kg CO2e per "
    "day/month.")]
GridRegion = Annotated[str | None, typer.Option(
    "--grid-region", metavar="REGION", help="Grid carbon intensity from the catalog's annual averages by country "
    "(US, DE, FR, IN, ... or a name, e.g. germany; sources and years in models/catalog/grid_carbon.toml).")]
Pue = Annotated[float, typer.Option(
    "--pue", min=1.0, max=3.0, metavar="X", help="Power usage effectiveness (facility / IT power). Default 1.0 "
    "(IT only); typical: 1.58 industry average 2023 (Uptime Institute), 1.10 Google fleet 2023.")]
HostWatts = Annotated[float | None, typer.Option(
    "--host-watts-per-gpu", min=0, metavar="W", help="Server power beside the GPUs (CPU, DRAM, NICs) per GPU. "
    "Default 350 W (8-GPU H100 node measurement, models/catalog/datacenter.toml); 0 = GPUs only.")]
GpuPrice = Annotated[float | None, typer.Option(
    "--gpu-usd-per-hour", min=0, metavar="USD", help="GPU rental or amortised cost per GPU-hour; adds $ per day "
    "and $ per million tokens.")]
AverageLoad = Annotated[float | None, typer.Option(
    "--average-load", min=0.01, max=1.0, metavar="SHARE", help="Mean demand as a share of the peak (0-1]; "
    "replicas are sized for the peak and counted at their power at this load (idle power included). "
    "Default 1 (always at peak).")]
DemandCurve = Annotated[Path | None, typer.Option(
    "--demand-curve", exists=True, dir_okay=False, metavar="CSV", help="A daily demand curve: CSV with a "
    "share_of_peak column (0-1), rows evenly spaced over a day (e.g. 24 hourly rows).")]
Confidence = Annotated[str, typer.Option(
    "--confidence", metavar="median|p90", help="p90 (default): the latency limit must hold at the p90 end of the "
    "predicted interval and replicas are sized on the p10 end of capacity; median: point values (riskier).")]
AllowExtrapolation = Annotated[bool, typer.Option(
    "--allow-extrapolation", help="Keep GPU types without training data for the engine (marked EXTRAPOLATED).")]
MaxP90Itl = Annotated[float | None, typer.Option(
    "--max-p90-itl-ms", min=0.001, metavar="MS", help="Tail limit on p90 inter-token latency (needs a predictor "
    "that predicts p90 ITL).")]


def any_cost_option(options: dict) -> bool:
    """True when any cost/carbon/load option in ``options`` was given (``pue`` counts when not 1.0)."""
    return any(v is not None for k, v in options.items() if k != "pue") or options.get("pue", 1.0) != 1.0


def cost_inputs(*, electricity_usd_per_kwh, grid_gco2_per_kwh, grid_region, pue, host_watts_per_gpu,
                gpu_usd_per_hour, average_load, demand_curve):
    """The options as :class:`estimator.serve.costs.CostInputs` (the demand curve read from its CSV)."""
    from pydantic import ValidationError

    from estimator.serve.costs import CostInputs, read_demand_curve

    curve = read_demand_curve(demand_curve) if demand_curve is not None else None
    try:
        return CostInputs(electricity_usd_per_kwh=electricity_usd_per_kwh, grid_gco2_per_kwh=grid_gco2_per_kwh,
                          grid_region=grid_region, pue=pue, host_watts_per_gpu=host_watts_per_gpu,
                          gpu_usd_per_hour=gpu_usd_per_hour, average_load=average_load, demand_curve=curve)
    except ValidationError as exc:  # one line for the user, e.g. "give --grid-gco2-per-kwh or --grid-region"
        raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from None


def check_plot(path: Path | None) -> None:
    """Before any work: matplotlib installed and a .png/.svg path in an existing folder (``ValueError`` if not)."""
    if path is None:
        return
    from estimator.cli.figures.style import check_plot_path, require_matplotlib

    require_matplotlib()
    check_plot_path(path)
