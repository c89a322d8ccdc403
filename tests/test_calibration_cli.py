"""`joules-estimate calibrate` and `--calibration` end to end, and the API's `calibration=` (CLI over the API)."""

import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from estimator.cli.main import app

runner = CliRunner()
CONFIG = {"model_id": "Qwen/Qwen3-8B", "task": "lm-arena-chat", "gpu_model": "H100-SXM", "num_gpus": 1}


@pytest.fixture(scope="module")
def cal_path(tmp_path_factory, bundle, catalog):
    """A CAL.json fitted by the CLI on two runs 30% above the predicted power (throughput as predicted)."""
    from estimator.learn.prediction import predict_frame

    folder = tmp_path_factory.mktemp("cal")
    configs = pd.DataFrame([{**CONFIG, "max_num_seqs": 32}, {**CONFIG, "max_num_seqs": 256}])
    predicted = predict_frame(configs, bundle, catalog)
    runs = configs.assign(avg_power_watts=predicted["avg_power_watts"] * 1.3,
                          output_throughput_tokens_per_sec=predicted["output_throughput_tokens_per_sec"])
    runs.to_csv(folder / "runs.csv", index=False)
    result = runner.invoke(app, ["calibrate", "--runs", str(folder / "runs.csv"), "--output", str(folder / "cal.json")])
    assert result.exit_code == 0, result.output
    assert "what it learned" in result.stdout and "deployment" in result.stdout and "batch curve" in result.stdout
    assert "how far the uncalibrated predictor was" in result.stdout
    return folder / "cal.json"


def test_predict_with_a_calibration_moves_the_measured_deployment_and_says_so(cal_path, tmp_path):
    """`predict --calibration` must change the calibrated deployment's J/token (power up, so energy up), name the
    levels in a column, and announce the calibration on standard error."""
    (tmp_path / "in.csv").write_text("model_id,task,gpu_model,num_gpus,max_num_seqs\n"
                                     "Qwen/Qwen3-8B,lm-arena-chat,H100-SXM,1,64\n")
    plain = runner.invoke(app, ["predict", "--input", str(tmp_path / "in.csv")])
    calibrated = runner.invoke(app, ["predict", "--input", str(tmp_path / "in.csv"), "--calibration", str(cal_path)])
    assert plain.exit_code == 0 and calibrated.exit_code == 0, calibrated.output
    assert "calibration applied" in calibrated.stderr
    read = lambda text: pd.read_csv(__import__("io").StringIO(text))  # noqa: E731
    before, after = read(plain.stdout), read(calibrated.stdout)
    ratio = after["energy_per_token_joules"][0] / before["energy_per_token_joules"][0]
    assert "deployment (2 runs)" in after["calibration"][0] and "calibration" not in before.columns
    assert 1.05 < ratio < 1.35  # toward the runs' +30% (kriging between two equal runs may pass it slightly)


def test_every_predicting_command_takes_the_calibration(cal_path):
    """The frontier, what-if, explain and plan commands accept --calibration; explain shows it as an item."""
    common = ["--model", "Qwen/Qwen3-8B", "--task", "lm-arena-chat", "--calibration", str(cal_path)]
    for args in ([*common, "--gpu", "h100"], ["what-if", *common, "--gpu", "h100", "--set", "num_gpus=2"],
                 ["plan", *common, "--demand-tokens-per-sec", "5000", "--gpu", "h100"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert "calibration applied" in result.stderr
    explained = runner.invoke(app, ["explain", *common, "--gpu", "h100", "--max-num-seqs", "64", "--json"])
    assert explained.exit_code == 0, explained.output
    from estimator.explain.model import Attribution

    attribution = Attribution.model_validate_json(explained.stdout)
    items = [item for item in attribution.items if item.kind == "calibration"]
    assert len(items) == 1 and items[0].log_contribution > 0
    total = math.log(attribution.baseline) + sum(item.log_contribution for item in attribution.items)
    assert total == pytest.approx(math.log(attribution.prediction), abs=1e-9)


def test_api_predict_frame_takes_a_calibration_object_or_path(cal_path):
    """`predict_frame(rows, calibration=...)` accepts the object or the file, gives the same numbers either way,
    and fills the `calibration` column only where a level with runs applies."""
    from estimator import predict_frame
    from estimator.learn.calibration import load_calibration
    from estimator.learn.predictor import load_predictor

    rows = pd.DataFrame([{**CONFIG, "max_num_seqs": 64}])
    by_path = predict_frame(rows, calibration=str(cal_path))
    by_object = predict_frame(rows, calibration=load_calibration(cal_path, load_predictor()))
    assert by_path["energy_per_token_joules"][0] == pytest.approx(by_object["energy_per_token_joules"][0])
    assert "deployment" in by_path["calibration"][0]
    assert "calibration" not in predict_frame(rows).columns
