"""``joules-estimate``: the command line, a thin layer over :mod:`estimator.serve.api`.

Only typer is imported at module import (``--help`` stays fast); pandas, LightGBM, pydantic models and matplotlib
are imported inside the commands that need them. Every user error (unknown name, bad number, malformed CSV, a
configuration that cannot fit) ends in one ``error: ...`` line; no traceback reaches the user (set
``JOULES_ESTIMATE_DEBUG=1`` to see one). Exit codes: 0 done, 2 bad input or usage, 3 the configuration cannot run
(does not fit, a parallel layout vLLM refuses, nothing meets the limits), 1 internal error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from estimator.cli import calibrate as calibrate_cli
from estimator.cli import cost_options as costs
from estimator.cli import frontier, render
from estimator.cli import web as web_cli
from estimator.cli.calibrate import CalibrationOption, calibrated_predictor
from estimator.cli.catalog import catalog_app
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
    OneBatch,
    OneGpu,
    OneMaxNumSeqs,
    OneNumGpus,
    OutputTokens,
    Plot,
    Precision,
    Resolution,
    Ring,
    Seconds,
    Steps,
    Task,
    Ulysses,
    extra_models_from,
    fail,
    frames_from_seconds,
    one_configuration,
    require,
    user_errors,
)
from estimator.cli.plan import plan_command

#: inputs larger than this (about 100,000 rows) are predicted by two worker processes (chunks in parallel)
PARALLEL_INPUT_BYTES = 8_000_000

EXAMPLES = """
Examples:

  joules-estimate --model llama-70b --task chat --gpu b200

  joules-estimate --model flux-dev --task text-to-image --gpu h100 --steps 28 --resolution 1024x1024 --batch 4

  joules-estimate what-if --model llama-70b --task chat --gpu b200 --num-gpus 2 --set gpu=h100 --set num_gpus=4

  joules-estimate plan --model llama-70b --task chat --demand-tokens-per-sec 50000 --max-itl-ms 50
