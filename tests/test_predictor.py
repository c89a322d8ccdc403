"""The trained predictor artifact: card contents, exact identities, metamorphic checks, determinism."""

import numpy as np
import pandas as pd
import pytest

from estimator.catalog.catalog import load_catalog
from estimator.learn.data import load_runs
from estimator.learn.predictor import PredictorBundle
from estimator.learn.training import data_hash, split_by_family
from estimator.serve.api import predict_frame


def _one(**config):
    return pd.DataFrame([config])


def test_card_records_data_catalog_hashes_and_named_split_metrics(bundle, catalog, runs):
    """Every artifact says what it was trained on (data and catalog hashes) and names the split of each metric."""
    card = bundle.card
    assert card.catalog_hash == catalog.content_hash
    assert card.data_hash == data_hash(runs), "committed predictor is stale: run `joules-estimate train`"
    assert {"random-5fold", "leave-one-model-out", "leave-family-out", "leave-gpu-out", "leave-task-out"} <= set(
        card.metrics)
    assert card.metrics["leave-one-model-out"]["llm"]["energy_per_token_joules"]["n"] == card.training_rows["llm"]


def test_loaded_bounds_and_offsets_come_from_the_card(bundle):
    """A loaded predictor must use the offsets and physical bounds it was trained with (recorded in its card),
    not a copy in code that could drift from the boosters."""
    for name, regressor in bundle.regressors.items():
        spec = bundle.card.target_specs[name]
        assert tuple(regressor.boosters_) == tuple(spec.offsets)
        assert (regressor.target.ceiling, regressor.target.floor) == (spec.ceiling, spec.floor)


def test_energy_identities_hold_exactly_in_predictions(bundle, catalog):
    """J/request uses the row's own output length (not the task profile's), and the interval of a reciprocal
    quantity (tokens/s/W) is the flipped interval of J/token, so the two bounds describe the same outcomes."""
    out = predict_frame(pd.DataFrame([
        {"model_id": "qwen3-8b", "task": "chat", "gpu_model": "h100", "num_gpus": 1, "max_num_seqs": b,
         "avg_output_len": 1500.0} for b in (8, 64, 512)]), predictor=bundle, catalog=catalog)
    np.testing.assert_allclose(out.energy_per_token_joules * 1500.0, out.energy_per_request_joules, rtol=1e-12)
    np.testing.assert_allclose(out.tokens_per_sec_per_watt_p10 * out.energy_per_token_joules_p90, 1.0, rtol=1e-9)
    np.testing.assert_allclose(out.tokens_per_sec_per_watt_p90 * out.energy_per_token_joules_p10, 1.0, rtol=1e-9)
    assert (out.energy_per_token_joules_p10 < out.energy_per_token_joules).all()
    assert (out.energy_per_token_joules < out.energy_per_token_joules_p90).all()


def test_more_output_tokens_cost_more_energy_per_request(bundle, catalog):
    """Metamorphic: a longer response can only cost more joules per request."""
    base = {"model_id": "qwen3-32b", "task": "chat", "gpu_model": "b200", "num_gpus": 1, "max_num_seqs": 128}
    out = predict_frame(pd.DataFrame([{**base, "avg_output_len": n} for n in (200, 800, 3200)]),
                        predictor=bundle, catalog=catalog)
    assert out.energy_per_request_joules.is_monotonic_increasing


def test_energy_per_token_falls_from_small_batch(bundle, catalog):
    """The paper's first-order effect: batching amortises weights, so J/token at bs 256 is well below bs 8."""
    rows = [{"model_id": "llama-8b", "task": "chat", "gpu_model": "h100", "num_gpus": 1, "max_num_seqs": b}
            for b in (8, 256)]
    out = predict_frame(pd.DataFrame(rows), predictor=bundle, catalog=catalog)
    assert out.energy_per_token_joules.iloc[1] < 0.5 * out.energy_per_token_joules.iloc[0]


def test_bad_rows_get_reasons_and_never_abort(bundle, catalog):
    """A frame with an unknown model, an impossible fit and a good row predicts the good row and explains the rest."""
    out = predict_frame(pd.DataFrame([
        {"model_id": "lama-8b", "task": "chat", "gpu_model": "h100", "num_gpus": 1, "max_num_seqs": 8},
        {"model_id": "llama-405b", "task": "chat", "gpu_model": "l4", "num_gpus": 1, "max_num_seqs": 8},
        {"model_id": "llama-8b", "task": "chat", "gpu_model": "h100", "num_gpus": 1, "max_num_seqs": -3},
        {"model_id": "llama-8b", "task": "chat", "gpu_model": "h100", "num_gpus": 1, "max_num_seqs": 64},
    ]), predictor=bundle, catalog=catalog)
    assert list(out.status) == ["error", "error", "error", "ok"]
    assert "Did you mean" in out.reason[0]
    assert "does not fit" in out.reason[1] and "GB" in out.reason[1]
    assert "max_num_seqs=-3 is outside" in out.reason[2]
    assert np.isfinite(out.energy_per_token_joules[3]) and np.isnan(out.energy_per_token_joules[0])


def test_extrapolation_is_flagged(bundle, catalog):
    """Unseen GPU and model and out-of-range batch carry warnings rather than silent confidence; so does a GPU
    measured only with another engine (H200 has torch-backend runs, no vLLM runs)."""
    out = predict_frame(pd.DataFrame([
        {"model_id": "mistral-7b", "task": "chat", "gpu_model": "l40s", "num_gpus": 1, "max_num_seqs": 4},
        {"model_id": "llama-8b", "task": "chat", "gpu_model": "h200", "num_gpus": 1, "max_num_seqs": 64}]),
        predictor=bundle, catalog=catalog)
    warning = out.warnings[0]
    assert "model absent" in warning and "GPU L40S absent" in warning and "outside the measured range" in warning
    assert "other engines than vllm" in out.warnings[1]


