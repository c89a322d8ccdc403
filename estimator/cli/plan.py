"""``joules-estimate plan``: how many of which GPUs serve a demand, with margin, risk, energy, $ and CO2e."""

from __future__ import annotations

from typing import Annotated

import typer

from estimator.cli import cost_options as costs
from estimator.cli import render
from estimator.cli import web as web_cli
from estimator.cli.calibrate import CalibrationOption, calibrated_predictor
from estimator.cli.options import (
    Batch,
    Frames,
    InputTokens,
    Json,
    MaxItl,
    MaxLatency,
    MaxNumSeqs,
    Model,
    ModelConfig,
    NumGpus,
    OutputTokens,
    Plot,
    Precision,
    Resolution,
    Steps,
    Task,
    extra_models_from,
    fail,
    require,
    user_errors,
)


def plan_command(
    model: Model = None,
    task: Task = None,
    demand_rps: Annotated[float | None, typer.Option(
        metavar="RPS", help="Demand in requests/s (LLM: x output tokens per request; diffusion: "
        "images/videos per second).")] = None,
    demand_tokens_per_sec: Annotated[float | None, typer.Option(
        metavar="TOKENS/S", help="Demand in output tokens/s (LLM/MLLM).")] = None,
    max_itl_ms: MaxItl = None,
    max_latency_s: MaxLatency = None,
    power_budget_kw: Annotated[float | None, typer.Option(
        metavar="KW", help="Fleet GPU power budget in kW; without a demand: how much demand it "
        "serves.")] = None,
    power_budget_mw: Annotated[float | None, typer.Option(metavar="MW",
                                                          help="The same in MW.")] = None,
    gpu_budget: Annotated[int | None, typer.Option(min=1, metavar="N", help="Fleet GPU count budget.")] = None,
    gpu: Annotated[list[str] | None, typer.Option(
        metavar="GPU", help="GPU types to consider, repeatable: --gpu h100 --gpu b200 (default: those in the "
        "training data).")] = None,
    num_gpus: NumGpus = None,
    max_num_seqs: MaxNumSeqs = None,
    batch: Batch = None,
    precision: Precision = None,
    output_tokens: OutputTokens = None,
    input_tokens: InputTokens = None,
    steps: Steps = None,
    resolution: Resolution = None,
    frames: Frames = None,
    confidence: costs.Confidence = "p90",
    allow_extrapolation: costs.AllowExtrapolation = False,
    max_p90_itl_ms: costs.MaxP90Itl = None,
    electricity_usd_per_kwh: costs.ElectricityPrice = None,
    grid_gco2_per_kwh: costs.GridIntensity = None,
    grid_region: costs.GridRegion = None,
    pue: costs.Pue = 1.0,
    host_watts_per_gpu: costs.HostWatts = None,
    gpu_usd_per_hour: costs.GpuPrice = None,
    average_load: costs.AverageLoad = None,
    demand_curve: costs.DemandCurve = None,
    model_config: ModelConfig = None,
    calibration: CalibrationOption = None,
    json_output: Json = False,
    plot: Plot = None,
    html: web_cli.Html = None,
) -> None:
    """Capacity planning: how many of which GPUs (type and count, batch, replicas) serve a demand under a latency
    limit, with margin and risk, power, energy, $ and CO2e per day and month (p10-p90 intervals)."""
    with user_errors():
        costs.check_plot(plot)
        web_cli.check_html(html)
        if confidence not in ("median", "p90"):
            fail(f"--confidence must be median or p90, got {confidence!r}")
        model, extra_models = extra_models_from(model, model_config)
        require(model=model, task=task)
        if power_budget_kw is not None and power_budget_mw is not None:
            fail("give one power budget: --power-budget-kw or --power-budget-mw")
        if power_budget_mw is not None:
            power_budget_kw = power_budget_mw * 1e3
        if demand_rps is None and demand_tokens_per_sec is None and power_budget_kw is None and gpu_budget is None:
            fail("give a demand (--demand-rps or --demand-tokens-per-sec) or a budget (--power-budget-kw, "
                 "--gpu-budget)")
        inputs = costs.cost_inputs(electricity_usd_per_kwh=electricity_usd_per_kwh, grid_gco2_per_kwh=grid_gco2_per_kwh,
                                   grid_region=grid_region, pue=pue, host_watts_per_gpu=host_watts_per_gpu,
                                   gpu_usd_per_hour=gpu_usd_per_hour, average_load=average_load,
                                   demand_curve=demand_curve)
        from estimator.serve.api import plan as plan_api

        result = plan_api(model, task, demand_rps=demand_rps, demand_tokens_per_sec=demand_tokens_per_sec,
                          max_itl_ms=max_itl_ms, max_latency_s=max_latency_s, power_budget_kw=power_budget_kw,
                          gpu_budget=gpu_budget, gpus=gpu, num_gpus=num_gpus, max_num_seqs=max_num_seqs,
                          batch=batch, precision=precision, input_tokens=input_tokens, output_tokens=output_tokens,
                          steps=steps, resolution=resolution, frames=frames, confidence=confidence,
                          allow_extrapolation=allow_extrapolation, max_p90_itl_ms=max_p90_itl_ms, costs=inputs,
                          extra_models=extra_models, predictor=calibrated_predictor(calibration, extra_models))
        if json_output:
            typer.echo(result.model_dump_json(indent=2))
        else:
            render.print_plan(result)
        if plot is not None and (result.chosen is not None or result.alternatives):
            from estimator.cli.figures.compare import plot_plan

            typer.echo(f"wrote {plot_plan(result, plot)}", err=True)
        web_cli.write_html("plan", lambda web: web.plan_payload(result), html)
        if result.chosen is None:
            fail(result.reason or "no feasible deployment", 3)  # exit 3: nothing can run as asked
