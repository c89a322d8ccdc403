"""Planning steps on synthetic frames and the real catalog: frontier, chosen point, fleet sizing, sweeps."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from estimator.catalog.catalog import UnknownKeyError, load_catalog
from estimator.serve import planning


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def _points() -> pd.DataFrame:
    return pd.DataFrame({"energy": [4.0, 2.0, 2.5, 1.0, 1.0, 3.0], "latency": [5.0, 10.0, 12.0, 40.0, 60.0, 50.0],
                         "num_gpus": [8, 8, 4, 2, 1, 1]})


def test_pareto_front_keeps_only_non_dominated_points_in_latency_order():
    """The table the user reads is this front; a dominated row on it would recommend a strictly worse choice."""
    frame = _points()
    front = planning.pareto_front(frame, "energy", "latency")
    assert front == [0, 1, 3]
    energies = frame.loc[front, "energy"].to_numpy()
    assert (np.diff(energies) < 0).all() and (np.diff(frame.loc[front, "latency"].to_numpy()) > 0).all()
    for label in set(frame.index) - set(front):  # every dropped point is dominated by a front point
        row = frame.loc[label]
        assert any((frame.loc[f, "energy"] <= row["energy"]) and (frame.loc[f, "latency"] <= row["latency"])
                   for f in front)


def test_min_energy_respects_the_latency_limit_and_breaks_ties_by_latency():
    """`--max-itl-ms` must never choose a row over the limit; equal energies go to the faster row."""
    frame = _points()
    assert planning.min_energy(frame, "energy", "latency") == 3  # 1.0 J at 40 beats 1.0 J at 60
    assert planning.min_energy(frame, "energy", "latency", limit=12.0) == 1
    assert planning.min_energy(frame, "energy", "latency", limit=1.0) is None


def _fleet_frame() -> pd.DataFrame:
    return pd.DataFrame({"num_gpus": [2, 8], "throughput": [1000.0, 5000.0], "avg_power_watts": [2000.0, 8000.0],
                         "avg_power_watts_p10": [1500.0, 6000.0], "avg_power_watts_p90": [2500.0, 10000.0]})


def test_size_fleet_rounds_replicas_up_and_applies_budgets():
    """Replicas must cover the demand (ceil), and a budget must remove deployments that exceed it."""
    fleets = planning.size_fleet(_fleet_frame(), throughput="throughput", demand=4500.0)
    assert fleets["replicas"].tolist() == [5, 1]
    assert (fleets["capacity_total"] >= 4500.0).all()
    assert fleets["fleet_power_watts"].tolist() == [10000.0, 8000.0]
    assert planning.best_deployment(fleets, demand_given=True) == 1
    within = planning.size_fleet(_fleet_frame(), throughput="throughput", demand=4500.0, gpu_budget=9)
    assert within.index.tolist() == [1]
    assert planning.size_fleet(_fleet_frame(), throughput="throughput", demand=4500.0,
                               power_budget_watts=7000.0).empty


def test_size_fleet_with_only_a_power_budget_reports_the_demand_served():
    """'How much does 50 kW serve?' is the budget-only question; replicas = floor(budget / power)."""
    fleets = planning.size_fleet(_fleet_frame(), throughput="throughput", power_budget_watts=50_000.0)
    assert fleets["replicas"].tolist() == [25, 6]
    assert fleets["demand_served"].tolist() == [25_000.0, 30_000.0]
    assert (fleets["fleet_power_watts"] <= 50_000.0).all()
    assert planning.best_deployment(fleets, demand_given=False) == 1
    with pytest.raises(ValueError, match="demand"):
        planning.size_fleet(_fleet_frame(), throughput="throughput")


def test_llm_sweep_uses_the_engine_parallelism_and_task_profile(catalog):
    """The sweep must describe what vLLM would run: TP over all GPUs for dense, EP for MoE, the task's input mean
    and the output length profile (Llama-3.1-70B's own measured mean on chat, not the task-wide mean)."""
    dense = planning.resolve_target("llama-70b", "chat", catalog)
    frame = planning.sweep_frame(dense, ["B200"])
    assert len(frame) == len(planning.GPU_COUNTS) * len(planning.LLM_BATCHES)
    assert (frame["tensor_parallel"] == frame["num_gpus"]).all() and (frame["expert_parallel"] == 1).all()
    assert dense.profile_output_level == "model"
    assert math.isclose(frame["avg_output_len"].iloc[0], dense.profile_output_tokens)
    moe_key = next(k for k, m in catalog.models.items() if m.architecture == "moe" and m.kind == "llm")
    moe = planning.resolve_target(moe_key, "chat", catalog)
    frame = planning.sweep_frame(moe, ["H100-SXM"], num_gpus=[4], batches=[64])
    assert frame[["tensor_parallel", "expert_parallel"]].iloc[0].tolist() == [1, 4]


def test_diffusion_sweep_sets_ulysses_to_the_gpu_count_and_skips_impossible_layouts(catalog):
    """xDiT needs Ulysses x Ring = GPU count; a layout that cannot make the count must not be predicted."""
    target = planning.resolve_target("flux-dev", "text-to-image", catalog)
    frame = planning.sweep_frame(target, ["H100-SXM"], batches=[4], height=768, width=1024)
    assert (frame["ulysses_degree"] == frame["num_gpus"]).all() and (frame["ring_degree"] == 1).all()
    assert frame[["image_height", "image_width"]].iloc[0].tolist() == [768, 1024]
    fixed = planning.sweep_frame(target, ["H100-SXM"], batches=[1], ulysses_degree=2)
    assert fixed["num_gpus"].tolist() == [2, 4, 8] and (fixed["ulysses_degree"] * fixed["ring_degree"]
                                                         == fixed["num_gpus"]).all()


def test_feasible_mask_drops_batches_whose_kv_cache_does_not_fit(catalog):
    """A max_num_seqs beyond what fits would be run at a smaller batch; it is not a distinct configuration."""
    target = planning.resolve_target("llama-70b", "chat", catalog)
    configs = planning.sweep_frame(target, ["H100-SXM"], num_gpus=[4], batches=[8, 4096])
    predictions = pd.DataFrame({"status": ["ok", "ok"]})
    assert planning.feasible_mask(configs, predictions, catalog).tolist() == [True, False]
    assert planning.feasible_mask(configs, pd.DataFrame({"status": ["error", "ok"]}), catalog).tolist() == [False,
                                                                                                            False]


def test_resolve_target_rejects_mismatched_model_and_task(catalog):
    """A diffusion model on a chat task is a user error with a message, not a crash deeper down."""
    with pytest.raises(ValueError, match="cannot run task"):
        planning.resolve_target("flux-dev", "chat", catalog)
    with pytest.raises(UnknownKeyError, match="llama-70b"):
        planning.resolve_target("llama-70", "chat", catalog)


@pytest.mark.parametrize("text", ["1024", "axb", "0x512", "1024x"])
def test_parse_resolution_names_the_bad_value(text):
    """--resolution takes HEIGHTxWIDTH; anything else must be a one-line error naming the value."""
    with pytest.raises(ValueError, match="resolution"):
        planning.parse_resolution(text)
