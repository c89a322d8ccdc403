"""The numpy booster evaluator (estimator/learn/trees.py) must return LightGBM's numbers bit for bit.

It replaces ``lightgbm.Booster.predict`` on small frames so that a cold ``joules-estimate`` skips importing LightGBM;
any difference would change what the tool outputs. Timing of the two paths (2 cores, 500 trees of 7 leaves):
numpy ~3-8 ms for 64 rows, LightGBM ~5-12 ms; at 1,024 rows numpy ~0.1 s and LightGBM ~0.07 s, hence
``NUMPY_MAX_ROWS``.
"""

import numpy as np
import pandas as pd
import pytest

from estimator.learn import trees
from estimator.learn.prediction import distinct_rows
from estimator.learn.trees import TextBooster, TreeArrays, import_lightgbm


def _bits(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=float).view(np.int64)


def _hostile_matrix(num_features: int, thresholds: np.ndarray, rows: int = 300) -> np.ndarray:
    """Random rows plus the values where an evaluator can go wrong: NaN, +-0, sub-kZeroThreshold values, +-inf and
    every split threshold exactly."""
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(rows, num_features)) * 5
    matrix[rng.random(matrix.shape) < 0.1] = np.nan
    matrix[rng.random(matrix.shape) < 0.05] = 0.0
    matrix[rng.random(matrix.shape) < 0.05] = -0.0
    matrix[rng.random(matrix.shape) < 0.05] = 1e-40
    matrix[rng.random(matrix.shape) < 0.02] = np.inf
    matrix[rng.random(matrix.shape) < 0.02] = -np.inf
    finite = thresholds[np.isfinite(thresholds)]
    picks = rng.random(matrix.shape) < 0.2
    matrix[picks] = rng.choice(finite, size=picks.sum())
    return matrix


def test_trained_boosters_bit_identical(bundle):
    """Every booster of the shipped predictor, on real-looking and hostile inputs, equals LightGBM exactly."""
    lgb = import_lightgbm()
    for regressor in bundle.regressors.values():
        for booster in regressor.boosters_.values():
            arrays = TreeArrays.from_text(booster.model_to_string())
            assert arrays is not None, "the shipped boosters use only what the numpy evaluator reproduces"
            matrix = _hostile_matrix(arrays.num_features, arrays.threshold)
            expected = lgb.Booster(model_str=booster.model_to_string()).predict(matrix)
            assert np.array_equal(_bits(arrays.predict(matrix)), _bits(expected))


def test_text_booster_switches_paths_with_identical_numbers(bundle):
    """Small frames take numpy and large ones LightGBM; both give the same bits for the same rows."""
    booster = bundle.regressors["avg_power_watts"].boosters_["none"]
    arrays = TreeArrays.from_text(booster.model_to_string())
    matrix = _hostile_matrix(arrays.num_features, arrays.threshold, rows=trees.NUMPY_MAX_ROWS + 50)
    large = TextBooster(booster.model_to_string()).predict(matrix)  # LightGBM
    small = TextBooster(booster.model_to_string()).predict(matrix[:40])  # numpy
    assert np.array_equal(_bits(small), _bits(large[:40]))


def test_missing_value_boosters_fall_back_to_lightgbm():
    """A booster trained with NaN inputs (missing type NaN, default directions) or single-leaf trees is either
    reproduced exactly or left to LightGBM; never evaluated wrongly."""
    lgb = import_lightgbm()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    x[rng.random(x.shape) < 0.2] = np.nan
    y = np.nan_to_num(x[:, 0]) * 2 + rng.normal(size=400)
    params = {"verbose": -1, "num_threads": 1, "num_leaves": 5, "min_data_in_leaf": 5}
    with_nan = lgb.train(params, lgb.Dataset(x, y), num_boost_round=20)
    constant = lgb.train(params, lgb.Dataset(np.nan_to_num(x), np.ones(400)), num_boost_round=3)
    probe = _hostile_matrix(4, np.array([0.0, 1.0]))
    for booster in (with_nan, constant):
        text = booster.model_to_string()
        predicted = TextBooster(text).predict(probe[:50])
        assert np.array_equal(_bits(predicted), _bits(booster.predict(probe[:50])))
    assert TreeArrays.from_text(with_nan.model_to_string()) is None  # NaN missing type: LightGBM predicts
    assert TreeArrays.from_text(constant.model_to_string()) is not None


