"""``joules-estimate calibrate`` and ``train``: from measured runs to a calibration (seconds) or a new predictor
(minutes), and the ``--calibration`` option every predicting command takes.

Registered on the main app by :func:`register` (``estimator/cli/main.py``); imports stay inside the commands so
``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from estimator.cli import render
from estimator.cli.options import ModelConfig, extra_models_from, user_errors

CalibrationOption = Annotated[Path | None, typer.Option(
    "--calibration", help="A CAL.json from `joules-estimate calibrate`: your measured runs move the predictor's "
    "levels for your model, deployment, GPU and engine (re-fitted from its runs when the predictor changed).",
    exists=True, dir_okay=False)]
Runs = Annotated[list[Path], typer.Option(
    "--runs", help="Measured runs: a CSV with ML.ENERGY column names (model_id, task, gpu_model, num_gpus; optional "
    "weight_precision, max_num_seqs, tensor_parallel, expert_parallel, data_parallel, avg_input_len, "
    "avg_output_len, engine, or the diffusion inputs; measured: energy_per_token_joules, "
    "energy_per_request_joules, avg_power_watts, output_throughput_tokens_per_sec, median_itl_ms; diffusion: "
    "batch_latency_s, avg_power_watts, energy_per_image_joules, energy_per_video_joules), or a records.jsonl "
    "from `measure run`. Repeatable.", exists=True, dir_okay=False)]


def calibrated_predictor(calibration: Path | None, extra_models: dict | None):
    """The default predictor with the calibration applied (None without one); says so on standard error."""
    if calibration is None:
        return None
    from estimator.learn.calibration import describe
    from estimator.serve.calibration import with_calibration

    bundle = with_calibration(None, calibration, None, extra_models)
    typer.echo(f"{calibration}: {describe(bundle.calibration)}", err=True)
    return bundle


def read_runs(paths: list[Path]):
    """All files' records as one frame, with ``file:line`` sources."""
    import pandas as pd

    from estimator.learn.calibration_runs import read_run_file

    records, sources = [], []
    for path in paths:
        file_records, file_sources = read_run_file(path)
        records += file_records
        sources += file_sources
    return pd.DataFrame(records), sources


def calibrate_command(
    runs: Runs,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the calibration (CAL.json).",
                                         dir_okay=False)],
    model_config: ModelConfig = None,
    model: Annotated[str | None, typer.Option(help="With --model-config: the model_id your runs use for that "
                                              "model (default: the config's name).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the calibration as JSON.")] = False,
) -> None:
    """Calibrate the predictor to your own measured runs (seconds): per-level effects for your model, deployment,
    GPU and engine, shrunk toward the predictor in proportion to the evidence; writes CAL.json for --calibration."""
    with user_errors():
        _, extra_models = extra_models_from(model, model_config)
        from estimator.cli.calibration_render import render_calibration
        from estimator.serve.calibration import calibrate

        frame, sources = read_runs(runs)
        calibration = calibrate(frame, extra_models=extra_models, sources=sources)
        calibration.save(output)
        if json_output:
            typer.echo(calibration.model_dump_json(indent=1))
            return
        render.make_console().print(render_calibration(calibration, str(output)))


def train_command(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder for the new predictor "
                                                "(default: models/predictors/candidate).", file_okay=False)] = None,
    replace_default: Annotated[bool, typer.Option("--replace-default", help="Write models/predictors/default "
                                                  "instead (what every command uses).")] = False,
) -> None:
    """Retrain the predictors on everything in datasets/ (minutes, with progress) into a new predictor folder;
    the default predictor is replaced only with --replace-default. For a few runs of your own, `calibrate`."""
    with user_errors():
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from estimator.learn import training
        from estimator.learn.data import load_runs
        from estimator.paths import predictors_dir

        if output is not None and replace_default:
            raise ValueError("give --output or --replace-default, not both")
        target = training.default_output() if replace_default else (output or predictors_dir() / "candidate")
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} steps"),
                      TimeElapsedColumn(), console=render.make_console()) as progress:
            step = progress.add_task("loading runs", total=None)

            def tick(label: str) -> None:
                progress.update(step, advance=1, description=label)

            bundle = training.train(output=target, progress=tick, update_output_lengths=replace_default)
        typer.echo(f"wrote {target}" + ("" if replace_default else " (the default predictor is unchanged; use it "
                                        "with --replace-default, or load it by path)"))
        if not replace_default and training.refresh_output_lengths(load_runs(), write=False):
            typer.echo("note: models/catalog/output_lengths.toml (default output lengths) does not match these runs; "
                       "--replace-default rewrites it")
        render.print_summary(render.accuracy_summary(bundle.card), "out-of-fold, from the new card")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
    app.command("train")(train_command)
