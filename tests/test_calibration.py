"""calibrate() on the real predictor: input checks per row, CAL.json round trip, re-fit, and the applied shift."""

import json
import math

import pandas as pd
import pytest

from estimator.learn.calibration import CalibrationError, calibrate, load_calibration
from estimator.learn.calibration_apply import apply_calibration
from estimator.learn.predictor import PredictorBundle

BASE = {"model_id": "Qwen/Qwen3-8B", "task": "lm-arena-chat", "gpu_model": "H100-SXM", "num_gpus": 1}
COMPONENTS = {"model": 0.15, "deployment": 0.1, "gpu": 0.1, "engine": 0.05, "curve": 0.1, "length": 1.5, "noise": 0.05}


@pytest.fixture(scope="module")
def cal_bundle(bundle):
    """The default predictor with variance components in its card (independent of the frozen file)."""
    quantities = {"llm": ("avg_power_watts", "output_throughput_tokens_per_sec", "median_itl_ms",
                          "energy_per_token_joules"),
                  "diffusion": ("avg_power_watts", "batch_latency_s", "energy_per_item_joules")}
    components = {f: {q: COMPONENTS for q in qs} for f, qs in quantities.items()}
    return PredictorBundle(bundle.regressors, bundle.card.model_copy(update={"calibration_components": components}))


def _predicted(bundle, catalog, rows):
    from estimator.learn.prediction import predict_frame

    return predict_frame(pd.DataFrame(rows), bundle, catalog)


def _measured(bundle, catalog, config, factor):
    """A run of ``config`` whose power is ``factor`` x the prediction (throughput and ITL as predicted)."""
    out = _predicted(bundle, catalog, [config]).iloc[0]
    power = out["avg_power_watts"] * factor
    return {**config, "avg_power_watts": power, "output_throughput_tokens_per_sec": out[
        "output_throughput_tokens_per_sec"], "median_itl_ms": out["median_itl_ms"]}


def test_bad_rows_are_reported_one_by_one_and_good_rows_kept(cal_bundle, catalog, tmp_path):
    """Every bad-input case of issue 11 item 7 gets a per-row reason; repeats within physics are kept with their
    spread; the calibration still fits on the good rows."""
    good = _measured(cal_bundle, catalog, {**BASE, "max_num_seqs": 64}, 1.2)
    repeat = {**good, "avg_power_watts": good["avg_power_watts"] * 1.05}
    far = _measured(cal_bundle, catalog, {**BASE, "max_num_seqs": 128}, 1.0)
    rows = [good, dict(good), {**good, "model_id": "no-such-model"},
            {**good, "max_num_seqs": 32, "avg_power_watts": -5},
            {**BASE, "max_num_seqs": 16, "median_itl_ms": float("inf")}, far,
            {**far, "avg_power_watts": far["avg_power_watts"] * 2.5}, repeat]
    path = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    from estimator.learn.calibration_runs import read_run_file

    records, sources = read_run_file(path)
    cal = calibrate(pd.DataFrame(records), cal_bundle, catalog=catalog, sources=sources)
    reasons = {r.source: r.reason for r in cal.rejects}
    assert "duplicate of runs.csv:2" in reasons["runs.csv:3"]
    assert "cannot be resolved" in reasons["runs.csv:4"]
    assert "not a positive finite number" in reasons["runs.csv:5"]
    assert "not a positive finite number" in reasons["runs.csv:6"]
    assert "apart" in reasons["runs.csv:7"] and "apart" in reasons["runs.csv:8"]
    assert [r.source for r in cal.runs] == ["runs.csv:2", "runs.csv:9"]
    assert cal.repeats and cal.repeats[0]["spread_pct"]["avg_power_watts"] == pytest.approx(5.0, abs=0.01)


def test_a_calibration_without_a_usable_run_is_refused(cal_bundle, catalog):
    """Nothing usable -> an error naming each row's reason, never an empty calibration."""
    rows = pd.DataFrame([{**BASE, "max_num_seqs": 64, "avg_power_watts": 0.0},
                         {**BASE, "model_id": "nope", "max_num_seqs": 64, "avg_power_watts": 400.0}])
    with pytest.raises(CalibrationError, match="row 1: avg_power_watts=0.0.*row 2: configuration cannot"):
        calibrate(rows, cal_bundle, catalog=catalog)


def test_calibrated_power_moves_toward_the_runs_and_energy_follows_exactly(cal_bundle, catalog):
    """A run 20% above the predicted power moves the same configuration's power up by less than 20%, J/token by the
    same factor (energy = power / throughput, exactly), and narrows the J/token interval; another model on the
    same GPU moves too (GPU and engine levels), by less."""
    config = {**BASE, "max_num_seqs": 64}
    cal = calibrate(pd.DataFrame([_measured(cal_bundle, catalog, config, 1.2)]), cal_bundle, catalog=catalog)
    targets = pd.DataFrame([config, {**config, "model_id": "meta-llama/Llama-3.1-8B-Instruct"}])
    before = _predicted(cal_bundle, catalog, targets.to_dict("records"))
    after = apply_calibration(before, targets, cal, cal_bundle, catalog)
    ratio = after["avg_power_watts"] / before["avg_power_watts"]
    assert 1.0 < ratio[1] < ratio[0] < 1.2
    energy = after["avg_power_watts"] / after["output_throughput_tokens_per_sec"]
    assert energy.to_numpy() == pytest.approx(after["energy_per_token_joules"].to_numpy(), rel=1e-9)
    width = lambda f: math.log(f["energy_per_token_joules_p90"][0] / f["energy_per_token_joules_p10"][0])  # noqa: E731
    assert width(after) < width(before)
    assert "deployment" in after["calibration"][0] and "GPU H100-SXM (1 runs)" in after["calibration"][1]


def test_cal_json_round_trips_and_refits_against_another_predictor(cal_bundle, catalog, tmp_path):
    """CAL.json keeps its runs: reloaded against the same predictor it is the same calibration; against another
    predictor (another card) it re-fits from the stored runs and says so."""
    config = {**BASE, "max_num_seqs": 64}
    cal = calibrate(pd.DataFrame([_measured(cal_bundle, catalog, config, 1.2)]), cal_bundle, catalog=catalog)
    path = tmp_path / "cal.json"
    cal.save(path)
    json.loads(path.read_text())
    same = load_calibration(path, cal_bundle, catalog=catalog)
    assert same.model_dump() == cal.model_dump()
    targets = pd.DataFrame([config])
    before = _predicted(cal_bundle, catalog, [config])
    assert apply_calibration(before, targets, same, cal_bundle, catalog).equals(
        apply_calibration(before, targets, cal, cal_bundle, catalog))
    other = PredictorBundle(cal_bundle.regressors, cal_bundle.card.model_copy(update={"name": "retrained"}))
    refit = load_calibration(path, other, catalog=catalog)
    assert refit.predictor_card_hash != cal.predictor_card_hash
    assert any("re-fitted from the 1 stored runs" in note for note in refit.notes)
    assert len(refit.runs) == 1