def test_diffusion_energy_is_power_times_latency_over_batch(bundle, catalog):
    """Diffusion: energy per image = power x batch latency / batch size, exactly."""
    out = predict_frame(_one(model_id="flux-dev", task="text-to-image", gpu_model="h100", num_gpus=1, batch_size=4),
                        predictor=bundle, catalog=catalog)
    row = out.iloc[0]
    assert row.energy_per_item_joules == pytest.approx(row.avg_power_watts * row.batch_latency_s / 4, rel=1e-12)


def test_saved_artifact_round_trips(bundle, tmp_path, catalog):
    """Boosters saved as LightGBM text + card.json load back to identical predictions (no pickles)."""
    bundle.save(tmp_path / "copy")
    loaded = PredictorBundle.load(tmp_path / "copy")
    config = _one(model_id="qwen3-8b", task="gpqa", gpu_model="b200", num_gpus=1, max_num_seqs=64)
    a = predict_frame(config, predictor=bundle, catalog=catalog)
    b = predict_frame(config, predictor=loaded, catalog=catalog)
    assert a.energy_per_token_joules[0] == b.energy_per_token_joules[0]


def test_training_is_deterministic():
    """Same data and settings -> the same boosters (fit twice on a slice, compare predictions bit for bit)."""
    from estimator.learn.features import featurize
    from estimator.learn.predictor import fit_regressors, targets_for

    catalog = load_catalog()
    frames = split_by_family(load_runs(catalog=catalog))
    frame = frames["llm"].iloc[::4].reset_index(drop=True)
    features = featurize(frame, catalog)
    first = fit_regressors({"llm": features}, {"llm": frame}, targets_for("llm"))
    second = fit_regressors({"llm": features}, {"llm": frame}, targets_for("llm"))
    for name in first:
        assert np.array_equal(first[name].predict_log(features), second[name].predict_log(features))


def test_physical_bounds_hold_for_gpus_far_from_the_training_data(bundle, catalog):
    """An L4 (72 W, 0.3 TB/s) must not inherit H100-class numbers from the GPU-agnostic ensemble members:
    power stays <= GPUs x TDP and throughput <= the roofline on that GPU, whatever the trees say."""
    from estimator.learn.features import featurize
    from estimator.learn.predictor import OFFSETS

    rows = pd.DataFrame([{"model_id": "llama-8b", "task": "chat", "gpu_model": gpu, "num_gpus": n,
                          "max_num_seqs": b} for gpu in ("l4", "h100") for n in (1, 8) for b in (8, 256)])
    out = predict_frame(rows, predictor=bundle, catalog=catalog)
    assert (out.status == "ok").all()
    l4 = out[out.gpu_model == "l4"]
    assert (l4.avg_power_watts <= l4.num_gpus * catalog.gpus["L4"].tdp_watts * (1 + 1e-9)).all()
    resolved = rows.assign(gpu_model=rows.gpu_model.map(lambda g: catalog.resolve("gpu", g)),
                           model_id="meta-llama/Llama-3.1-8B-Instruct", task="lm-arena-chat")
    ceiling = np.exp(OFFSETS["throughput_ceiling"](featurize(resolved, catalog)))
    assert (out.output_throughput_tokens_per_sec.to_numpy() <= ceiling * (1 + 1e-9)).all()
    # no free lunch from a small GPU: at every configuration the L4 (0.3 TB/s) serves fewer tokens/s than the H100
    # (3.35 TB/s), and on one GPU its J/token is not below half the H100's. (Across 8 GPUs at batch 8 the H100 itself
    # is wasteful: 8 x 700 W of TDP for an 8B model; since the per-block decode floor, which is the same on every GPU,
    # 8 x L4 there predicts 0.46 J/token against the H100's 1.22, plausibly optimistic for a GPU with no training
    # data, which the prediction's warning says.)
    h100 = out[out.gpu_model == "h100"]
    assert (l4.output_throughput_tokens_per_sec.to_numpy() < h100.output_throughput_tokens_per_sec.to_numpy()).all()
    one = (l4.num_gpus == 1).to_numpy()
    assert (l4.energy_per_token_joules.to_numpy()[one] > 0.5 * h100.energy_per_token_joules.to_numpy()[one]).all()
    assert all("absent from training data" in w for w in l4.warnings)


def test_attribution_stays_exact_when_a_physical_bound_binds(bundle, catalog):
    """When a bound clips the prediction, the attribution shows it as its own item and still multiplies from
    the baseline to the prediction exactly."""
    import math

    from estimator.explain.attribution import explain_frame

    rows = pd.DataFrame([{"model_id": "llama-8b", "task": "chat", "gpu_model": "l4", "num_gpus": n,
                          "max_num_seqs": b} for n in (1, 8) for b in (8, 256)])
    attributions = explain_frame(rows, predictor=bundle, catalog=catalog)
    assert any(item.group.startswith("physical bound") for a in attributions for item in a.items)
    for attribution in attributions:
        total = sum(item.log_contribution for item in attribution.items)
        assert math.log(attribution.baseline) + total == pytest.approx(math.log(attribution.prediction), abs=1e-9)
