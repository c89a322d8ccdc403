"""Bit-identity check for speed work: every number the tool outputs must stay exactly the same.

Dumps (1) ``predict_frame`` on 4,000 configurations (the speed benchmark's generator: LLM and text-to-image rows,
with duplicates and errors among them) plus 500 hand-varied LLM rows (precision, parallelism, tokens, kv dtype,
blank cells), (2) one attribution (``explain_configuration``), (3) the CLI frontier's ``--json`` output and its
table with ``--explain``, and compares a dump with another one exactly (floats by their bits, NaN equal to NaN).

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bit_identity.py --write /tmp/before.pkl`` on the old code, then
``... --compare /tmp/before.pkl`` on the new code (exit 1 on any difference).
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def _varied_rows(n: int) -> pd.DataFrame:
    """LLM rows that exercise optional columns (blank cells as NaN or None), including invalid ones."""
    rng = np.random.default_rng(1)
    models = ["llama-70b", "Qwen/Qwen3-8B", "deepseek-ai/DeepSeek-V3", "openai/gpt-oss-120b", "Qwen/QwQ-32B",
              "no-such-model"]
    gpus = ["h100", "b200", "H200", "a100", "l40s", "mi300x"]
    rows = []
    for _ in range(n):
        rows.append({"model_id": rng.choice(models), "task": rng.choice(["chat", "lm-arena-chat", "gpqa"]),
                     "gpu_model": rng.choice(gpus), "num_gpus": int(rng.choice([1, 2, 4, 8])),
                     "max_num_seqs": rng.choice([8, 64, 256, 1024, np.nan]),
                     "weight_precision": rng.choice(["fp8", "bfloat16", None, "mxfp4"]),
                     "avg_output_len": rng.choice([np.nan, 100.0, 2000.0]),
                     "avg_input_len": rng.choice([np.nan, 50.0, 4000.0]),
                     "kv_cache_dtype": rng.choice(["auto", "fp8", None])})
    return pd.DataFrame(rows)


def dump() -> dict:
    """Every output checked: two predict_frame frames, one attribution (as JSON), the CLI frontier's --json text."""
    from speed import _configurations

    from estimator.serve.api import explain_configuration, predict_frame

    frames = {"speed_configs": predict_frame(_configurations(4_000)),
              "varied": predict_frame(_varied_rows(500))}
    attribution = explain_configuration({"model": "llama-70b", "task": "chat", "gpu": "b200", "num_gpus": 2,
                                         "max_num_seqs": 256})
    command = [sys.executable, "-m", "estimator.cli.main", "--model", "llama-70b", "--task", "chat", "--gpu", "b200"]
    env = {**os.environ, "COLUMNS": "160"}
    cli_json, cli_table = (subprocess.run(command + extra, cwd=ROOT, capture_output=True, text=True, check=True,
                                          env=env).stdout for extra in (["--json"], ["--explain"]))
    return {"frames": frames, "attribution": attribution.model_dump_json(), "cli_json": cli_json,
            "cli_table": cli_table}


def _same_frame(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    problems = []
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return [f"columns/length differ: {list(a.columns)} x {len(a)} vs {list(b.columns)} x {len(b)}"]
    for column in a.columns:
        x, y = a[column], b[column]
        if x.dtype != y.dtype:
            problems.append(f"{column}: dtype {x.dtype} vs {y.dtype}")
        elif x.dtype.kind == "f":
            if not np.array_equal(x.to_numpy().view(np.int64), y.to_numpy().view(np.int64)):
                problems.append(f"{column}: float bits differ in {(x.to_numpy() != y.to_numpy()).sum()} rows")
        elif [repr(v) for v in x] != [repr(v) for v in y]:
            problems.append(f"{column}: values differ")
    return problems


def compare(before: dict, after: dict) -> list[str]:
    """Differences between two dumps (empty: bit-identical)."""
    problems = []
    for name, frame in before["frames"].items():
        problems += [f"{name}: {p}" for p in _same_frame(frame, after["frames"][name])]
    for key in ("attribution", "cli_json", "cli_table"):
        if before[key] != after[key]:
            problems.append(f"{key} differs")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path)
    group.add_argument("--compare", type=Path)
    args = parser.parse_args()
    if args.write:
        args.write.write_bytes(pickle.dumps(dump()))
        print(f"wrote {args.write}")
        return
    problems = compare(pickle.loads(args.compare.read_bytes()), dump())
    print("\n".join(problems) if problems
          else "bit-identical: predict_frame (4,500 rows), attribution, CLI --json and table")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
