"""The accuracy numbers hold out what they claim: split integrity, fold-local task profiles, nested intervals."""

import numpy as np
import pandas as pd
import pytest

from estimator.learn import evaluate as ev
from estimator.learn import holdout
from estimator.learn.training import split_by_family


@pytest.mark.parametrize("split", ["leave-one-model-out", "leave-family-out", "leave-gpu-out", "leave-task-out"])
def test_every_fold_holds_out_what_its_split_claims(runs, catalog, split):
    """No row of a held-out model, family, GPU or task is in its fold's training rows; every row is tested once."""
    family_of = {key: arch.family for key, arch in catalog.models.items()}
    for family, frame in split_by_family(runs).items():
        tested = np.zeros(len(frame), dtype=int)
        for fold, train, test in ev.split_folds(frame, split, catalog):
            assert holdout.fold_violations(frame, split, fold, train, test, family_of) == []
            tested[test] += 1
        assert (tested == 1).all(), f"{split} {family}: rows tested {set(tested)} times"


def test_fold_violations_catch_a_leak(runs, catalog):
    """The checker itself fails when a held-out model's row sits in training (so the test above can fail)."""
    frame = split_by_family(runs)["llm"]
    family_of = {key: arch.family for key, arch in catalog.models.items()}
    fold, train, test = next(iter(ev.split_folds(frame, "leave-one-model-out", catalog)))
    leaky = np.append(train, test[0])
    assert holdout.fold_violations(frame, "leave-one-model-out", fold, leaky, test, family_of)


def test_task_profile_reading_uses_training_fold_lengths_only(runs, catalog, monkeypatch):
    """Under leave-one-model-out the profile length given to a held-out model comes from the OTHER models only:
    its publisher's other models where the fold has them (Qwen3-8B -> Qwen3-32B), else every other model's
    mean (Llama-3.1-8B -> the Qwen models). The held-out model's own lengths (even absurd ones) never enter it,
    and its training fold never contains its rows."""
    frame = split_by_family(runs)["llm"]
    keep = frame["model_id"].isin(["Qwen/Qwen3-8B", "Qwen/Qwen3-32B", "meta-llama/Llama-3.1-8B-Instruct"])
    frame = frame[keep & frame["task"].eq("lm-arena-chat")].reset_index(drop=True)
    frame.loc[frame["model_id"].eq("Qwen/Qwen3-8B"), "avg_output_len"] = 1e6  # poison the held-out lengths
    seen = {}

    def fake_fit(features, frames, targets):
        seen.setdefault("train_models", []).append(set(frames["llm"]["model_id"]))
        return {}

    def fake_predict(regressors, features, test, family):
        seen.setdefault("lengths", []).append((set(test["model_id"]), test["avg_output_len"].to_numpy()))
        n = len(test)
        return {"energy_per_token_joules": np.ones(n), "energy_per_request_joules": test["avg_output_len"].to_numpy()}

    monkeypatch.setattr(ev, "fit_regressors", fake_fit)
    monkeypatch.setattr(ev, "predict_end_metrics", fake_predict)
    monkeypatch.setattr(ev, "featurize", lambda frame, catalog: frame)
    oof = ev.out_of_fold(frame, frame, "llm", "leave-one-model-out", catalog)
    for models in seen["train_models"]:
        assert len(models) == 2
    held = frame["model_id"].eq("Qwen/Qwen3-8B").to_numpy()
    sibling = frame.loc[frame["model_id"].eq("Qwen/Qwen3-32B"), "avg_output_len"].mean()
    assert oof.loc[held, "profile_output_len"].to_numpy() == pytest.approx(sibling)
    assert oof.loc[held, "profile_pred_energy_per_request_joules"].to_numpy() == pytest.approx(sibling)
    assert (oof.loc[held, "pred_energy_per_request_joules"] == 1e6).all()  # the "given" reading keeps it
    llama = frame["model_id"].eq("meta-llama/Llama-3.1-8B-Instruct").to_numpy()
    qwen_means = frame[~llama].groupby("model_id")["avg_output_len"].mean().mean()  # poisoned 8B included
    assert oof.loc[llama, "profile_output_len"].to_numpy() == pytest.approx(qwen_means)