"""

app = typer.Typer(
    name="joules-estimate",
    help="Predict the time, energy and performance per watt of generative AI inference on GPUs "
         "(trained on ML.ENERGY v3 measurements). Without a command: the time-energy frontier of "
         "--model x --task on --gpu over GPU counts and batch sizes.",
    epilog=EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(catalog_app, name="catalog")
app.command("plan")(plan_command)
calibrate_cli.register(app)
app.command("serve")(web_cli.serve)

# ---------------------------------------------------------------------------------------- main: frontier


def _explain_chosen(est, extra_models, predictor) -> None:
    console = render.make_console()
    import pandas as pd

    from estimator.explain.render import render_attribution as draw
    from estimator.serve.api import explain as explain_frame

    chosen = list({id(p): p for p in (est.min_energy, est.min_energy_within_limit) if p}.values())
    frame = pd.DataFrame([p.configuration.as_row() for p in chosen])
    try:
        attributions = explain_frame(frame, extra_models=extra_models, predictor=predictor)
    except Exception as exc:  # attribution is an extra: the estimate above stands
        console.print(f"[yellow]attribution failed: {exc}[/yellow]")
        return
    for attribution in attributions:
        console.print(draw(attribution))


@app.callback(invoke_without_command=True)
def main_command(
    ctx: typer.Context,
    model: Model = None,
    task: Task = None,
    gpu: Annotated[list[str] | None, typer.Option(
        metavar="GPU", help="GPU type: b200, h100, h200, a100, l40s, mi300x... (see `catalog list gpus`); repeat to "
        "compare GPUs in one table and figure.")] = None,
    num_gpus: NumGpus = None,
    max_num_seqs: MaxNumSeqs = None,
    batch: Batch = None,
    precision: Precision = None,
    output_tokens: OutputTokens = None,
    input_tokens: InputTokens = None,
    max_itl_ms: MaxItl = None,
    max_latency_s: MaxLatency = None,
    steps: Steps = None,
    resolution: Resolution = None,
    frames: Frames = None,
    seconds: Seconds = None,
    ulysses_degree: Ulysses = None,
    ring_degree: Ring = None,
    electricity_usd_per_kwh: costs.ElectricityPrice = None,
    grid_gco2_per_kwh: costs.GridIntensity = None,
    grid_region: costs.GridRegion = None,
    pue: costs.Pue = 1.0,
    host_watts_per_gpu: costs.HostWatts = None,
    gpu_usd_per_hour: costs.GpuPrice = None,
    average_load: costs.AverageLoad = None,
    model_config: ModelConfig = None,
    calibration: CalibrationOption = None,
    json_output: Json = False,
    plot: Annotated[Path | None, typer.Option(
        metavar="FILE", dir_okay=False, help="Also draw energy against latency (.png or .svg): every GPU's "
        "frontier, points labelled GPUs x batch, the limit, p10-p90 bars.")] = None,
    plot_batch: Annotated[Path | None, typer.Option(
        metavar="FILE", dir_okay=False, help="Also draw energy, power and throughput against batch size (.png or "
        ".svg).")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Attribute the chosen configurations' energy to "
                                          "model, workload, batch, parallelism, GPU... (estimator.explain).")] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=frontier.print_version,
                                          help="Print the version and exit.")] = False,
    html: web_cli.Html = None,
) -> None:
    """Time-energy frontier of a model and task on one or more GPU types, over GPU counts and batch sizes."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None and model_config is None and task is None and not gpu:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    with user_errors():
        costs.check_plot(plot)
        costs.check_plot(plot_batch)
        web_cli.check_html(html)
        model, extra_models = extra_models_from(model, model_config)
        require(model=model, task=task, gpu=gpu or None)
        frames = frames_from_seconds(model, frames, seconds, extra_models)
        cost_options = dict(electricity_usd_per_kwh=electricity_usd_per_kwh, grid_gco2_per_kwh=grid_gco2_per_kwh,
                            grid_region=grid_region, pue=pue, host_watts_per_gpu=host_watts_per_gpu,
                            gpu_usd_per_hour=gpu_usd_per_hour, average_load=average_load, demand_curve=None)
        wants_costs = costs.any_cost_option(cost_options)
        if wants_costs:
            costs.cost_inputs(**cost_options)  # validate before the sweep
        predictor = calibrated_predictor(calibration, extra_models)
        from estimator.serve.api import estimate
        from estimator.validation import ImpossibleConfigurationError

        try:
            estimates = [estimate(model, task, g, num_gpus=num_gpus, max_num_seqs=max_num_seqs, batch=batch,
                                  precision=precision, input_tokens=input_tokens, output_tokens=output_tokens,
                                  max_itl_ms=max_itl_ms, max_latency_s=max_latency_s, steps=steps,
                                  resolution=resolution, frames=frames, ulysses_degree=ulysses_degree,
                                  ring_degree=ring_degree, extra_models=extra_models, predictor=predictor)
                         for g in dict.fromkeys(gpu)]
        except ImpossibleConfigurationError as exc:  # exit 3 with the arithmetic; --json still gets the result
            if json_output and exc.result is not None:
                typer.echo(exc.result.model_dump_json(indent=2))
            raise
        frontier.show(estimates, json_output=json_output, plot=plot, plot_batch=plot_batch,
                      cost_options=cost_options if wants_costs else None)
        web_cli.write_html("frontier", lambda web: web.frontier_payload(estimates, []), html)
        if explain:
            for est in estimates:
                _explain_chosen(est, extra_models, predictor)
        frontier.exit_if_limit_unreachable(estimates)


# ------------------------------------------------------------------------------------------------ predict

