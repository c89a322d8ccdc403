"""The web explorer's JSON endpoints (estimator/serve/web.py) without a browser: same numbers as the Python API,
the CLI's one-line messages, no traceback, bounded requests, nothing written outside a temp dir, --html files."""

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
pytest.importorskip("plotly", reason="the web extra (plotly) is not installed")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import estimator  # noqa: E402
from estimator.serve import web  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "hf_configs"


@pytest.fixture(scope="module")
def client():
    return TestClient(web.create_app(rate_per_sec=1000, burst=1000), raise_server_exceptions=False)


def _cli_error(*args: str) -> str:
    """The CLI's one-line message for the same input (without its 'error: ' prefix)."""
    from estimator.cli.main import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code in (2, 3), result.output  # bad input, or a configuration that cannot run
    line = next(line for line in result.output.splitlines() if line.startswith("error: "))
    return line.removeprefix("error: ")


def test_frontier_equals_the_api(client):
    """Every number of /api/frontier is estimate()'s, for each GPU asked for."""
    body = {"model": "llama-70b", "task": "chat", "gpus": ["b200", "h100"], "max_itl_ms": 40, "output_tokens": 800}
    answer = client.post("/api/frontier", json=body)
    assert answer.status_code == 200
    estimates = answer.json()["estimates"]
    assert [e["gpu_model"] for e in estimates] == ["B200", "H100-SXM"]
    for gpu, shown in zip(body["gpus"], estimates, strict=True):
        direct = estimator.estimate("llama-70b", "chat", gpu, max_itl_ms=40, output_tokens=800)
        assert shown == direct.model_dump(mode="json")


def test_errors_are_the_cli_messages_with_their_field(client):
    """Bad input answers 422 with the CLI's own one-line message and the field it concerns, never a traceback."""
    answer = client.post("/api/frontier", json={"model": "llama-70bx", "task": "chat", "gpus": ["b200"]})
    assert answer.status_code == 422
    assert answer.json() == {"error": _cli_error("--model", "llama-70bx", "--task", "chat", "--gpu", "b200"),
                             "field": "model"}
    answer = client.post("/api/frontier", json={"model": "llama-70b", "task": "chat", "gpus": ["b200"],
                                                "precision": "fp9"})
    assert answer.json()["error"] == _cli_error("--model", "llama-70b", "--task", "chat", "--gpu", "b200",
                                                "--precision", "fp9")
    assert answer.json()["field"] == "precision"
    answer = client.post("/api/plan", json={"model": "llama-70b", "task": "chat"})
    assert answer.status_code == 422 and "Traceback" not in answer.text
    unknown_gpu = client.post("/api/frontier", json={"model": "llama-70b", "task": "chat", "gpus": ["b200", "b900"]})
    assert unknown_gpu.status_code == 200
    assert [e["gpu"] for e in unknown_gpu.json()["errors"]] == ["b900"]
    assert unknown_gpu.json()["errors"][0]["error"] == _cli_error("--model", "llama-70b", "--task", "chat",
                                                                  "--gpu", "b900")


def test_no_fit_gives_the_cli_reason(client):
    """A GPU where nothing fits is reported with the CLI's arithmetic, as an error of the gpus field."""
    answer = client.post("/api/frontier", json={"model": "llama-405b", "task": "chat", "gpus": ["l4"],
                                                "num_gpus": [1]})
    errors = answer.json()["errors"]
    assert len(errors) == 1 and errors[0]["field"] == "gpus"
    assert errors[0]["error"] == _cli_error("--model", "llama-405b", "--task", "chat", "--gpu", "l4",
                                            "--num-gpus", "1")


def test_catalog_marks_the_training_domain(client):
    """/api/catalog lists every catalog entry and marks those in the predictor card's training domain."""
    listing = client.get("/api/catalog").json()
    domain = estimator.load_predictor().card.domain
    trained_gpus = {gpu for family in domain.values() for gpu in family.gpus}
    assert {g["key"] for g in listing["gpus"] if g["trained"]} == trained_gpus
    assert any(m["key"] == "meta-llama/Llama-3.1-70B-Instruct" and "llama-70b" in m["aliases"]
               for m in listing["models"])


