"""Attribution (estimator.explain): exact additivity in log space, exact what-if deltas, complete grouping.

The properties hold for any fitted bundle, so the tests fit a small one (few rounds, a sample of the runs) in
memory: independent of whether ``models/predictors/default`` is trained or matches the current predictor code.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from estimator.catalog.catalog import load_catalog
from estimator.learn.family import feature_table
from estimator.learn.features import featurize

LLM = {"model_id": "Qwen/Qwen3-32B", "task": "gpqa", "gpu_model": "B200", "num_gpus": 1, "max_num_seqs": 128}
LLM_MOE = {"model_id": "Qwen/Qwen3-30B-A3B-Thinking-2507", "task": "gpqa", "gpu_model": "H100-SXM", "num_gpus": 2,
           "max_num_seqs": 64}
DIFFUSION = {"model_id": "black-forest-labs/FLUX.1-dev", "task": "text-to-image", "gpu_model": "B200",
             "num_gpus": 2, "batch_size": 4}
TOL = 1e-9


@pytest.fixture(scope="module")
def context():
    from estimator.learn.card import Card
    from estimator.learn.data import load_runs
    from estimator.learn.predictor import TARGETS, PredictorBundle, TargetRegressor
    from estimator.learn.training import split_by_family

    catalog = load_catalog()
    frames = split_by_family(load_runs(catalog=catalog))
    regressors = {}
    for target in TARGETS:
        frame = frames[target.family].sample(frac=0.5, random_state=0)
        regressors[target.name] = TargetRegressor(target, num_rounds=20).fit(
            featurize(frame, catalog), frame[target.column].to_numpy(float))
    card = Card(name="test", targets=sorted(regressors), target_specs={}, features={}, lightgbm_params={},
                num_rounds=20, data_hash="", catalog_hash=catalog.content_hash, training_rows={}, sources=[],
                versions={})  # no domain (no warnings) and no stored reference (computed from datasets/)
    return {"predictor": PredictorBundle(regressors, card), "catalog": catalog}


@pytest.fixture(scope="module")
def attributions(context):
    from estimator.explain.attribution import explain_frame

    return explain_frame(pd.DataFrame([LLM, LLM_MOE, DIFFUSION]), **context)


def _sum_log(attribution) -> float:
    return math.log(attribution.baseline) + sum(item.log_contribution for item in attribution.items)


def test_additivity_llm_and_diffusion(attributions, context):
    """baseline x product of multipliers must equal the prediction exactly, and the prediction must be the one
    predict_frame gives: otherwise the waterfall explains a number the tool never shows."""
    from estimator.serve.api import predict_frame

    predicted = predict_frame(pd.DataFrame([LLM, LLM_MOE, DIFFUSION]), **context)
    for attribution, (_, row) in zip(attributions, predicted.iterrows(), strict=True):
        assert attribution.status == "ok"
        assert abs(_sum_log(attribution) - math.log(attribution.prediction)) < TOL
        assert abs(attribution.log_ratio - sum(i.log_contribution for i in attribution.items)) < TOL
        for rollup in (attribution.by_layer, attribution.by_factor):
            assert abs(sum(i.log_contribution for i in rollup) - attribution.log_ratio) < TOL
        assert math.isclose(attribution.prediction, row[attribution.quantity], rel_tol=1e-9)
    assert {a.family for a in attributions} == {"llm", "diffusion"}


def test_energy_parts_power_minus_throughput(attributions):
    """Energy per token = power / throughput: each part must be additive on its own and the signed parts must
    rebuild the energy attribution, item by item (a sign slip would still pass a total-only check)."""
    attribution = attributions[0]
    assert [(p.target, p.sign) for p in attribution.parts] == [("avg_power_watts", 1),
                                                                ("output_throughput_tokens_per_sec", -1)]
    for part in attribution.parts:
        total = math.log(part.baseline) + sum(i.log_contribution for i in part.items)
        assert abs(total - math.log(part.prediction)) < TOL
    power, throughput = attribution.parts
    assert abs(math.log(power.prediction / throughput.prediction) - math.log(attribution.prediction)) < TOL
    combined = {}
    for part in attribution.parts:
        for item in part.items:
            combined[item.group] = combined.get(item.group, 0.0) + part.sign * item.log_contribution
    for item in attribution.items:
        assert abs(combined[item.group] - item.log_contribution) < TOL


def test_groups_cover_every_feature_once(attributions):
    """Each feature of the family's feature table must land in exactly one learned group of each part, named
    by its layer/factor, so no contribution is dropped or double counted."""
    for attribution in attributions:
        family = attribution.family
        expected = {f.name: f"{f.layer}/{f.factor}" for f in feature_table(family)}
        for part in attribution.parts:
            seen = {}
            for item in part.items:
                if item.kind != "learned":
                    continue
                for feature in item._features:
                    assert feature.name not in seen
                    seen[feature.name] = item.group
            assert seen == expected
        assert sum(1 for i in attribution.items if i.kind == "physics") >= 1


def test_no_change_gives_zero_deltas(context):
    """A what-if that changes nothing must move no group: any nonzero delta would be noise in the attribution."""
    from estimator.explain.attribution import explain_change

    change = explain_change(LLM, {}, **context)
    assert change.changed_keys == {}
    assert abs(change.log_ratio) < TOL and change.ratio == pytest.approx(1.0, abs=1e-12)
    assert all(abs(d.delta_log) < TOL for d in change.deltas)


@pytest.mark.parametrize("base, changed", [
    (LLM, {"max_num_seqs": 32}), (LLM, {"gpu_model": "H100-SXM", "num_gpus": 2}),
    (LLM_MOE, {"num_gpus": 1, "max_num_seqs": 128}), (DIFFUSION, {"num_gpus": 1, "batch_size": 1}),
])
def test_change_sums_to_log_ratio(context, base, changed):
    """Deltas of a what-if must add up exactly to log(changed / base) of the two predictions, by item, by layer
    and by factor, so the waterfall of a change is a decomposition, not an approximation."""
    from estimator.explain.attribution import explain_change

    change = explain_change(base, changed, **context)
    truth = math.log(change.changed.prediction / change.base.prediction)
    assert abs(change.log_ratio - truth) < TOL
    for deltas in (change.deltas, change.by_layer, change.by_factor):
        assert abs(sum(d.delta_log for d in deltas) - truth) < TOL
    assert abs(sum(change.part_deltas.values()) - truth) < TOL


def test_errors_do_not_abort_the_frame(context):
    """An unknown name becomes an error row; the other rows are still explained (like predict_frame)."""
    from estimator.explain.attribution import explain_frame

    out = explain_frame(pd.DataFrame([{**LLM, "model_id": "no-such-model"}, LLM]), **context)
    assert out[0].status == "error" and "no-such-model" in out[0].reason
    assert out[1].status == "ok"


def test_render_and_json(attributions, context):
    """The renderers must produce text naming the changed knob, and model_dump must be JSON-ready (the CLI's
    --json path)."""
    import json

    from rich.console import Console

    from estimator.explain.attribution import explain_change
    from estimator.explain.render import render_attribution, render_change

    console = Console(width=160, record=True)
    console.print(render_attribution(attributions[0]))
    console.print(render_change(explain_change(LLM, {"max_num_seqs": 32}, **context)))
    text = console.export_text()
    assert "baseline" in text and "max_num_seqs 128 -> 32" in text
    dumped = attributions[2].model_dump()
    assert json.loads(json.dumps(dumped)) == dumped  # JSON-ready: nothing numpy-typed or lost on the way
