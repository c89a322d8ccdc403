"""Prospective check: the committed predictor on this project's own runs of models or configurations no training
row has.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/prospective.py`` (seconds; writes ``benchmarks/prospective.md``).

The runs are ``datasets/validation/*.jsonl`` (``estimator.learn.data.load_validation_runs``): measured on the lent
H200s with the torch backend after the committed predictor was trained, and never read by ``load_runs``, so no
training row has their configuration (model, GPU, GPU count, engine); the table says whether the model itself has
training rows (measured elsewhere). Every configuration is predicted as a user would ask for it
(model, task, GPU, GPU count, batch, engine, prompt and output length of the run) and compared with what was
measured: APE per quantity and whether the measurement falls inside the predictor's p10-p90 interval.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from estimator.catalog.catalog import load_catalog  # noqa: E402
from estimator.learn.calibration_runs import CONFIG_COLUMNS  # noqa: E402
from estimator.learn.data import load_runs, load_validation_runs  # noqa: E402
from estimator.learn.prediction import predict_frame  # noqa: E402
from estimator.serve.api import load_predictor  # noqa: E402

OUT = Path(__file__).with_name("prospective.md")
COMMAND = "PYTHONPATH=. .venv/bin/python benchmarks/prospective.py"
QUANTITIES = {"energy_per_token_joules": "J/token", "avg_power_watts": "power (W)",
              "output_throughput_tokens_per_sec": "throughput (tok/s)", "median_itl_ms": "median ITL (ms)"}


def compare(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: measured and predicted value, ratio and inside-interval flag per quantity."""
    catalog = load_catalog()
    configurations = runs[[c for c in CONFIG_COLUMNS if c in runs]].reset_index(drop=True)
    predicted = predict_frame(configurations, load_predictor(), catalog)
    out = runs[["source", "model_id", "gpu_model", "num_gpus", "max_num_seqs"]].reset_index(drop=True).copy()
    for quantity in QUANTITIES:
        measured = runs[quantity].to_numpy(float)
        out[f"{quantity}_measured"] = measured
        out[f"{quantity}_predicted"] = predicted[quantity].to_numpy(float)
        out[f"{quantity}_inside"] = ((measured >= predicted[f"{quantity}_p10"].to_numpy(float))
                                     & (measured <= predicted[f"{quantity}_p90"].to_numpy(float)))
    return out


def report(table: pd.DataFrame, trained_models: set[str]) -> str:
    lines = ["# Prospective check: models and configurations no training row has (generated)", "",
             f"Command: `{COMMAND}`. Predictor: the committed `models/predictors/default`. Runs: "
             "`datasets/validation/*.jsonl`, measured on the lent H200s with the project's torch backend "
             "(`torch-cudagraph`, static batches, random weights of the model's exact shape) after the predictor was "
             "trained; `load_runs` never reads them. APE = |predicted / measured - 1|; inside = the measurement lies "
             "in the predicted p10-p90 interval (80% is the calibrated rate on held-out models).", "",
             "| file | model | GPUs | runs | model in training? | "
             + " | ".join(f"{label} median APE % (inside)" for label in QUANTITIES.values())
             + " | J/token predicted / measured |",
             "|---|---|---|---|---|" + "---|" * len(QUANTITIES) + "---|"]
    for source, group in table.groupby("source", sort=True):
        model = group["model_id"].iat[0]
        cells = []
        for quantity in QUANTITIES:
            ape = np.abs(group[f"{quantity}_predicted"] / group[f"{quantity}_measured"] - 1) * 100
            cells.append(f"{np.median(ape):.1f} ({int(group[f'{quantity}_inside'].sum())}/{len(group)})")
        ratio = group["energy_per_token_joules_predicted"] / group["energy_per_token_joules_measured"]
        gpus = f"{int(group['num_gpus'].iat[0])} x {group['gpu_model'].iat[0]}"
        lines.append(f"| `{str(source).split(':', 1)[1]}` | {model} | {gpus} | {len(group)} | "
                     f"{'yes' if model in trained_models else 'no'} | " + " | ".join(cells)
                     + f" | x{ratio.min():.2f}-x{ratio.max():.2f} |")
    every = [np.abs(table[f"{q}_predicted"] / table[f"{q}_measured"] - 1) * 100 for q in QUANTITIES]
    lines += ["", f"All {len(table)} runs: " + "; ".join(
        f"{label} median APE {np.median(ape):.1f}%, {int(table[f'{q}_inside'].sum())} of {len(table)} inside"
        for (q, label), ape in zip(QUANTITIES.items(), every, strict=True)) + ".", "",
        "Per run (batch = `max_num_seqs`, the static batch):", "",
        "| model | batch | measured J/token | predicted | measured W | predicted W | measured tok/s "
        "| predicted tok/s |",
        "|---|---|---|---|---|---|---|---|"]
    for _, row in table.sort_values(["model_id", "max_num_seqs"]).iterrows():
        lines.append(f"| {row['model_id']} | {int(row['max_num_seqs'])} | "
                     f"{row['energy_per_token_joules_measured']:.4f} | "
                     f"{row['energy_per_token_joules_predicted']:.4f} | {row['avg_power_watts_measured']:.0f} | "
                     f"{row['avg_power_watts_predicted']:.0f} | {row['output_throughput_tokens_per_sec_measured']:.0f}"
                     f" | {row['output_throughput_tokens_per_sec_predicted']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    runs = load_validation_runs()
    if runs.empty:
        print("no runs in datasets/validation")
        return
    table = compare(runs)
    OUT.write_text(report(table, set(load_runs()["model_id"])))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
