"""``joules-estimate predict`` on a 1,000,000-row CSV: wall time and peak memory of the whole command.

Target (issue 12, item 8): <= 3 minutes and <= 1 GB peak resident memory on 2 CPU cores. Not a timed test: run it
at a quiet moment, ``python benchmarks/predict_scale.py [--rows 1000000] [--write]``; ``--write`` records the result
in ``benchmarks/predict_scale.md``.

The input: every catalog LLM on H100/B200/H200 x 1-8 GPUs x sweep batches x output lengths 100-4,000 tokens, 10%
text-to-image rows, and 1% hostile rows (inf, 2.5 GPUs, a 10^12 batch, unknown models, extra fields) that must come
back as that row's error while the rest is predicted. The command runs in a fresh process (imports, catalog and
predictor loading included; files over 8 MB are predicted by two spawned worker processes); peak memory is the
largest sum of resident memory over the command's process tree, sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S, TARGET_MB = 180.0, 1024.0
HOSTILE = (["llama-8b", "chat", "h100", "inf", "64", "", ""], ["llama-8b", "chat", "h100", "2.5", "64", "", ""],
           ["llama-8b", "chat", "h100", "1", "1000000000000", "", ""], ["no-such-model", "chat", "h100", "1", "", "",
                                                                        ""],
           ["llama-8b", "chat", "h100", "1", "64", "100", "", "extra"], ["=cmd|' /C calc'!A0", "chat", "h100", "1",
                                                                        "64", "", ""])


def write_configurations(path: Path, rows: int, seed: int = 0) -> None:
    """A seeded CSV of ``rows`` configurations (see the module docstring)."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from estimator.catalog.catalog import load_catalog
    from estimator.serve.planning import DIFFUSION_BATCHES, GPU_COUNTS, LLM_BATCHES

    catalog = load_catalog()
    rng = np.random.default_rng(seed)
    llm = [k for k, m in catalog.models.items() if m.kind == "llm"]
    images = [k for k, m in catalog.models.items() if m.modality == "text-to-image"]
    gpus = ["H100-SXM", "B200", "H200"]
    kind = rng.random(rows)
    models_llm, models_img = rng.choice(llm, rows), rng.choice(images, rows)
    gpu, count = rng.choice(gpus, rows), rng.choice(GPU_COUNTS, rows)
    batch_llm, batch_img = rng.choice(LLM_BATCHES, rows), rng.choice(DIFFUSION_BATCHES, rows)
    output = rng.integers(100, 4000, rows)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model_id", "task", "gpu_model", "num_gpus", "max_num_seqs", "avg_output_len", "batch_size"])
        for i in range(rows):
            if kind[i] < 0.01:
                writer.writerow(HOSTILE[i % len(HOSTILE)])
            elif kind[i] < 0.11:
                writer.writerow([models_img[i], "text-to-image", gpu[i], count[i], "", "", batch_img[i]])
            else:
                writer.writerow([models_llm[i], "lm-arena-chat", gpu[i], count[i], batch_llm[i], output[i], ""])


def run(rows: int) -> dict:
    """Generate, predict in a fresh process, check the output; returns the measurements."""
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "configs.csv", Path(scratch) / "predictions.csv"
        write_configurations(source, rows)
        load = os.getloadavg()[0]
        command = [sys.executable, "-m", "estimator.cli", "predict", "--input", str(source), "--output", str(target)]
        start = time.perf_counter()
        with open(Path(scratch) / "stderr.txt", "w+") as stderr:
            proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)})
            total_mb = 0.0
            while proc.poll() is None:
                total_mb = max(total_mb, tree_rss_mb(proc.pid))
                time.sleep(0.2)
            wall = time.perf_counter() - start
            stderr.seek(0)
            err = stderr.read()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command and its reaped workers
        peak_mb, cpu_s = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
        if proc.returncode != 0:
            raise SystemExit(f"predict failed ({proc.returncode}): {err[-2000:]}")
        with open(target, newline="") as handle:
            reader = csv.DictReader(handle)
            statuses = {}
            for row in reader:
                statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    return {"rows": rows, "wall_s": wall, "peak_mb": peak_mb, "total_mb": total_mb, "cpu_s": cpu_s,
            "statuses": statuses, "load": load, "summary": err.strip().splitlines()[0]}


def tree_rss_mb(pid: int) -> float:
    """Resident memory (MB) of a process and all its descendants now, from /proc (Linux)."""
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def report(result: dict) -> str:
    verdict = "meets" if result["wall_s"] <= TARGET_S and result["total_mb"] <= TARGET_MB else "MISSES"
    return (f"# predict at scale\n\nMeasured by `benchmarks/predict_scale.py` on "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPU cores ({platform.machine()}), Python "
            f"{platform.python_version()}, load average {result['load']:.1f} at the start.\n\n"
            f"| rows | wall s | CPU s, all processes | rows/s | peak RSS MB, all processes | largest process MB | "
            f"target | |\n|---|---|---|---|---|---|---|---|\n"
            f"| {result['rows']:,} | {result['wall_s']:.1f} | {result['cpu_s']:.0f} | "
            f"{result['rows'] / result['wall_s']:,.0f} | "
            f"{result['total_mb']:.0f} | {result['peak_mb']:.0f} | <= {TARGET_S:.0f} s, <= {TARGET_MB:.0f} MB | "
            f"{verdict} |\n\n"
            f"Peak memory of all processes is the largest sum of VmRSS over the command and its two worker processes, "
            f"sampled every 0.2 s (shared pages counted once per process, so this over-counts).\n\n"
            f"Output statuses: {result['statuses']}; the command said: `{result['summary']}`.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--write", action="store_true", help="write benchmarks/predict_scale.md")
    args = parser.parse_args()
    text = report(run(args.rows))
    print(text)
    if args.write:
        (ROOT / "benchmarks" / "predict_scale.md").write_text(text)


if __name__ == "__main__":
    main()
