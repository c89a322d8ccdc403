"""Uncertainty-aware plan choice: interval-end columns, miss probabilities read off the intervals, margins,
'not distinguishable', and the training-domain check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from estimator.serve import risk


def test_columns_by_confidence():
    """p90 checks the latency's upper end and sizes on the capacity's lower end; median uses point values."""
    assert risk.latency_column("median_itl_ms", "p90") == "median_itl_ms_p90"
    assert risk.capacity_column("output_throughput_tokens_per_sec", "p90") == "output_throughput_tokens_per_sec_p10"
    assert risk.latency_column("median_itl_ms", "median") == "median_itl_ms"


def test_prob_above_hits_the_interval_ends():
    """By construction P(x > p90) = 10%, P(x > median) = 50%, P(x > p10) = 90%, with asymmetric sides."""
    value, p10, p90 = np.array([30.0]), np.array([20.0]), np.array([54.0])
    assert risk.prob_above(54.0, value, p10, p90)[0] == pytest.approx(0.10)
    assert risk.prob_above(30.0, value, p10, p90)[0] == pytest.approx(0.50)
    assert risk.prob_above(20.0, value, p10, p90)[0] == pytest.approx(0.90)
    assert 0.10 < risk.prob_above(40.0, value, p10, p90)[0] < 0.50


def test_issue_case_median_choice_is_risky():
    """The issue's plan: p90 ITL 54 ms against a 40 ms limit and p10 capacity 21k of 30k: risk well above 10%."""
    fleets = pd.DataFrame({"replicas": [3], "median_itl_ms": [35.0], "median_itl_ms_p10": [25.0],
                           "median_itl_ms_p90": [54.0], "tput": [11_000.0], "tput_p10": [7_000.0],
                           "tput_p90": [15_000.0]})
    out = risk.miss_risk(fleets, latency="median_itl_ms", limit=40.0, throughput="tput", demand=30_000.0)
    assert out["risk_latency"].iloc[0] > 0.1
    assert out["risk_capacity"].iloc[0] > 0.1
    assert out["risk"].iloc[0] > max(out["risk_latency"].iloc[0], out["risk_capacity"].iloc[0])
    marg = risk.margins(fleets, latency_col="median_itl_ms_p90", limit=40.0, capacity_col="tput_p10",
                        demand=30_000.0)
    assert marg["latency_margin_pct"].iloc[0] == pytest.approx(-35.0)
    assert marg["capacity_margin_pct"].iloc[0] == pytest.approx(-30.0)


def test_distinguishable_needs_disjoint_points():
    """A 10% power difference inside overlapping intervals is not a ranking (the H200 over B200 case)."""
    assert not risk.distinguishable((4.6, 3.8, 5.9), (5.1, 4.2, 6.5))
    assert risk.distinguishable((2.0, 1.8, 2.2), (5.1, 4.2, 6.5))


def test_outside_domain_lists_untrained_gpus():
    """A GPU with no training data for the engine must be named, never silently ranked."""
    assert risk.outside_domain(["H200", "MI300X"], ["H100-SXM", "H200", "B200"]) == ["MI300X"]
    assert risk.outside_domain(["H200"], None) == []
