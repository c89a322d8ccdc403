"""Calibration on the lent H200 (issue 11 item 6): two measured batch sizes calibrate the torch backend's MoE runs.

Run alone: ``PYTHONPATH=. .venv/bin/python benchmarks/calibration_demo.py`` (``benchmarks/calibration.py``
includes its section in ``benchmarks/calibration.md``). About a minute: one predictor fit.

The sweep is a ``datasets/local/*.jsonl`` file measured by ``measure/`` on the lent H200: a mixture-of-experts model
shape (Qwen3-30B-A3B) run by the project's torch CUDA-graph backend at >= 6 batch sizes. The predictor is refitted
without that file (so none of its rows is a training row), two batch sizes (nearest 16 and 256) are revealed to
``calibrate``, and the other batch sizes are predicted and compared with what was measured. It calibrates the
engine this machine runs (``torch-cudagraph``); a vLLM user does the same with their own vLLM runs.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from estimator.catalog.catalog import load_catalog  # noqa: E402
from estimator.paths import datasets_dir  # noqa: E402

MIN_BATCHES = 6
#: a validation sweep needs two revealed batch sizes and at least three to predict
MIN_VALIDATION_BATCHES = 5
CONFIG = ("model_id", "task", "gpu_model", "num_gpus", "max_num_seqs", "weight_precision", "tensor_parallel",
          "expert_parallel", "data_parallel", "avg_input_len", "avg_output_len", "engine")
MEASURED = ("avg_power_watts", "output_throughput_tokens_per_sec", "median_itl_ms", "energy_per_token_joules")


def find_sweep(runs, moe: bool = True) -> Path | None:
    """The local file holding a stable sweep (MoE, or dense with ``moe=False``) on the H200 with the torch backend
    (>= 6 batch sizes) among ``runs`` (``load_runs()``), if any; the last in name order."""
    catalog = load_catalog()
    local = runs[runs["source"].astype(str).str.startswith("local:") & runs["gpu_model"].eq("H200")
                 & runs["engine"].eq("torch-cudagraph")]
    found = None
    for source, group in local.groupby("source"):
        is_moe = all(catalog.models[m].architecture == "moe" for m in group["model_id"].unique())
        if is_moe == moe and group["max_num_seqs"].nunique() >= MIN_BATCHES:
            found = datasets_dir() / "local" / str(source).removeprefix("local:")
    return found


def _predictor_without(path: Path):
    """A predictor fitted on every run except ``path``'s, with the committed card's intervals."""
    from estimator.learn.training import train
    from estimator.serve.api import load_predictor

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "datasets"
        shutil.copytree(datasets_dir(), root, ignore=shutil.ignore_patterns("raw"))
        (root / "local" / path.name).unlink()
        bundle = train(root=root, evaluate=False)
    bundle.card.intervals = load_predictor().card.intervals
    return bundle


def demo_section() -> list[str]:
    """Markdown lines for ``benchmarks/calibration.md``: the local MoE sweep, then every validation sweep."""
    from estimator.learn.data import load_runs

    runs = load_runs(catalog=load_catalog())
    return [*_local_section(runs), *_validation_sections(set(runs["model_id"]))]


def _validation_sections(trained_models: set[str]) -> list[str]:
    """One comparison per ``datasets/validation`` sweep, predicted by the committed predictor (never trained on it);
    ``trained_models``: the models training rows come from."""
    from estimator.learn.data import load_validation_runs
    from estimator.serve.api import load_predictor

    validation = load_validation_runs()
    if validation.empty:
        return []
    lines = ["## Models and configurations no training row has (`datasets/validation`, measured on the lent H200s)", "",
             "Runs kept out of training (`datasets/README.md` says why), measured after the committed predictor was "
             "trained. The committed predictor predicts them as they are; two batch sizes are then revealed to "
             "`calibrate`.", ""]
    bundle = load_predictor()
    for source, sweep in validation.groupby("source", sort=True):
        if sweep["max_num_seqs"].nunique() >= MIN_VALIDATION_BATCHES:
            seen = sorted(set(sweep["model_id"]) & trained_models)
            note = ("the committed predictor (`models/predictors/default`); "
                    + (f"training has other runs of {', '.join(seen)}" if seen else "no training row is of this model"))
            lines += _comparison(sweep, bundle, f"`datasets/validation/{str(source).split(':', 1)[1]}`", note)
    return lines


def _local_section(runs) -> list[str]:
    path = find_sweep(runs)
    lines = ["## Demonstration on the lent H200 (torch backend, MoE)", ""]
    if path is None:
        lines += [f"No MoE sweep (Qwen3-30B-A3B shape) with >= {MIN_BATCHES} batch sizes on the H200 "
                  "(torch-cudagraph) is in `datasets/local` yet, so the MoE demonstration has not run; it runs as "
                  "soon as the file lands (`PYTHONPATH=. .venv/bin/python benchmarks/calibration.py`). "
                  "Until then, the same procedure on the dense sweep measured earlier on the lent H200:", ""]
        path = find_sweep(runs, moe=False)
        if path is None:
            return lines + ["(no dense H200 sweep either)", ""]
    sweep = runs[runs["source"].eq(f"local:{path.name}")]
    return lines + _comparison(sweep, _predictor_without(path), f"`{path.relative_to(datasets_dir().parent)}`",
                               "predictor refitted without this file")


def _comparison(sweep, bundle, label: str, predictor_note: str) -> list[str]:
    """Reveal two batch sizes (nearest 16 and 256) of ``sweep`` to ``calibrate`` against ``bundle``, predict the
    rest before and after: the markdown table."""
    from estimator.learn.calibration import calibrate
    from estimator.learn.calibration_apply import apply_calibration
    from estimator.learn.prediction import predict_frame

    catalog = load_catalog()
    sweep = sweep.sort_values("max_num_seqs").reset_index(drop=True)
    batches = sweep["max_num_seqs"].to_numpy(float)
    picks = sorted({int(np.argmin(np.abs(np.log(batches / b)))) for b in (16, 256)})
    revealed, rest = sweep.iloc[picks], sweep.drop(index=picks).reset_index(drop=True)
    calibration = calibrate(revealed[[*CONFIG, *MEASURED]], bundle, catalog=catalog)
    configs = rest[list(CONFIG)]
    before = predict_frame(configs, bundle, catalog)
    after = apply_calibration(before, configs, calibration, bundle, catalog)
    model = sweep["model_id"].iat[0]
    lines = [f"{label}: {model}, {len(sweep)} stable runs on {int(sweep['num_gpus'].iat[0])}x H200, "
              f"engine {sweep['engine'].iat[0]} ({sweep['engine_version'].iat[0]}); {predictor_note}; "
              f"revealed: max_num_seqs {', '.join(str(int(b)) for b in batches[picks])}. This calibrates the "
              "torch backend the lent machine runs; a vLLM user does the same with their own runs.", "",
              "| max_num_seqs | measured J/token | uncalibrated | calibrated | calibrated p10-p90 | inside |",
              "|---|---|---|---|---|---|"]
    measured = rest["energy_per_token_joules"].to_numpy(float)
    for i in range(len(rest)):
        low, high = after["energy_per_token_joules_p10"][i], after["energy_per_token_joules_p90"][i]
        lines.append(f"| {int(rest['max_num_seqs'][i])} | {measured[i]:.4f} | "
                     f"{before['energy_per_token_joules'][i]:.4f} | {after['energy_per_token_joules'][i]:.4f} | "
                     f"{low:.4f}-{high:.4f} | {'yes' if low <= measured[i] <= high else 'no'} |")
    ape = lambda p: np.abs(np.asarray(p, float) / measured - 1) * 100  # noqa: E731
    lines += ["", f"Median APE on the {len(rest)} predicted batch sizes: uncalibrated "
              f"{np.median(ape(before['energy_per_token_joules'])):.1f}%, calibrated "
              f"{np.median(ape(after['energy_per_token_joules'])):.1f}%.", ""]
    return lines


if __name__ == "__main__":
    print("\n".join(demo_section()))
