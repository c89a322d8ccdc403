"""Regenerate the output-length profile of each LLM/MLLM task in models/catalog/tasks.toml.

Reads datasets/mlenergy-v3/models/*__<task>.json (``output_length_distribution``: ``bins`` = 51 bin edges,
``counts`` = 50 counts, pooled over all of that model's configurations) and datasets/mlenergy-v3/tasks/<task>.json
(per-configuration ``avg_output_len``).

For every task it prints:
  * n_models                  number of model files with a histogram for the task
  * mean_hist                 mean over models of the per-model histogram mean (bin midpoints)  -> mean_output_tokens
  * mean_cfg                  mean over models of the per-model mean of ``avg_output_len`` over configurations
                              (cross-check; equals mean_hist up to binning error)
  * p90_model_weighted        90th percentile of the pooled distribution where every model's histogram is first
                              normalised to weight 1 (linear interpolation inside bins)      -> p90_output_tokens
  * p90_count_weighted        same, but pooling raw counts (models with more configurations weigh more)
  * p50, share at cap         median (model-weighted) and fraction of requests in the last bin

Usage: .venv/bin/python models/catalog/task_lengths.py   (from the repository root)
"""

from __future__ import annotations

import glob
import json
import os
from collections import defaultdict

import numpy as np

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "datasets", "mlenergy-v3")
TASKS = ["lm-arena-chat", "gpqa", "sourcegraph-fim", "image-chat", "video-chat"]


def _hist_mean(edges: np.ndarray, counts: np.ndarray) -> float:
    mids = (edges[:-1] + edges[1:]) / 2
    return float((mids * counts).sum() / counts.sum())


def _pooled_quantile(hists: list[tuple[np.ndarray, np.ndarray]], weights: list[float], q: float) -> float:
    """Quantile of a mixture of histograms (uniform density inside each bin)."""
    grid = np.unique(np.concatenate([e for e, _ in hists]))
    cdf = np.zeros_like(grid, dtype=float)
    for (edges, counts), w in zip(hists, weights, strict=True):
        c = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
        cdf += w * np.interp(grid, edges, c)  # piecewise-linear CDF = uniform within bins
    cdf /= sum(weights)
    return float(np.interp(q, cdf, grid))


def main() -> None:
    cfg_means: dict[tuple[str, str], list[float]] = defaultdict(list)
    for task in TASKS:
        with open(os.path.join(ROOT, "tasks", f"{task}.json")) as f:
            for c in json.load(f)["configurations"]:
                cfg_means[(task, c["model_id"])].append(c["avg_output_len"])

    for task in TASKS:
        files = sorted(glob.glob(os.path.join(ROOT, "models", f"*__{task}.json")))
        hists, means_h, means_c, totals, at_cap = [], [], [], [], []
        for path in files:
            with open(path) as f:
                d = json.load(f)
            dist = d.get("output_length_distribution")
            if not dist:
                continue
            edges = np.asarray(dist["bins"], dtype=float)
            counts = np.asarray(dist["counts"], dtype=float)
            hists.append((edges, counts))
            means_h.append(_hist_mean(edges, counts))
            totals.append(counts.sum())
            at_cap.append(counts[-1] / counts.sum())
            cm = cfg_means.get((task, d["model_id"]))
            if cm:
                means_c.append(float(np.mean(cm)))
        n = len(hists)
        p90_m = _pooled_quantile(hists, [1.0] * n, 0.9)
        p90_c = _pooled_quantile(hists, totals, 0.9)
        p50_m = _pooled_quantile(hists, [1.0] * n, 0.5)
        print(
            f"{task:16s} n_models={n:2d} mean_hist={np.mean(means_h):8.1f} mean_cfg={np.mean(means_c):8.1f} "
            f"(n={len(means_c)}) p50={p50_m:8.1f} p90_model_weighted={p90_m:8.1f} p90_count_weighted={p90_c:8.1f} "
            f"per-model mean range=[{min(means_h):.0f}, {max(means_h):.0f}] "
            f"mean share in last bin={np.mean(at_cap):.3f}"
        )


if __name__ == "__main__":
    main()