@app.command()
def predict(
    input_path: Annotated[Path, typer.Option("--input", "-i", metavar="CSV", help="CSV of configurations, "
                                             "ML.ENERGY column names: model_id, task, gpu_model, num_gpus (required), "
                                             "weight_precision, "
                                             "max_num_seqs, tensor_parallel, expert_parallel, data_parallel, "
                                             "avg_input_len, avg_output_len (LLM) or batch_size, inference_steps, "
                                             "image_height, image_width, video_height, video_width, num_frames, "
                                             "ulysses_degree, ring_degree (diffusion). Empty cells: as the engine "
                                             "would.")],
    output_path: Annotated[Path | None, typer.Option("--output", "-o", metavar="CSV", help="Where to write the "
                                                     "predictions CSV (default: standard output); written whole "
                                                     "or not at all.")] = None,
    model_config: ModelConfig = None,
    calibration: CalibrationOption = None,
) -> None:
    """Batch prediction: every CSV row in, the same rows plus predictions (value, _p10, _p90), status, reason
    and warnings out. A row that cannot be predicted gets empty metrics and a reason; it never aborts the file.
    Files of any size are read in chunks; cells a spreadsheet would run as formulas are written with a leading '."""
    with user_errors():
        from estimator.safe_io import check_input_file, check_output_path
        from estimator.validation import InputError

        check_input_file(input_path)
        if output_path is not None:
            check_output_path(output_path)
            if output_path.exists() and output_path.resolve() == input_path.resolve():
                raise InputError(f"--output {output_path} is the input file; give another path")
            if not output_path.resolve().parent.is_dir():
                raise InputError(f"--output {output_path}: folder {output_path.parent} does not exist")
        _, extra_models = extra_models_from(None, model_config)
        from estimator.catalog.catalog import load_catalog
        from estimator.serve.api import predict_frame as api_predict_frame
        from estimator.serve.stream import predict_csv, read_header, unknown_columns

        for column, hint in unknown_columns(read_header(input_path)):
            typer.echo(f"warning: column {column!r} is not a configuration input; passed through{hint}", err=True)
        catalog, bundle = load_catalog(), calibrated_predictor(calibration, extra_models)

        def predict_chunk(frame):
            return api_predict_frame(frame, predictor=bundle, catalog=catalog, extra_models=extra_models)

        big = input_path.stat().st_size > PARALLEL_INPUT_BYTES
        workers = min(2, os.cpu_count() or 1) if big and calibration is None else 1  # workers load the default
        summary = predict_csv(input_path, output_path, predict=predict_chunk, catalog=catalog, workers=workers,
                              extra_models=extra_models, extra_columns=("calibration",) if calibration else ())
        note = f"predicted {summary.predicted} of {summary.rows} rows"
        if output_path is not None:
            note += f" -> {output_path}"
        typer.echo(note, err=True)
        for line, reason in summary.errors:
            typer.echo(f"  line {line}: {reason}", err=True)
        if summary.error_count > len(summary.errors):
            typer.echo(f"  ... {summary.error_count - len(summary.errors)} more (see the reason column)", err=True)


# ------------------------------------------------------------------------------------------------ what-if

def _parse_sets(items: list[str]) -> dict:
    """``--set KEY=VALUE`` items -> changes; a key given twice (also through an alias) is refused. Values are
    checked by :func:`estimator.serve.inputs.normalize` like every other input."""
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            fail(f"--set {item!r} is not KEY=VALUE, e.g. --set gpu=h100 --set num_gpus=4")
        name = key.strip().replace("-", "_")
        if name in changes:
            fail(f"--set {name} given twice ({changes[name]!r} and {value.strip()!r}); give each key once")
        changes[name] = value.strip()
    return changes


def _render_change(console, result, extra_models, predictor=None) -> None:
    from estimator.explain.render import render_change as draw
    from estimator.serve.api import explain_change

    try:
        attribution = explain_change(result, extra_models=extra_models, predictor=predictor)
    except Exception as exc:  # attribution is an extra: never lose the what-if over it
        console.print(f"[yellow]attribution of the change failed: {exc}[/yellow]", markup=True)
        return
    if attribution is not None:
        console.print(draw(attribution))


