"""Seeded request sets from a task's length profile.

Lengths are log-normal around a median (``median * exp(sigma * z)``), rounded and clipped. The default
profile for ``lm-arena-chat`` (median prompt 120 tokens, clipped to 8-384) is an assumption: the ML.ENERGY
data publishes output lengths (Llama 3.1 8B: mean ~400 tokens) but not prompt lengths.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from measure.schema import WorkloadSection


@dataclass(frozen=True)
class Request:
    """One request: prompt tokens and the number of output tokens it must produce."""

    request_id: int
    input_len: int
    output_len: int


def _lognormal_ints(
    rng: np.random.Generator, n: int, median: int, sigma: float, lo: int, hi: int
) -> np.ndarray:
    draws = median * np.exp(sigma * rng.standard_normal(n)) if sigma > 0 else np.full(n, float(median))
    return np.clip(np.rint(draws), lo, hi).astype(int)


def histogram_ints(
    rng: np.random.Generator, n: int, bins: list[float], counts: list[int], lo: int, hi: int
) -> np.ndarray:
    """``n`` integers drawn from a histogram (a bin by its count, then uniform inside the bin), clipped to lo..hi."""
    p = np.asarray(counts, dtype=float)
    k = rng.choice(len(p), size=n, p=p / p.sum())
    edges = np.asarray(bins, dtype=float)
    draws = edges[k] + rng.random(n) * (edges[k + 1] - edges[k])
    return np.clip(np.floor(draws), lo, hi).astype(int)


def load_histogram(path: str) -> tuple[list[float], list[int]]:
    """``(bins, counts)`` of a published output-length histogram (``output_length_distribution`` of an ML.ENERGY
    ``datasets/mlenergy-v3/models/*.json`` file), the path relative to the project root or absolute."""
    import json
    from pathlib import Path

    file = Path(path)
    if not file.is_absolute():
        file = Path(__file__).resolve().parent.parent / file
    dist = json.loads(file.read_text())["output_length_distribution"]
    return list(dist["bins"]), list(dist["counts"])


def make_requests(
    workload: WorkloadSection, n: int, start_id: int = 0, seed_offset: int = 0
) -> list[Request]:
    """``n`` requests drawn with ``workload.seed + seed_offset`` (the same arguments give the same list)."""
    rng = np.random.default_rng([workload.seed, seed_offset])
    inputs = _lognormal_ints(
        rng,
        n,
        workload.input_len_median,
        workload.input_len_sigma,
        workload.input_len_min,
        workload.input_len_max,
    )
    if workload.forced_output_len is not None:
        outputs = np.full(n, workload.forced_output_len, dtype=int)
    elif workload.output_len_histogram:
        bins, counts = load_histogram(workload.output_len_histogram)
        outputs = histogram_ints(rng, n, bins, counts, workload.output_len_min, workload.output_len_max)
    else:
        outputs = _lognormal_ints(
            rng,
            n,
            workload.output_len_median,
            workload.output_len_sigma,
            workload.output_len_min,
            workload.output_len_max,
        )
    return [
        Request(start_id + k, int(i), int(o)) for k, (i, o) in enumerate(zip(inputs, outputs, strict=True))
    ]


def request_stream(workload: WorkloadSection, chunk: int) -> Iterator[Request]:
    """An endless, seeded stream of requests, drawn ``chunk`` at a time (chunk k uses seed offset k)."""
    for k in range(10**9):
        yield from make_requests(workload, chunk, start_id=k * chunk, seed_offset=k)


def max_context_len(workload: WorkloadSection, bucket_tokens: int = 1) -> int:
    """Longest prompt + output a request can reach, rounded up to ``bucket_tokens``."""
    out = workload.forced_output_len or workload.output_len_max
    total = workload.input_len_max + out
    return int(math.ceil(total / bucket_tokens) * bucket_tokens)