def test_cache_is_reused_and_survives_corruption(bundle, tmp_path, monkeypatch):
    """Parsed boosters are cached by content hash; a corrupt cache file is ignored and rewritten, and the numbers
    from a cached file equal those from the text."""
    monkeypatch.setenv("JOULES_ESTIMATE_CACHE_DIR", str(tmp_path))
    text = bundle.regressors["median_itl_ms"].boosters_["none"].model_to_string()
    fresh = TreeArrays.cached(text)
    files = list((tmp_path / "trees").glob("*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(TreeArrays, "from_text", classmethod(lambda cls, t: pytest.fail("parsed again")))
    reused = TreeArrays.cached(text)
    probe = _hostile_matrix(fresh.num_features, fresh.threshold, rows=50)
    assert np.array_equal(_bits(reused.predict(probe)), _bits(fresh.predict(probe)))
    monkeypatch.undo()
    monkeypatch.setenv("JOULES_ESTIMATE_CACHE_DIR", str(tmp_path))
    files[0].write_bytes(b"not a zip file")
    rebuilt = TreeArrays.cached(text)
    assert np.array_equal(_bits(rebuilt.predict(probe)), _bits(fresh.predict(probe)))
    assert files[0].read_bytes()[:2] == b"PK"  # rewritten as an npz (a zip archive)
    monkeypatch.setenv("JOULES_ESTIMATE_CACHE_DIR", "")  # no cache at all still predicts
    assert np.array_equal(_bits(TreeArrays.cached(text).predict(probe)), _bits(fresh.predict(probe)))


def test_repeated_rows_predicted_once_with_identical_output(bundle, catalog):
    """predict_frame computes a repeated row once: the output of a frame with repeats equals the output of its
    rows predicted separately, cell for cell."""
    from estimator.serve.api import predict_frame

    rows = pd.DataFrame([
        {"model_id": "llama-70b", "task": "chat", "gpu_model": "b200", "num_gpus": 2, "max_num_seqs": 64},
        {"model_id": "llama-70b", "task": "chat", "gpu_model": "h100", "num_gpus": 1, "max_num_seqs": 256},
        {"model_id": "no-such-model", "task": "chat", "gpu_model": "b200", "num_gpus": 1, "max_num_seqs": np.nan},
    ])
    frame = pd.concat([rows, rows, rows.iloc[[0]]], ignore_index=True)
    together = predict_frame(frame, predictor=bundle, catalog=catalog)
    alone = pd.concat([predict_frame(frame.iloc[[i]], predictor=bundle, catalog=catalog) for i in range(len(frame))],
                      ignore_index=True)
    pd.testing.assert_frame_equal(together, alone)
    first, inverse = distinct_rows(frame.to_dict("records"))
    assert first == [0, 1, 2] and list(inverse) == [0, 1, 2, 0, 1, 2, 0]


def test_distinct_rows_compares_type_and_bits():
    """1, 1.0 and True are different cells (they can print differently); NaN equals NaN; -0.0 differs from 0.0."""
    records = [{"a": 1}, {"a": 1.0}, {"a": True}, {"a": float("nan")}, {"a": float("nan")}, {"a": -0.0},
               {"a": 0.0}, {"a": [1]}, {"a": [1]}]
    first, inverse = distinct_rows(records)
    assert first == [0, 1, 2, 3, 5, 6, 7, 8]
    assert list(inverse) == [0, 1, 2, 3, 3, 4, 5, 6, 7]
