"""What the main (frontier) command does after predicting: tables or JSON, cost and carbon, figures, explanations,
and one rule for a latency limit nothing meets (exit 2 with the closest achievable value)."""

from __future__ import annotations

import json

import typer

from estimator.cli import render
from estimator.cli.cost_options import cost_inputs
from estimator.cli.options import fail


def print_version(value: bool) -> None:
    """``--version``: the installed distribution's version (or pyproject's, from a checkout)."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        typer.echo(f"joules-estimate {version('joules-estimate')}")
    except PackageNotFoundError:  # running from a checkout without installing
        import tomllib

        from estimator.paths import project_root

        meta = tomllib.loads((project_root() / "pyproject.toml").read_text())["project"]
        typer.echo(f"joules-estimate {meta['version']} (not installed)")
    raise typer.Exit(0)


def single_costs(prediction, family: str, options: dict):
    """Cost and carbon of one configuration: one replica serving its predicted capacity x the average load."""
    from estimator.catalog.catalog import load_catalog
    from estimator.serve.costs import fleet_costs

    throughput = "items_per_sec" if family == "diffusion" else "output_throughput_tokens_per_sec"
    config = prediction.configuration
    per_response = 1.0 if family == "diffusion" else float(config.avg_output_len)
    return fleet_costs(replicas=1, gpus_per_replica=config.num_gpus,
                       busy_watts_per_replica=prediction.metrics["avg_power_watts"],
                       capacity_per_replica=prediction.metrics[throughput],
                       peak_demand=prediction.metrics[throughput].value, units_per_response=per_response,
                       gpu_tdp_watts=load_catalog().gpus[config.gpu_model].tdp_watts, inputs=cost_inputs(**options),
                       tokens=family != "diffusion")


def _check_fits(estimates) -> None:
    for est in estimates:
        if not est.configurations:
            by_reason: dict[str, list[str]] = {}
            for p in est.infeasible:
                by_reason.setdefault(p.reason, []).append(str(p.configuration.num_gpus))
            reasons = "; ".join(f"{', '.join(counts)} x {est.gpu_model}: {reason}"
                                for reason, counts in by_reason.items())
            fail(f"no configuration of {est.model_id} fits on {est.gpu_model}: {reasons}", 3)


def show(estimates, *, json_output: bool, plot, plot_batch, cost_options: dict | None) -> None:
    """Print (or JSON), cost and draw the frontiers; exit 3 when nothing fits or the limit is out of reach."""
    _check_fits(estimates)
    if json_output:
        payload = [e.model_dump(mode="json") for e in estimates]
        typer.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        for est in estimates:
            render.print_estimate(est)
    if cost_options is not None and not json_output:
        chosen = [(e, e.min_energy_within_limit or e.min_energy) for e in estimates]
        render.print_costs([render.describe(p.configuration) for _, p in chosen],
                           [single_costs(p, e.family, cost_options) for e, p in chosen])
    if plot is not None:
        from estimator.cli.figures.frontier import plot_frontiers

        typer.echo(f"wrote {plot_frontiers(estimates, plot)}", err=True)
    if plot_batch is not None:
        from estimator.cli.figures.frontier import plot_against_batch

        typer.echo(f"wrote {plot_against_batch(estimates, plot_batch)}", err=True)


def exit_if_limit_unreachable(estimates) -> None:
    """Exit 3 naming the closest achievable latency when no GPU type meets the latency limit."""
    if not all(e.latency_limit is not None and e.min_energy_within_limit is None for e in estimates):
        return
    latency = estimates[0].latency_metric
    fastest = min((p for e in estimates for p in e.configurations), key=lambda p: p.value(latency))
    unit = "ms" if latency == "median_itl_ms" else "s"
    fail(f"no configuration meets {latency} <= {estimates[0].latency_limit:g} {unit}; the closest achievable is "
         f"{fastest.value(latency):.3g} {unit} ({render.describe(fastest.configuration)})", 3)