@app.command("what-if")
def what_if_command(
    model: Model = None,
    task: Task = None,
    gpu: OneGpu = None,
    num_gpus: OneNumGpus = None,
    max_num_seqs: OneMaxNumSeqs = None,
    batch: OneBatch = None,
    precision: Precision = None,
    output_tokens: OutputTokens = None,
    input_tokens: InputTokens = None,
    steps: Steps = None,
    resolution: Resolution = None,
    frames: Frames = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="A change KEY=VALUE, repeatable: gpu=h100, "
                                                   "num_gpus=4, batch=256, precision=fp8, input_tokens=2000, "
                                                   "output_tokens=1000, model=..., steps=..., resolution=768x768.",
                                                   metavar="KEY=VALUE")] = None,
    electricity_usd_per_kwh: costs.ElectricityPrice = None,
    grid_gco2_per_kwh: costs.GridIntensity = None,
    grid_region: costs.GridRegion = None,
    pue: costs.Pue = 1.0,
    host_watts_per_gpu: costs.HostWatts = None,
    gpu_usd_per_hour: costs.GpuPrice = None,
    average_load: costs.AverageLoad = None,
    model_config: ModelConfig = None,
    calibration: CalibrationOption = None,
    json_output: Json = False,
    plot: Plot = None,
    html: web_cli.Html = None,
) -> None:
    """A base configuration and changes to it, predicted side by side with the delta in every metric (with cost
    flags: energy, $ and CO2e per response and per day for each side; --plot: before/after bars)."""
    with user_errors():
        costs.check_plot(plot)
        web_cli.check_html(html)
        model, extra_models = extra_models_from(model, model_config)
        require(model=model, task=task, gpu=gpu)
        changes = _parse_sets(set_ or [])
        if not changes:
            typer.echo("note: no --set given; both sides are the same configuration", err=True)
        base = one_configuration(model, task, gpu, num_gpus, max_num_seqs, batch, precision, output_tokens,
                                  input_tokens, steps, resolution, frames)
        from estimator.serve.api import what_if
        from estimator.validation import ImpossibleConfigurationError

        cost_options = dict(electricity_usd_per_kwh=electricity_usd_per_kwh, grid_gco2_per_kwh=grid_gco2_per_kwh,
                            grid_region=grid_region, pue=pue, host_watts_per_gpu=host_watts_per_gpu,
                            gpu_usd_per_hour=gpu_usd_per_hour, average_load=average_load, demand_curve=None)
        wants_costs = costs.any_cost_option(cost_options)
        if wants_costs:
            costs.cost_inputs(**cost_options)  # validate before predicting
        predictor = calibrated_predictor(calibration, extra_models)
        try:
            result = what_if(base, extra_models=extra_models, predictor=predictor, **changes)
        except ImpossibleConfigurationError as exc:  # neither side can run: exit 3, both reasons shown
            if exc.result is not None:
                typer.echo(exc.result.model_dump_json(indent=2)) if json_output else render.print_what_if(exc.result)
            raise
        _what_if_outputs(result, json_output=json_output, plot=plot, extra_models=extra_models,
                         cost_options=cost_options if wants_costs else None, predictor=predictor)
        web_cli.write_html("what-if", lambda web: web.what_if_payload(
            result, *web.explain_what_if(result, extra_models, predictor=predictor)), html)


def _what_if_outputs(result, *, json_output: bool, plot, extra_models, cost_options: dict | None,
                     predictor=None) -> None:
    sides = [("base", result.base), ("changed", result.changed)]
    side_costs = [frontier.single_costs(p, result.family, cost_options) if cost_options and p.status == "ok"
                  else None for _, p in sides]
    if json_output:
        import json

        payload = result.model_dump(mode="json")
        if cost_options:
            payload["costs"] = {name: None if c is None else c.model_dump(mode="json")
                                for (name, _), c in zip(sides, side_costs, strict=True)}
        typer.echo(json.dumps(payload, indent=2))
    else:
        render.print_what_if(result)
        if cost_options:
            render.print_costs([name for name, _ in sides], side_costs)
        _render_change(render.make_console(), result, extra_models, predictor)
    if plot is not None and result.base.status == "ok" and result.changed.status == "ok":
        from estimator.cli.figures.compare import plot_what_if

        typer.echo(f"wrote {plot_what_if(result, plot)}", err=True)


