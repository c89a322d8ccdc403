"""The physics-scaled nearest-neighbour member (estimator/learn/neighbours.py): hand-checked weights, the GPU
descriptors left out of the distance, a lossless round trip, and exact additivity inside a target's ensemble."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from estimator.learn.family import feature_names
from estimator.learn.neighbours import EXCLUDED_FEATURES, NeighbourMember
from estimator.learn.predictor import OFFSETS, TargetRegressor, TargetSpec


def _frame(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(values)


def test_prediction_is_inverse_squared_distance_mean_of_k_nearest():
    """Two features, k = 2: the query is equidistant from runs A and B and far from
    C, so the residual is the plain mean of A's and B's; a wrong distance or weight would pull C in."""
    train = _frame({"a": [0.0, 1.0, 10.0], "b": [0.0, 0.0, 0.0]})
    member = NeighbourMember("none", k=2, weight=0.5).fit(train, ["a", "b"], np.array([1.0, 3.0, 100.0]))
    query = _frame({"a": [0.5], "b": [0.0]})
    assert member.predict_residual(query)[0] == pytest.approx(2.0)
    # closer to A: weights 1/(d^2 + floor) by hand
    scale = train["a"].std(ddof=0)
    d_a, d_b = (0.25 / scale) ** 2, (0.75 / scale) ** 2
    w_a, w_b = 1 / (d_a + 1e-3), 1 / (d_b + 1e-3)
    expected = (1.0 * w_a + 3.0 * w_b) / (w_a + w_b)
    assert member.predict_residual(_frame({"a": [0.25], "b": [0.0]}))[0] == pytest.approx(expected)


def test_gpu_descriptors_are_not_in_the_distance():
    """The hardware must enter through the physics offset only: a query differing from a run only in GPU
    datasheet values is that run's exact neighbour."""
    names = ["x", *sorted(EXCLUDED_FEATURES)]
    train = _frame({n: [0.0, 1.0, 2.0] for n in names})
    member = NeighbourMember("none", k=1).fit(train, names, np.array([5.0, 6.0, 7.0]))
    assert member.features_ == ["x"]
    query = _frame({n: [1.0 if n == "x" else 99.0] for n in names})
    assert member.predict_residual(query)[0] == pytest.approx(6.0)


def test_round_trip_is_lossless_to_nine_digits():
    """A saved predictor must predict what the trained one did (artifact JSON, no pickles)."""
    rng = np.random.default_rng(0)
    train = _frame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    member = NeighbourMember("none", k=5, centre=0.25).fit(train, ["a", "b"], rng.normal(size=40))
    loaded = NeighbourMember.from_text(member.to_text())
    query = _frame({"a": rng.normal(size=7), "b": rng.normal(size=7)})
    assert loaded.centre == 0.25 and loaded.k == 5
    np.testing.assert_allclose(loaded.predict_residual(query), member.predict_residual(query), rtol=1e-7)


def test_chunked_prediction_matches_one_block(monkeypatch):
    """Large frames are predicted in blocks; the block edge must not change any row."""
    import estimator.learn.neighbours as neighbours

    rng = np.random.default_rng(1)
    train = _frame({"a": rng.normal(size=30), "b": rng.normal(size=30)})
    member = NeighbourMember("none", k=3).fit(train, ["a", "b"], rng.normal(size=30))
    query = _frame({"a": rng.normal(size=11), "b": rng.normal(size=11)})
    whole = member.predict_residual(query)
    monkeypatch.setattr(neighbours, "_CHUNK_ROWS", 4)
    np.testing.assert_array_equal(member.predict_residual(query), whole)


def test_member_is_additive_inside_the_ensemble(llm_features_and_power):
    """TreeSHAP + bias + prior + the neighbour share + bound adjustment must equal the prediction exactly (the
    attribution's exactness rests on it), and the neighbour member must actually move the prediction."""
    features, power = llm_features_and_power
    spec = TargetSpec("avg_power_watts", "llm", "avg_power_watts", ("none", "gpu_tdp"), ceiling="gpu_tdp",
                      neighbour_offset="gpu_tdp")
    regressor = TargetRegressor(spec, num_rounds=20).fit(features, power)
    contrib, bias, offset = regressor.contributions(features)
    total = (contrib.sum(axis=1) + bias + offset + regressor.neighbour_adjustment(features)
             + regressor.bound_adjustment(features))
    np.testing.assert_allclose(total, regressor.predict_log(features), atol=1e-9)
    without = TargetRegressor(TargetSpec(spec.name, "llm", spec.column, spec.offsets, ceiling="gpu_tdp"),
                              num_rounds=20).fit(features, power)
    assert not np.allclose(without.predict_log(features), regressor.predict_log(features))
    assert np.isclose(regressor.neighbours_.weight, 1 / 3)
    assert regressor.neighbours_.offset in OFFSETS


@pytest.fixture(scope="module")
def llm_features_and_power():
    from estimator.catalog.catalog import load_catalog
    from estimator.learn.data import load_runs
    from estimator.learn.features import featurize
    from estimator.learn.training import split_by_family

    catalog = load_catalog()
    frame = split_by_family(load_runs(catalog=catalog))["llm"].iloc[::4].reset_index(drop=True)
    features = featurize(frame, catalog)
    assert set(feature_names("llm")) <= set(features.columns)
    return features, frame["avg_power_watts"].to_numpy(float)


def test_shared_search_gives_the_same_answer_and_is_not_shared_across_training_sets():
    """predict_end_metrics shares one neighbour search between targets; it must change no number, and members
    trained on different rows must not borrow each other's neighbours."""
    rng = np.random.default_rng(2)
    train = _frame({"a": rng.normal(size=30), "b": rng.normal(size=30)})
    query = _frame({"a": rng.normal(size=9), "b": rng.normal(size=9)})
    first = NeighbourMember("none", k=3).fit(train, ["a", "b"], rng.normal(size=30))
    same_rows = NeighbourMember("none", k=3).fit(train, ["a", "b"], rng.normal(size=30))
    other_rows = NeighbourMember("none", k=3).fit(train.iloc[:20], ["a", "b"], rng.normal(size=20))
    cache: dict = {}
    for member in (first, same_rows, other_rows):
        np.testing.assert_array_equal(member.predict_residual(query, cache), member.predict_residual(query))
    assert len(cache) == 2  # first and same_rows shared one search
