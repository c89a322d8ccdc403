"""``joules-estimate calibrate``: measured runs in, CAL.json out, and a report of what it learned.

Registered on the main typer app by ``estimator/cli/main.py``; kept apart so the main CLI module stays small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Runs = Annotated[list[Path], typer.Option("--runs", help="Measured runs: a CSV with ML.ENERGY column names "
                                          "(model_id, task, gpu_model, num_gpus, optional weight_precision, "
                                          "max_num_seqs, tensor_parallel, expert_parallel, data_parallel, "
                                          "avg_input_len, avg_output_len, engine, or the diffusion inputs; measured: "
                                          "energy_per_token_joules, energy_per_request_joules, avg_power_watts, "
                                          "output_throughput_tokens_per_sec, median_itl_ms; diffusion: "
                                          "batch_latency_s, avg_power_watts, energy_per_image_joules, "
                                          "energy_per_video_joules), or a records.jsonl from `measure run`. "
                                          "Repeat for several files.", exists=True, dir_okay=False)]
Output = Annotated[Path, typer.Option("--output", "-o", help="Where to write the calibration (CAL.json).",
                                      dir_okay=False)]


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


def run_calibrate(runs: list[Path], output: Path, extra_models: dict | None, json_output: bool, console) -> None:
    """Fit, save and report (the body of the command; errors propagate to the CLI's error handler)."""
    from estimator.cli.calibration_render import render_calibration
    from estimator.learn.calibration import calibrate
    from estimator.serve.api import load_predictor

    frame, sources = read_runs(runs)
    calibration = calibrate(frame, load_predictor(), extra_models=extra_models, sources=sources)
    calibration.save(output)
    if json_output:
        typer.echo(calibration.model_dump_json(indent=1))
        return
    console.print(render_calibration(calibration, str(output)))