@app.command("explain")
def explain_command(
    model: Model = None,
    task: Task = None,
    gpu: OneGpu = None,
    num_gpus: OneNumGpus = None,
    max_num_seqs: OneMaxNumSeqs = None,
    batch: OneBatch = None,
    precision: Precision = None,
    output_tokens: OutputTokens = None,
    input_tokens: InputTokens = None,
    steps: Steps = None,
    resolution: Resolution = None,
    frames: Frames = None,
    quantity: Annotated[str | None, typer.Option(metavar="METRIC", help="What to attribute: "
                                                 "energy_per_token_joules (default), energy_per_request_joules, "
                                                 "avg_power_watts, "
                                                 "output_throughput_tokens_per_sec, median_itl_ms; diffusion: "
                                                 "energy_per_item_joules (default), batch_latency_s.")] = None,
    model_config: ModelConfig = None,
    calibration: CalibrationOption = None,
    json_output: Json = False,
    plot: Plot = None,
) -> None:
    """Why one configuration costs what it costs: a waterfall from the average configuration to this one,
    by layer (algorithm / software / hardware) and latent factor (memory, compute, batch, utilization...)."""
    with user_errors():
        costs.check_plot(plot)
        model, extra_models = extra_models_from(model, model_config)
        require(model=model, task=task, gpu=gpu)
        from estimator.serve.api import explain_configuration

        config = one_configuration(model, task, gpu, num_gpus, max_num_seqs, batch, precision, output_tokens,
                                    input_tokens, steps, resolution, frames)
        attribution = explain_configuration(config, quantity=quantity, extra_models=extra_models,
                                            predictor=calibrated_predictor(calibration, extra_models))
        if getattr(attribution, "status", "ok") != "ok":
            fail(getattr(attribution, "reason", "cannot be predicted"))
        from estimator.explain.render import render_attribution

        if json_output:
            typer.echo(attribution.model_dump_json(indent=2))
        else:
            render.make_console().print(render_attribution(attribution))
        if plot is not None:
            from estimator.cli.figures.waterfall import plot_waterfall

            typer.echo(f"wrote {plot_waterfall(attribution, plot)}", err=True)


# ---------------------------------------------------------------------------------------- evaluate


@app.command()
def evaluate(
    predictor: Annotated[str, typer.Option(metavar="NAME", help="Predictor name under models/predictors/ or a "
                                           "folder.")] = "default",
    json_output: Json = False,
    report: Annotated[bool, typer.Option("--write-report/--no-report", help="Also write benchmarks/accuracy.md "
                                         "and the README's accuracy table from the card.")] = False,
) -> None:
    """Print the held-out accuracy stored in the predictor's card (no retraining)."""
    with user_errors():
        import json

        from estimator.learn.card import read_card
        from estimator.paths import predictors_dir, project_root

        folder = Path(predictor) if Path(predictor).is_dir() else predictors_dir() / predictor
        _check_card(folder / "card.json")
        card = read_card(folder)
        summary = render.accuracy_summary(card)
        if json_output:
            typer.echo(json.dumps(summary, indent=2))
        else:
            render.print_summary(summary, f"{folder / 'card.json'}")
        if report:
            from estimator.learn.report import write_accuracy_report

            target = project_root() / "benchmarks" / "accuracy.md"
            write_accuracy_report(card, target)
            typer.echo(f"wrote {target}", err=True)


def _check_card(path: Path) -> None:
    """Refuse a missing, unreadable, non-JSON or metric-less card with one line (never an empty table)."""
    import json

    from estimator.safe_io import read_text_checked
    from estimator.validation import InputError

    if not path.exists():
        raise InputError(f"no predictor card at {path}; run `joules-estimate train`")
    try:
        card = json.loads(read_text_checked(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(card, dict) or not card.get("metrics"):
        raise InputError(f"{path}: the card has no held-out metrics to show (an empty or untrained card); run "
                         f"`joules-estimate train`")


# ------------------------------------------------------------------------------------------------ measure

@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def measure(ctx: typer.Context) -> None:
    """Measure inference energy on this machine's GPU and import the runs (`joules-estimate measure --help`)."""
    try:
        from measure.cli import app as measure_app
    except ImportError as exc:  # optional extra (zeus, pynvml): the rest of the CLI must keep working
        fail(f"measure is unavailable here ({type(exc).__name__}: {exc}); install with pip install -e '.[measure]'")
    measure_app(args=list(ctx.args), prog_name="joules-estimate measure")


def main() -> None:
    """Console-script entry point (``joules-estimate``); ends the process without Python's teardown
    (:func:`estimator.cli.process.run_then_exit`)."""
    from estimator.cli.process import run_then_exit

    run_then_exit(app)


if __name__ == "__main__":
    main()
