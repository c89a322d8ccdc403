"""The Python API on the trained predictor: structure, invariants and monotone facts (never predicted numbers)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import estimator
from estimator.catalog.catalog import UnknownKeyError
from estimator.schema import Estimate, Plan, WhatIf
from estimator.serve.api import estimate, load_predictor, plan, predict_frame, what_if
from estimator.validation import ImpossibleConfigurationError


@pytest.fixture(scope="module")
def llama_estimate() -> Estimate:
    return estimate("llama-70b", "chat", "b200", max_itl_ms=30, predictor=load_predictor())


def test_public_names_resolve_lazily():
    """README promises `from estimator import estimate, what_if, plan, predict_frame, load_predictor`."""
    for name in ("estimate", "what_if", "plan", "predict_frame", "load_predictor"):
        assert callable(getattr(estimator, name))


def test_frontier_is_pareto_optimal_and_contains_the_chosen_rows(llama_estimate):
    """The frontier is sorted by latency with strictly falling energy; the chosen rows are its minima."""
    est = llama_estimate
    assert est.frontier and len(est.frontier) <= len(est.configurations)
    latency = [p.value(est.latency_metric) for p in est.frontier]
    energy = [p.value(est.energy_metric) for p in est.frontier]
    assert latency == sorted(latency) and all(b < a for a, b in zip(energy, energy[1:], strict=False))
    assert est.min_energy.value(est.energy_metric) == min(p.value(est.energy_metric) for p in est.configurations)
    assert est.min_energy in est.frontier
    within = est.min_energy_within_limit
    assert within is not None and within.value("median_itl_ms") <= 30
    assert within.value(est.energy_metric) == min(p.value(est.energy_metric) for p in est.configurations
                                                  if p.value("median_itl_ms") <= 30)


def test_every_configuration_fits_and_carries_consistent_intervals(llama_estimate):
    """Infeasible batches must be gone; every value sits in its p10-p90; the layout is the engine's."""
    for p in llama_estimate.configurations:
        assert p.status == "ok" and not any("exceeds" in w for w in p.warnings)
        for metric in p.metrics.values():
            assert metric.p10 <= metric.value <= metric.p90
        c = p.configuration
        assert c.tensor_parallel == c.num_gpus  # dense model: TP over all GPUs, as vLLM setups in ML.ENERGY
    assert any("vLLM" in a for a in llama_estimate.assumptions)


def test_estimate_round_trips_through_json(llama_estimate):
    """`--json` consumers parse the output back into the schema; nothing may be lost on the way."""
    assert Estimate.model_validate_json(llama_estimate.model_dump_json()) == llama_estimate


def test_impossible_configuration_reports_the_memory_arithmetic():
    """Llama 405B cannot fit on one L4; the API raises the typed error the CLI maps to exit 3, carrying the
    estimate with the arithmetic (weights vs memory), never an empty result."""
    with pytest.raises(ImpossibleConfigurationError) as info:
        estimate("llama-405b", "chat", "l4", num_gpus=1)
    est = info.value.result
    assert not est.configurations and est.infeasible
    reason = est.infeasible[0].reason
    assert "does not fit" in reason and "GB" in reason


def test_unknown_names_raise_with_close_matches():
    """A typo must name its likely intended key, never silently pick one."""
    with pytest.raises(UnknownKeyError) as info:
        estimate("llama-70", "chat", "b200")
    assert "llama-70b" in info.value.matches
    with pytest.raises(ValueError, match="outside"):
        estimate("llama-70b", "chat", "b200", num_gpus=0)


def test_more_gpus_lower_the_latency_of_the_fastest_row():
    """Monotone fact: 8 H100s serve the smallest batch faster than 1 (tensor parallel splits the weights read)."""
    fast = estimate("llama-8b", "chat", "h100", num_gpus=[1, 8], max_num_seqs=8)
    by_count = {p.configuration.num_gpus: p.value("median_itl_ms") for p in fast.configurations}
    assert by_count[8] < by_count[1]


def test_what_if_without_changes_has_zero_deltas():
    """A what-if that changes nothing must say nothing changed (a what-if reports changes, never noise)."""
    result = what_if({"model": "llama-70b", "task": "chat", "gpu": "b200", "num_gpus": 2})
    assert isinstance(result, WhatIf) and result.base == result.changed
    for delta in result.deltas.values():
        assert delta.absolute == 0 and delta.percent == 0


def test_what_if_rederives_parallelism_and_fills_the_gpu_count():
    """Changing num_gpus must re-pick TP (not keep the base's), and a missing count picks the fewest that fit."""
    result = what_if({"model": "llama-70b", "task": "chat", "gpu": "b200"}, gpu="h100", num_gpus=4)
    assert result.base.configuration.num_gpus == 1  # 70B in bf16 fits one 180 GB B200
    assert result.changed.configuration.gpu_model == "H100-SXM"
    assert result.changed.configuration.tensor_parallel == 4
    assert set(result.deltas) >= {"energy_per_token_joules", "median_itl_ms", "tokens_per_sec_per_watt"}
    with pytest.raises(ValueError, match="unknown configuration key"):
        what_if({"model": "llama-70b", "task": "chat", "gpu": "b200"}, gpuu="h100")


def test_plan_covers_the_demand_within_the_latency_limit():
    """The plan's replicas must serve the demand, at the stated ITL, and its power must add up."""
    result = plan("llama-70b", "chat", demand_tokens_per_sec=20_000, max_itl_ms=50)
    assert isinstance(result, Plan) and result.chosen is not None
    chosen = result.chosen
    assert chosen.replicas >= 1 and chosen.capacity_total >= 20_000
    assert chosen.prediction.value("median_itl_ms") <= 50
    assert math.isclose(chosen.power_kw, chosen.replicas * chosen.prediction.value("avg_power_watts") / 1e3)
    assert math.isclose(chosen.energy_per_day_kwh, 24 * chosen.power_kw)
    energy = chosen.costs.energy_per_day_kwh.value
    assert all(energy <= d.costs.energy_per_day_kwh.value for d in result.alternatives)
    assert all(d.prediction.configuration != chosen.prediction.configuration for d in result.alternatives)


def test_plan_with_only_a_power_budget_stays_within_it():
    """'What does 100 kW serve?' must never exceed 100 kW, and a tiny budget must explain itself."""
    result = plan("llama-70b", "chat", power_budget_kw=100, max_itl_ms=50)
    assert result.chosen is not None and result.chosen.power_kw <= 100 and result.chosen.demand_served > 0
    too_small = plan("llama-70b", "chat", demand_tokens_per_sec=1e6, power_budget_kw=1, max_itl_ms=50)
    assert too_small.chosen is None and "budget" in too_small.reason


def test_predict_frame_keeps_row_order_and_never_aborts():
    """Batch prediction: a bad row in the middle gets a reason, its neighbours still get numbers."""
    rows = pd.DataFrame([{"model_id": "llama-8b", "task": "chat", "gpu_model": "h100", "num_gpus": 1,
                          "max_num_seqs": 64},
                         {"model_id": "nope", "task": "chat", "gpu_model": "h100", "num_gpus": 1},
                         {"model_id": "llama-8b", "task": "chat", "gpu_model": "h100", "num_gpus": 2,
                          "max_num_seqs": 64}])
    out = predict_frame(rows)
    assert out["status"].tolist() == ["ok", "error", "ok"]
    assert out["num_gpus"].tolist() == [1, 1, 2]
    assert out["energy_per_token_joules"].notna().tolist() == [True, False, True]
