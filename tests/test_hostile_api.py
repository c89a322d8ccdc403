"""Hostile arguments to the Python API (issue 12, items 4, 5, 7): a wrong type or value raises a typed error naming
the argument (never AttributeError or 'math domain error'), and an impossible configuration raises
ImpossibleConfigurationError, the error the CLI maps to exit 3."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import estimator
from estimator.validation import ImpossibleConfigurationError, InputError

LLM = ("llama-70b", "chat", "b200")
BASE = {"model": "llama-70b", "task": "chat", "gpu": "b200", "num_gpus": 2}


@pytest.fixture(scope="module", autouse=True)
def _predictor_loaded_once():
    estimator.load_predictor()


ESTIMATE_ARGS = [
    ("model-int", dict(model=123), r"model"), ("model-none", dict(model=None), r"model"),
    ("task-list", dict(task=["chat"]), r"task"), ("gpu-dict", dict(gpu={"b200": 1}), r"gpu"),
    ("gpus-text", dict(num_gpus="two"), r"num_gpus='two' is not a number"),
    ("gpus-fraction", dict(num_gpus=2.5), r"num_gpus=2\.5 must be a whole number"),
    ("gpus-bool", dict(num_gpus=True), r"num_gpus=True is a boolean"),
    ("gpus-inf", dict(num_gpus=math.inf), r"num_gpus=inf is not a finite"),
    ("gpus-list-bad", dict(num_gpus=[1, "x"]), r"num_gpus='x'"),
    ("gpus-dict", dict(num_gpus={"a": 1}), r"num_gpus"),
    ("batch-1e12", dict(max_num_seqs=10**12), r"max_num_seqs=1e\+12 is outside"),
    ("output-inf", dict(output_tokens=math.inf), r"output_tokens=inf is not a finite"),
    ("output-nan", dict(output_tokens=math.nan), r"output_tokens=nan is not a finite"),
    ("output-10e308", dict(output_tokens=10**308), r"output_tokens=1e\+308 is outside"),
    ("input-negative", dict(input_tokens=-5), r"input_tokens=-5 is outside"),
    ("itl-inf", dict(max_itl_ms=math.inf), r"max_itl_ms=inf"),
    ("precision-int", dict(precision=8), r"precision"),
    ("resolution-int", dict(resolution=1024), r"resolution"),
]


@pytest.mark.parametrize(("change", "pattern"), [c[1:] for c in ESTIMATE_ARGS], ids=[c[0] for c in ESTIMATE_ARGS])
def test_estimate_arguments(change, pattern):
    """estimate(): each bad argument raises InputError naming it (a TypeError-like mistake included)."""
    args = dict(zip(("model", "task", "gpu"), LLM, strict=True))
    args.update(change)
    with pytest.raises(InputError, match=pattern):
        estimator.estimate(args.pop("model"), args.pop("task"), args.pop("gpu"), **args)


def test_estimate_impossible_raises_typed_error_with_the_result():
    """Nothing fits: the API raises what the CLI maps to exit 3, carrying the infeasible list."""
    with pytest.raises(ImpossibleConfigurationError, match="does not fit") as info:
        estimator.estimate("llama-405b", "chat", "l4", num_gpus=1)
    assert info.value.result.infeasible and not info.value.result.configurations


def test_estimate_tp3_raises_typed_error():
    """TP 3 for a 64-head model: the vLLM rule, as a typed error."""
    with pytest.raises(ImpossibleConfigurationError, match="does not divide"):
        estimator.estimate(*LLM, num_gpus=3)


WHAT_IF_ARGS = [
    ("base-string", "llama-70b", {}, r"base"),
    ("base-none", None, {}, r"base"),
    ("change-gpus-fraction", BASE, dict(num_gpus=2.5), r"num_gpus=2\.5 must be a whole number"),
    ("change-gpus-inf", BASE, dict(num_gpus=math.inf), r"num_gpus=inf"),
    ("change-batch-huge", BASE, dict(batch=10**12), r"batch=1e\+12 is outside"),
    ("change-unknown-key", BASE, dict(colour="red"), r"unknown .*'colour'"),
    ("base-unknown-key", {**BASE, "colour": "red"}, {}, r"unknown .*'colour'"),
    ("base-gpus-bool", {**BASE, "num_gpus": True}, {}, r"num_gpus=True is a boolean"),
    ("change-output-nan", BASE, dict(output_tokens=math.nan), r"output_tokens=nan"),
]


@pytest.mark.parametrize(("base", "changes", "pattern"), [c[1:] for c in WHAT_IF_ARGS],
                         ids=[c[0] for c in WHAT_IF_ARGS])
def test_what_if_arguments(base, changes, pattern):
    """what_if(): a base that is not a mapping, or a bad change, raises InputError naming it."""
    with pytest.raises(InputError, match=pattern):
        estimator.what_if(base, **changes)


def test_what_if_both_sides_impossible():
    """Both sides impossible: ImpossibleConfigurationError (the CLI's exit 3)."""
    with pytest.raises(ImpossibleConfigurationError, match="does not divide"):
        estimator.what_if({**BASE, "num_gpus": 3}, batch=64)


PLAN_ARGS = [
    ("demand-inf", dict(demand_tokens_per_sec=math.inf), r"demand_tokens_per_sec=inf is not a finite"),
    ("demand-nan", dict(demand_tokens_per_sec=math.nan), r"not a finite"),
    ("demand-text", dict(demand_rps="lots"), r"demand_rps='lots' is not a number"),
    ("power-huge", dict(demand_rps=1, power_budget_kw=1e300), r"power_budget_kw=1e\+300 is outside"),
    ("gpu-budget-fraction", dict(demand_rps=1, gpu_budget=2.5), r"gpu_budget=2\.5 must be a whole number"),
    ("gpus-not-list", dict(demand_rps=1, gpus=5), r"gpus"),
]


@pytest.mark.parametrize(("args", "pattern"), [c[1:] for c in PLAN_ARGS], ids=[c[0] for c in PLAN_ARGS])
def test_plan_arguments(args, pattern):
    """plan(): infinite or malformed demand and budgets raise InputError naming the argument."""
    with pytest.raises(InputError, match=pattern):
        estimator.plan("llama-70b", "chat", **args)


def test_predict_frame_needs_a_frame():
    """predict_frame() of something that is not a DataFrame names the argument."""
    with pytest.raises(InputError, match="configs"):
        estimator.predict_frame([{"model_id": "llama-8b"}])


def test_predict_frame_bad_cells_are_row_errors():
    """predict_frame(): inf / 10^12 / 2.5 cells are those rows' reasons; the good row is predicted."""
    frame = pd.DataFrame({"model_id": ["llama-8b"] * 4, "task": ["chat"] * 4, "gpu_model": ["h100"] * 4,
                          "num_gpus": [1, math.inf, 2.5, 1], "max_num_seqs": [64, 64, 64, 10**12]})
    out = estimator.predict_frame(frame)
    assert out["status"].tolist() == ["ok", "error", "error", "error"]
    assert "not a finite" in out.loc[1, "reason"] and "whole number" in out.loc[2, "reason"]
    assert "outside" in out.loc[3, "reason"]


@pytest.mark.parametrize(("quantity", "pattern"), [("batch_latency_s", r"not a quantity of llm"),
                                                   ("bogus", r"bogus"), (7, r"quantity")])
def test_explain_configuration_quantity(quantity, pattern):
    """explain_configuration() refuses a quantity of the other family (it used to explain another one)."""
    with pytest.raises(InputError, match=pattern):
        estimator.explain_configuration(BASE, quantity=quantity)
