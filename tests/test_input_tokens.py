"""`--input-tokens` (the mean prompt length) is honoured by every entry point that builds a configuration: the
CLI's frontier, predict, what-if, explain and plan, the Python API (estimate, what_if, plan, predict_frame) and the
web API. Each test asks for a short and a long prompt and fails if the configuration or the prediction ignores it
(a 4,000-token prompt costs more prefill than a 100-token one, so energy per token and the TTFT physics rise)."""

import pandas as pd
import pytest
from typer.testing import CliRunner

import estimator
from estimator.cli.main import app
from estimator.explain.model import Attribution
from estimator.schema import Estimate, Plan, WhatIf

SHORT, LONG = 100, 4000
BASE = {"model": "llama-8b", "task": "chat", "gpu": "h100", "num_gpus": 1, "batch": 64}
FLAGS = ["--model", "llama-8b", "--task", "chat", "--gpu", "h100", "--num-gpus", "1", "--batch", "64"]
runner = CliRunner()


def _cli(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def _energy(prediction) -> float:
    assert prediction.configuration.avg_input_len in (SHORT, LONG)
    return prediction.value("energy_per_token_joules")


def _rises(short: float, long: float) -> None:
    assert long > 1.2 * short > 0


def test_cli_frontier_honours_input_tokens():
    """The default command passes --input-tokens into the configuration, the workload and the prediction."""
    est = {n: Estimate.model_validate_json(_cli(*FLAGS, "--input-tokens", n, "--json")) for n in (SHORT, LONG)}
    assert [est[n].workload.input_tokens for n in (SHORT, LONG)] == [SHORT, LONG]
    _rises(*(_energy(est[n].configurations[0]) for n in (SHORT, LONG)))


def test_cli_what_if_honours_input_tokens_on_the_base_and_as_a_change():
    """what-if: --input-tokens sets the base; --set input_tokens=N changes it."""
    result = WhatIf.model_validate_json(_cli("what-if", *FLAGS, "--input-tokens", SHORT,
                                             "--set", f"input_tokens={LONG}", "--json"))
    assert result.base.configuration.avg_input_len == SHORT and result.changed.configuration.avg_input_len == LONG
    _rises(_energy(result.base), _energy(result.changed))


def test_cli_explain_honours_input_tokens():
    """explain attributes the configuration with the prompt length given."""
    att = {n: Attribution.model_validate_json(_cli("explain", *FLAGS, "--input-tokens", n, "--json"))
           for n in (SHORT, LONG)}
    assert [att[n].configuration["avg_input_len"] for n in (SHORT, LONG)] == [SHORT, LONG]
    _rises(att[SHORT].prediction, att[LONG].prediction)


def test_cli_plan_honours_input_tokens():
    """plan sizes the fleet on the prompt length given: longer prompts, more power for the same demand."""
    plans = {n: Plan.model_validate_json(_cli("plan", "--model", "llama-8b", "--task", "chat", "--gpu", "h100",
                                              "--num-gpus", "1", "--batch", "64", "--demand-rps", "5",
                                              "--input-tokens", n, "--json")) for n in (SHORT, LONG)}
    assert [plans[n].workload.input_tokens for n in (SHORT, LONG)] == [SHORT, LONG]
    _rises(plans[SHORT].chosen.power_kw, plans[LONG].chosen.power_kw)


def test_cli_predict_reads_the_avg_input_len_column(tmp_path):
    """predict takes the prompt length per row from the CSV's avg_input_len column (TTFT physics and energy rise)."""
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text("model_id,task,gpu_model,num_gpus,max_num_seqs,avg_input_len\n"
                      f"llama-8b,chat,h100,1,64,{SHORT}\nllama-8b,chat,h100,1,64,{LONG}\n")
    result = runner.invoke(app, ["predict", "--input", str(source), "--output", str(target)])
    assert result.exit_code == 0 and "avg_input_len" not in result.stderr, result.output
    out = pd.read_csv(target)
    _rises(*out["energy_per_token_joules"])
    _rises(*out["ttft_physics_ms"])
    assert "avg_input_len" in runner.invoke(app, ["predict", "--help"]).stdout


def test_python_api_honours_input_tokens():
    """estimate, what_if, plan and predict_frame all carry input_tokens / avg_input_len to the prediction."""
    short, long = (estimator.estimate("llama-8b", "chat", "h100", num_gpus=1, batch=64, input_tokens=n)
                   for n in (SHORT, LONG))
    _rises(_energy(short.configurations[0]), _energy(long.configurations[0]))
    change = estimator.what_if({**BASE, "input_tokens": SHORT}, input_tokens=LONG)
    _rises(_energy(change.base), _energy(change.changed))
    plans = [estimator.plan("llama-8b", "chat", demand_rps=5, gpus=["h100"], num_gpus=1, batch=64, input_tokens=n)
             for n in (SHORT, LONG)]
    _rises(plans[0].chosen.power_kw, plans[1].chosen.power_kw)
    rows = pd.DataFrame([{"model_id": "llama-8b", "task": "chat", "gpu_model": "h100", "num_gpus": 1,
                          "max_num_seqs": 64, "avg_input_len": n} for n in (SHORT, LONG)])
    out = estimator.predict_frame(rows)
    _rises(*out["ttft_physics_ms"])
    _rises(*out["energy_per_token_joules"])


def test_web_api_honours_input_tokens():
    """/api/frontier, /api/what-if and /api/plan pass input_tokens through to the API."""
    pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
    from fastapi.testclient import TestClient

    from estimator.serve import web

    client = TestClient(web.create_app(rate_per_sec=1000, burst=1000), raise_server_exceptions=False)
    energy = []
    for n in (SHORT, LONG):
        body = {"model": "llama-8b", "task": "chat", "gpus": ["h100"], "num_gpus": 1, "batch": 64, "input_tokens": n}
        est = Estimate.model_validate(client.post("/api/frontier", json=body).json()["estimates"][0])
        assert est.workload.input_tokens == n
        energy.append(_energy(est.configurations[0]))
    _rises(*energy)
    answer = client.post("/api/what-if", json={"base": {**BASE, "input_tokens": SHORT},
                                               "changes": {"input_tokens": LONG}, "explain": False}).json()
    change = WhatIf.model_validate(answer["what_if"])
    _rises(_energy(change.base), _energy(change.changed))
    power = [client.post("/api/plan", json={"model": "llama-8b", "task": "chat", "demand_rps": 5, "gpus": ["h100"],
                                            "num_gpus": 1, "batch": 64, "input_tokens": n}).json()["plan"]
             ["chosen"]["power_kw"] for n in (SHORT, LONG)]
    _rises(*power)