def test_unexpected_errors_are_one_line(client, monkeypatch):
    """An internal failure answers 500 with one line naming the exception, not a traceback."""
    def broken(*args, **kwargs):
        raise RuntimeError("boom\n  at somewhere")

    monkeypatch.setattr(web, "catalog_listing", broken)
    answer = client.get("/api/catalog")
    assert answer.status_code == 500
    assert answer.json()["error"] == "internal error (RuntimeError: boom)"


def test_request_size_and_rate_are_bounded():
    """Oversized bodies get 413, too many GPUs or list values 422, and a client over its rate 429."""
    client = TestClient(web.create_app(rate_per_sec=0.001, burst=3), raise_server_exceptions=False)
    big = client.post("/api/frontier", content=b"{" + b" " * (web.MAX_BODY_BYTES + 10) + b"}",
                      headers={"content-type": "application/json"})
    assert big.status_code == 413
    many = client.post("/api/frontier", json={"model": "llama-8b", "task": "chat", "gpus": ["b200"],
                                              "batch": list(range(1, 40))})
    assert many.status_code == 422 and "at most" in many.json()["error"]
    assert client.get("/api/health").status_code == 200
    assert client.get("/api/health").status_code == 429


def test_what_if_and_plan_equal_the_api(client):
    """/api/what-if and /api/plan return what what_if() and plan() return, plus the change's attribution."""
    base = {"model": "llama-70b", "task": "chat", "gpu": "b200", "num_gpus": 2}
    answer = client.post("/api/what-if", json={"base": base, "changes": {"gpu": "h100", "num_gpus": 4}}).json()
    assert answer["what_if"] == estimator.what_if(base, gpu="h100", num_gpus=4).model_dump(mode="json")
    attribution = answer["attribution"]
    assert attribution["changed"]["prediction"] == pytest.approx(
        answer["what_if"]["changed"]["metrics"]["energy_per_token_joules"]["value"], rel=1e-6)
    plan_body = {"model": "llama-70b", "task": "chat", "demand_tokens_per_sec": 50000, "max_itl_ms": 50,
                 "gpus": ["b200", "h100"], "electricity_usd_per_kwh": 0.1, "grid_region": "US", "pue": 1.3}
    answer = client.post("/api/plan", json=plan_body).json()
    direct = estimator.plan("llama-70b", "chat", demand_tokens_per_sec=50000, max_itl_ms=50, gpus=["b200", "h100"],
                            costs={"electricity_usd_per_kwh": 0.1, "grid_region": "US", "pue": 1.3})
    assert answer["plan"] == direct.model_dump(mode="json")
    assert answer["plan"]["chosen"]["costs"]["carbon_kg_per_day"]["value"] > 0
    both = client.post("/api/plan", json={**plan_body, "grid_gco2_per_kwh": 400})
    assert both.status_code == 422
    assert both.json() == {"error": "give --grid-gco2-per-kwh or --grid-region, not both", "field": "grid_gco2_per_kwh"}


def test_plan_options_follow_the_api_signature(client):
    """The plan form offers every keyword plan() takes (so new options appear without editing the page), with
    plan's ``costs`` offered as the fields of estimator.CostInputs."""
    import inspect

    offered = {f["name"] for f in client.get("/api/options").json()["plan"]}
    taken = set(inspect.signature(estimator.plan).parameters) - {"extra_models", "predictor", "catalog",
                                                                 "calibration", "costs"}
    assert taken | set(estimator.CostInputs.model_fields) <= offered
    schema = client.get("/openapi.json").json()
    assert {"/api/frontier", "/api/what-if", "/api/plan", "/api/catalog"} <= set(schema["paths"])


