"""`serve --calibration CAL.json` without a browser: the server reads the calibration once and applies it to every
endpoint, so the page shows the numbers the Python API gives with the same calibration (not the uncalibrated ones),
says which levels moved, and a calibrated `what-if --html` file attributes the calibrated prediction."""

import json
import re

import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
pytest.importorskip("plotly", reason="the web extra (plotly) is not installed")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import estimator  # noqa: E402
from estimator.serve import web  # noqa: E402

CONFIG = {"model_id": "Qwen/Qwen3-8B", "task": "lm-arena-chat", "gpu_model": "H100-SXM", "num_gpus": 1}
BASE = {"model": "Qwen/Qwen3-8B", "task": "lm-arena-chat", "gpu": "h100", "num_gpus": 1}


@pytest.fixture(scope="module")
def cal_path(tmp_path_factory, bundle, catalog):
    """A CAL.json fitted on two H100 runs drawing 30% more power than predicted (throughput as predicted)."""
    from estimator.learn.prediction import predict_frame

    configs = pd.DataFrame([{**CONFIG, "max_num_seqs": 32}, {**CONFIG, "max_num_seqs": 256}])
    predicted = predict_frame(configs, bundle, catalog)
    runs = configs.assign(avg_power_watts=predicted["avg_power_watts"] * 1.3,
                          output_throughput_tokens_per_sec=predicted["output_throughput_tokens_per_sec"])
    path = tmp_path_factory.mktemp("cal") / "cal.json"
    estimator.calibrate(runs).save(path)
    return path


@pytest.fixture(scope="module")
def client(cal_path):
    return TestClient(web.create_app(calibration=cal_path, rate_per_sec=1000, burst=1000),
                      raise_server_exceptions=False)


def test_calibrated_frontier_equals_the_calibrated_api(client, cal_path):
    """/api/frontier answers estimate(..., calibration=CAL.json), and that differs from the uncalibrated answer (so
    the test fails if the server dropped the calibration)."""
    answer = client.post("/api/frontier", json={"model": BASE["model"], "task": BASE["task"], "gpus": ["h100"],
                                                "num_gpus": [1]})
    assert answer.status_code == 200, answer.text
    shown = answer.json()["estimates"][0]
    calibrated = estimator.estimate(BASE["model"], BASE["task"], "h100", num_gpus=[1], calibration=cal_path)
    plain = estimator.estimate(BASE["model"], BASE["task"], "h100", num_gpus=[1])
    assert shown == calibrated.model_dump(mode="json")
    assert shown != plain.model_dump(mode="json")
    assert any(line.startswith("calibration applied") for line in shown["assumptions"])


def test_calibrated_what_if_and_plan_equal_the_calibrated_api(client, cal_path):
    """/api/what-if (with its attribution) and /api/plan answer what the API answers with the same calibration."""
    answer = client.post("/api/what-if", json={"base": BASE, "changes": {"max_num_seqs": 128}}).json()
    direct = estimator.what_if(BASE, calibration=cal_path, max_num_seqs=128)
    assert answer["what_if"] == direct.model_dump(mode="json")
    attribution = estimator.explain_change(direct, calibration=cal_path)
    assert answer["attribution"] == attribution.model_dump(mode="json")
    plan = client.post("/api/plan", json={"model": BASE["model"], "task": BASE["task"], "gpus": ["h100"],
                                          "demand_tokens_per_sec": 5000}).json()
    direct_plan = estimator.plan(BASE["model"], BASE["task"], gpus=["h100"], demand_tokens_per_sec=5000,
                                 calibration=cal_path)
    assert plan["plan"] == direct_plan.model_dump(mode="json")


def test_the_page_says_which_levels_moved(client, cal_path):
    """/api/catalog and /api/health carry the CLI's calibration line (the page shows it under its title)."""
    from estimator.learn.calibration import describe, load_calibration

    expected = describe(load_calibration(cal_path, estimator.load_predictor()))
    assert client.get("/api/catalog").json()["calibration"] == expected
    assert client.get("/api/health").json()["calibration_note"] == expected
    assert "deployment" in expected
    assert 'id="calibration-note"' in client.get("/").text


def test_calibrated_what_if_html_explains_the_calibrated_prediction(cal_path, tmp_path):
    """`what-if --calibration CAL.json --html FILE` embeds the attribution of the calibrated change, whose total is
    the calibrated prediction."""
    from estimator.cli.main import app

    path = tmp_path / "whatif.html"
    result = CliRunner().invoke(app, ["what-if", "--model", BASE["model"], "--task", BASE["task"], "--gpu", "h100",
                                      "--num-gpus", "1", "--set", "max_num_seqs=128", "--calibration", str(cal_path),
                                      "--html", str(path)])
    assert result.exit_code == 0, result.output
    embedded = json.loads(re.search(r"window\.JOULES_STATIC = (\{.*?\});</script>", path.read_text(),
                                    re.S).group(1))["data"]
    direct = estimator.what_if(BASE, calibration=cal_path, max_num_seqs="128")  # as the CLI passes --set values
    assert embedded["what_if"] == direct.model_dump(mode="json")
    assert embedded["attribution"] == estimator.explain_change(direct, calibration=cal_path).model_dump(mode="json")
