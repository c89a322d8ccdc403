"""Whether a chosen configuration may be offered as a recommendation: the per-task latency ceiling.

A minimum-energy diffusion configuration can batch so many items that one batch takes hours (Wan 2.1 14B at 720p:
16 videos, ~8 h). Above the task's ceiling (a product decision, ``models/catalog/latency_ceilings.toml``) the
estimate carries a warning naming the lowest-energy configuration within the ceiling.
"""

from __future__ import annotations

import pandas as pd

from estimator.catalog.facility import load_latency_ceilings
from estimator.schema import Configuration
from estimator.serve import planning
from estimator.units import format_duration


def ceiling_warning(target: planning.Target, ok: pd.DataFrame, rows: dict, best, latency: str,
                    limit: float | None, energy: str) -> list[str]:
    """A one-line warning when the minimum-energy configuration's batch latency exceeds the task's ceiling and no
    explicit latency limit was given; empty otherwise.

    Args:
        target: resolved model and task.
        ok: predicted, feasible rows; ``rows`` maps their labels to :class:`Prediction`.
        best: label of the minimum-energy row (None when none).
        latency, energy: the latency and energy columns; ``limit`` the user's latency limit (None: none given).
    """
    ceiling = load_latency_ceilings().tasks.get(target.task_key)
    if ceiling is None or best is None or limit is not None or latency != "batch_latency_s":
        return []
    seconds = ceiling.max_recommended_latency_s
    if ok.loc[best, latency] <= seconds:
        return []
    within = planning.min_energy(ok, energy, latency, seconds)
    instead = (f"; the lowest-energy configuration within it is {_short(rows[within].configuration)} at "
               f"{format_duration(ok.loc[within, latency])}" if within is not None else "; none is within it")
    return [f"the minimum-energy configuration takes {format_duration(ok.loc[best, latency])} per batch, above the "
            f"{format_duration(seconds)} ceiling for {target.task_key} (a product decision, models/catalog/"
            f"latency_ceilings.toml); not a recommendation{instead} (or set a latency limit)"]


def _short(config: Configuration) -> str:
    batch = config.batch_size if config.batch_size is not None else config.max_num_seqs
    return f"{config.num_gpus} x {config.gpu_model}, batch {batch}"


def default_latency_limit(target: planning.Target) -> tuple[float | None, list[str]]:
    """(the task's latency ceiling in s, an assumption line) for a plan given no latency limit; (None, []) when the
    task has no ceiling."""
    ceiling = load_latency_ceilings().tasks.get(target.task_key)
    if ceiling is None:
        return None, []
    seconds = ceiling.max_recommended_latency_s
    return seconds, [f"latency: no limit given, so the task's ceiling applies: batch latency <= "
                     f"{format_duration(seconds)} (a product decision, models/catalog/latency_ceilings.toml)"]