def test_task_profile_is_mean_of_model_means():
    """One model with many configurations does not dominate the task's or the publisher's profile; the levels
    go model -> publisher -> task, and a task nobody in the fold ran has no profile."""
    train = pd.DataFrame({"task": ["chat"] * 5, "model_id": ["o/a", "o/a", "o/a", "o/b", "p/c"],
                          "avg_output_len": [100.0, 100.0, 100.0, 500.0, 900.0]})
    profile = holdout.task_output_profile(train)
    assert profile.by_task == {"chat": 500.0} and profile.by_publisher["chat"]["o"] == 300.0
    assert profile.tokens("o/a", "chat") == (100.0, "model")
    assert profile.tokens("o/new", "chat") == (300.0, "publisher")
    assert profile.tokens("q/new", "chat") == (500.0, "task")
    assert holdout.with_profile_lengths(train.assign(task="gpqa"), profile) is None


def test_nested_coverage_never_uses_the_held_out_groups_residuals():
    """A group's own residuals cannot widen its interval: a group far outside every other group is not covered."""
    rng = np.random.default_rng(0)
    residuals = np.concatenate([rng.normal(0, 0.1, 50) for _ in range(5)] + [np.full(50, 3.0)])
    groups = np.repeat(np.arange(6), 50)
    inside_outlier = []
    for group in np.unique(groups):
        mask = groups == group
        tail = holdout.choose_tail(residuals[~mask], groups[~mask])
        low, high = holdout.interval_bounds(residuals[~mask], tail)
        inside_outlier.append(((residuals[mask] >= low) & (residuals[mask] <= high)).mean())
    assert inside_outlier[-1] == 0.0
    assert holdout.nested_coverage(residuals, groups) == pytest.approx(np.mean(inside_outlier) * 100)



def test_held_out_predictions_never_read_the_held_out_measurements(runs, catalog):
    """End to end, with the real boosters, the nearest-neighbour member and the output-length profile: poisoning
    every measured value of the held-out model (power, throughput, ITL, output length) must not move a single one
    of its leave-one-model-out predictions, while it does move the other models' (so the check can fail)."""
    from estimator.learn.features import featurize

    frame = split_by_family(runs)["llm"]
    keep = frame["model_id"].isin(["Qwen/Qwen3-8B", "Qwen/Qwen3-32B", "meta-llama/Llama-3.1-8B-Instruct"])
    frame = frame[keep & frame["gpu_model"].eq("B200")].reset_index(drop=True)
    poisoned = frame.copy()
    held = poisoned["model_id"].eq("Qwen/Qwen3-8B").to_numpy()
    for column in ("avg_power_watts", "output_throughput_tokens_per_sec", "median_itl_ms", "p90_itl_ms",
                   "avg_output_len"):
        poisoned.loc[held, column] = poisoned.loc[held, column] * 7.0
    features = featurize(frame, catalog)  # the "given" reading's inputs are the workload's, as for a user
    clean = ev.out_of_fold(frame, features, "llm", "leave-one-model-out", catalog)
    dirty = ev.out_of_fold(poisoned, features, "llm", "leave-one-model-out", catalog)
    for column in ("pred_energy_per_token_joules", "profile_pred_energy_per_token_joules", "profile_output_len"):
        np.testing.assert_allclose(dirty.loc[held, column], clean.loc[held, column], rtol=1e-12)
        assert not np.allclose(dirty.loc[~held, column], clean.loc[~held, column])


def test_new_runs_refresh_the_default_output_lengths(runs, tmp_path, monkeypatch):
    """After a measurement sweep, `train --replace-default` must also update the default output length per model
    (models/catalog/output_lengths.toml): a stale file is detected, rewritten from the runs, and then current."""
    import shutil

    from estimator.catalog.catalog import forget_loaded_catalogs, load_catalog
    from estimator.learn.training import refresh_output_lengths
    from estimator.paths import catalog_dir

    home = tmp_path / "home"
    shutil.copytree(catalog_dir(), home / "models" / "catalog")
    monkeypatch.setenv("JOULES_ESTIMATE_HOME", str(home))
    changed = runs.copy()
    llama = changed["model_id"].eq("meta-llama/Llama-3.1-8B-Instruct") & changed["task"].eq("lm-arena-chat")
    changed.loc[llama, "avg_output_len"] = 1234.0  # a new sweep measured longer answers
    assert refresh_output_lengths(runs, write=False) is False  # the committed file matches the committed runs
    assert refresh_output_lengths(changed, write=True) is True
    assert refresh_output_lengths(changed, write=False) is False
    tokens, level = load_catalog().profile_output_tokens("meta-llama/Llama-3.1-8B-Instruct", "lm-arena-chat")
    assert (tokens, level) == (1234.0, "model")
    monkeypatch.delenv("JOULES_ESTIMATE_HOME")
    forget_loaded_catalogs()