def test_uploaded_config_is_parsed_in_a_temp_dir_only(client, tmp_path, monkeypatch):
    """An uploaded config.json predicts like --model-config, and nothing is left behind outside a temp dir."""
    config = json.loads((FIXTURES / "mistralai__Mistral-7B-Instruct-v0.3.json").read_text())
    monkeypatch.chdir(tmp_path)
    answer = client.post("/api/model-config", json={"hf_config": config, "model": "my-mistral"})
    assert answer.status_code == 200 and answer.json()["model"] == "my-mistral"
    frontier = client.post("/api/frontier", json={"model": "my-mistral", "task": "chat", "gpus": ["h100"],
                                                  "hf_config": config})
    assert frontier.status_code == 200
    shown = frontier.json()["estimates"][0]["min_energy"]["metrics"]["energy_per_token_joules"]["value"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    from estimator.cli.options import extra_models_from

    name, extra = extra_models_from("my-mistral", path)
    assert shown == estimator.estimate(name, "chat", "h100", extra_models=extra).min_energy.value(
        "energy_per_token_joules")
    path.unlink()
    assert list(tmp_path.iterdir()) == []
    assert not list(Path(web.tempfile.gettempdir()).glob("joules-web-*"))
    bad = client.post("/api/model-config", json={"hf_config": {"model_type": "llama"}})
    assert bad.status_code == 422 and bad.json()["error"] and "\n" not in bad.json()["error"]


@pytest.mark.parametrize("command", [
    ["--model", "llama-8b", "--task", "chat", "--gpu", "h100"],
    ["what-if", "--model", "llama-8b", "--task", "chat", "--gpu", "h100", "--set", "gpu=b200"],
    ["plan", "--model", "llama-8b", "--task", "chat", "--demand-tokens-per-sec", "20000", "--max-itl-ms", "50"],
])
def test_html_export_is_self_contained(command, tmp_path):
    """--html writes one file with every script inlined (no src= or href= to fetch) and the API's result inside."""
    from estimator.cli.main import app

    path = tmp_path / "result.html"
    result = CliRunner().invoke(app, [*command, "--html", str(path)])
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=\"(?!data:)", text)
    embedded = json.loads(re.search(r"window\.JOULES_STATIC = (\{.*?\});</script>", text, re.S).group(1))
    assert embedded["kind"] == {"what-if": "what-if", "plan": "plan"}.get(command[0], "frontier")
    assert "Plotly" in text and embedded["data"]


def test_page_answers_before_the_api_is_built():
    """`serve` answers the page while FastAPI and the API load; API requests get the built app, or one line
    saying why it could not be built."""
    from estimator.serve.web_server import DeferredApp

    deferred = DeferredApp(lambda: web.create_app(rate_per_sec=1000, burst=1000))
    client = TestClient(deferred)
    assert client.get("/").status_code == 200 and "app.js" in client.get("/").text
    assert client.get("/api/health").json() == {"status": "ok", "ready": False}
    deferred.build()
    assert client.get("/api/options").status_code == 200
    broken = DeferredApp(lambda: (_ for _ in ()).throw(ImportError("no module named fastapi")))
    broken.build()
    answer = TestClient(broken).get("/api/catalog")
    assert answer.status_code == 500
    assert answer.json()["error"] == "the server could not start its API: no module named fastapi"


def test_catalog_gives_each_model_its_own_default_output_length(client):
    """The form's output-length placeholder must be what the API will assume: Llama-3.1-70B's measured mean on chat
    (~350 tokens), not the task-wide ~600; a model nobody measured keeps the task's."""
    models = {m["key"]: m for m in client.get("/api/catalog").json()["models"]}
    own = models["meta-llama/Llama-3.1-70B-Instruct"]["output_tokens"]["lm-arena-chat"]
    assert own["level"] == "model" and 300 < own["tokens"] < 420
    diffusion = next(m for m in models.values() if m["kind"] == "diffusion")
    assert diffusion["output_tokens"] == {}
