"""The explorer in a real headless browser (system Chromium driven by Playwright): load the page, choose inputs,
move the latency slider, run a what-if and a plan, and check that every number shown is the API's number."""

import json
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi, uvicorn, plotly) is not installed")
pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")
pytest.importorskip("playwright", reason="playwright (the Python package) is not installed")

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or "")
                 if p and Path(p).is_file()), None)
if CHROMIUM is None:
    pytest.skip("no system Chromium (apt-get install chromium); browser tests skipped", allow_module_level=True)

FIXTURES = Path(__file__).parent / "fixtures" / "hf_configs"


@pytest.fixture(scope="module")
def base_url():
    """One server for the module, in a thread of this process (uvicorn on a free loopback port)."""
    import uvicorn

    from estimator.serve.web import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(rate_per_sec=1000, burst=1000), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, base_url):
    """The explorer, loaded once with its defaults (errors in the page's JavaScript fail the tests)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base_url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    yield page
    assert not errors, errors
    page.close()


def post(page, path: str, body: dict) -> dict:
    """The same endpoint the page uses, called as a script would (not through the page's code)."""
    response = page.request.post(page.url.rstrip("/") + path, data=json.dumps(body),
                                 headers={"Content-Type": "application/json"})
    assert response.ok, response.text()
    return response.json()


def shown_number(cell) -> float:
    """A number as the page prints it (thousands separators removed)."""
    return float(cell.inner_text().replace(",", ""))


def assert_shown(locator, value: float) -> None:
    """The element carries the API's value exactly and prints it to 4 significant digits."""
    assert float(locator.get_attribute("data-value")) == value
    assert shown_number(locator) == pytest.approx(value, rel=5e-4, abs=0.5 if abs(value) >= 1000 else 0)


def assert_picks_match(page, api_estimates: list[dict], which: str) -> None:
    for est in api_estimates:
        expected = est[which]
        row = page.locator(f"#frontier-picks tr[data-gpu='{est['gpu_model']}']")
        cells = row.locator("td")
        assert shown_number(cells.nth(1)) == expected["configuration"]["num_gpus"]
        assert shown_number(cells.nth(2)) == expected["configuration"]["max_num_seqs"]
        for name in (est["energy_metric"], est["latency_metric"], "avg_power_watts", "tokens_per_sec_per_watt"):
            cell = row.locator(f"td[data-metric='{name}']")
            for part in ("value", "p10", "p90"):
                css = {"value": ".v", "p10": ".p10", "p90": ".p90"}[part]
                assert_shown(cell.locator(css), expected["metrics"][name][part])


def test_frontier_numbers_equal_the_api(page):
    """Loaded with its defaults, the page shows each GPU's minimum-energy point exactly as /api/frontier returns it,
    and the chart has one frontier line per GPU."""
    request = page.evaluate("frontierRequest()")
    assert len(request["gpus"]) >= 2
    api = post(page, "/api/frontier", request)["estimates"]
    assert_picks_match(page, api, "min_energy")
    lines = page.evaluate("document.getElementById('frontier-chart').data"
                          ".filter(t => t.mode === 'lines+markers').map(t => t.x.length)")
    assert lines == [len(est["frontier"]) for est in api]
    hover = page.evaluate("document.getElementById('frontier-chart').data"
                          ".filter(t => t.mode === 'lines+markers').map(t => [t.hovertemplate, t.customdata[0]])")
    for (template, first_point), est in zip(hover, api, strict=True):
        assert all(word in template for word in ("batch", "power", "tokens/s/W", "J/token"))
        point = est["frontier"][0]
        assert first_point == [point["configuration"]["gpu_model"], point["configuration"]["num_gpus"],
                               point["configuration"]["max_num_seqs"], point["metrics"]["avg_power_watts"]["value"],
                               point["metrics"]["tokens_per_sec_per_watt"]["value"],
                               point["metrics"]["energy_per_token_joules"]["p10"],
                               point["metrics"]["energy_per_token_joules"]["p90"]]


def test_slider_moves_the_marked_point(page):
    """Moving the latency slider marks, for every GPU, the minimum-energy point /api/frontier returns for that
    limit, and the starred points in the chart move with it."""
    page.locator("#f-limit").fill("300")
    limit = float(page.locator("#limit-readout").get_attribute("data-value"))
    assert page.locator("#limit-readout").inner_text().startswith("≤")
    request = {**page.evaluate("frontierRequest()"), "max_itl_ms": limit}
    api = post(page, "/api/frontier", request)["estimates"]
    moved = [e for e in api if e["min_energy_within_limit"] and
             e["min_energy_within_limit"]["configuration"] != e["min_energy"]["configuration"]]
    assert moved, "the limit should exclude some minimum-energy point"
    assert_picks_match(page, [e for e in api if e["min_energy_within_limit"]], "min_energy_within_limit")
    stars = page.evaluate("document.getElementById('frontier-chart').data"
                          ".filter(t => t.marker && t.marker.symbol === 'star' && t.x.length && t.x[0] !== null)"
                          ".map(t => [t.x[0], t.y[0]])")
    expected = [[e["min_energy_within_limit"]["metrics"]["median_itl_ms"]["value"],
                 e["min_energy_within_limit"]["metrics"]["energy_per_token_joules"]["value"]]
                for e in api if e["min_energy_within_limit"]]
    assert stars == expected
    page.locator("#f-limit").fill("1000")
    assert page.locator("#limit-readout").inner_text() == "no limit"


def test_changed_inputs_refetch(page):
    """Choosing other inputs (output tokens, one GPU less) redraws with the API's numbers for those inputs."""
    first_gpu = page.locator("#f-gpus input:checked").first
    with page.expect_response("**/api/frontier"):
        first_gpu.uncheck()
    with page.expect_response("**/api/frontier"):
        page.locator("#f-output_tokens").fill("1000")
        page.locator("#f-output_tokens").dispatch_event("change")
    page.wait_for_function("window.__joules.frontier && window.__joules.frontier.estimates[0].workload"
                           ".output_tokens === 1000")
    request = page.evaluate("frontierRequest()")
    assert request["output_tokens"] == 1000
    api = post(page, "/api/frontier", request)["estimates"]
    assert page.locator("#frontier-picks tbody tr").count() == len(api) == len(request["gpus"])
    assert_picks_match(page, api, "min_energy")


def test_bad_input_shows_the_cli_message_beside_the_field(page):
    """An unknown model shows the CLI's one-line message next to the model field; a broken upload next to the
    upload field; the page stays usable."""
    from typer.testing import CliRunner

    from estimator.cli.main import app

    cli = CliRunner().invoke(app, ["--model", "llama-70bx", "--task", "chat", "--gpu", "b200"])
    message = next(line for line in cli.output.splitlines() if line.startswith("error: ")).removeprefix("error: ")
    model = page.locator("#f-model")
    previous = model.input_value()
    with page.expect_response("**/api/frontier"):
        model.fill("llama-70bx")
        model.dispatch_event("change")
    page.wait_for_function("document.getElementById('err-model').textContent.length > 0")
    assert page.locator("#err-model").inner_text() == message
    page.locator("#f-config").set_input_files(files=[{"name": "config.json", "mimeType": "application/json",
                                                      "buffer": b"{not json"}])
    page.wait_for_function("document.getElementById('err-hf_config').textContent.length > 0")
    assert page.locator("#err-hf_config").inner_text() == "config.json: not valid JSON"
    with page.expect_response("**/api/frontier"):
        model.fill(previous)
        model.dispatch_event("change")
    page.wait_for_function("document.getElementById('err-model').textContent === ''")


def test_upload_a_config_json(page):
    """Uploading a Hugging Face config.json draws that model's frontier, equal to the API given the same config."""
    config = (FIXTURES / "mistralai__Mistral-7B-Instruct-v0.3.json").read_bytes()
    with page.expect_response("**/api/frontier"):
        page.locator("#f-config").set_input_files(files=[{"name": "config.json", "mimeType": "application/json",
                                                          "buffer": config}])
    page.wait_for_function("window.__joules.hfName !== null && window.__joules.frontier"
                           " && window.__joules.frontier.estimates[0].model_id === window.__joules.hfName")
    assert "uploaded" in page.locator("#config-status").inner_text()
    request = page.evaluate("frontierRequest()")
    assert request["hf_config"] == json.loads(config)
    assert_picks_match(page, post(page, "/api/frontier", request)["estimates"], "min_energy")
    with page.expect_response("**/api/frontier"):
        page.locator("#f-model").fill("llama-70b")
        page.locator("#f-model").dispatch_event("change")
    assert page.evaluate("window.__joules.hfConfig") is None


def test_what_if_panel(page):
    """The what-if panel compares the marked point with another GPU and count: the table equals /api/what-if and
    the waterfall runs from the before value to the after value."""
    page.locator("#w-from-pick").click()
    page.locator("#c-gpu").select_option("H100-SXM")
    page.locator("#c-num_gpus").fill("8")
    with page.expect_response("**/api/what-if"):
        page.locator("#w-run").click()
    page.wait_for_selector("#whatif-table tbody tr")
    api = post(page, "/api/what-if", page.evaluate("whatIfRequest()"))
    result = api["what_if"]
    assert result["changed"]["configuration"]["gpu_model"] == "H100-SXM"
    for name, delta in result["deltas"].items():
        row = page.locator(f"#whatif-table tr[data-metric='{name}']")
        assert_shown(row.locator("td").nth(1).locator(".v"), result["base"]["metrics"][name]["value"])
        assert_shown(row.locator("td").nth(2).locator(".v"), result["changed"]["metrics"][name]["value"])
        assert_shown(row.locator(".pct"), delta["percent"])
    waterfall = page.evaluate("document.getElementById('whatif-waterfall').data[0]")
    assert waterfall["type"] == "waterfall"
    assert waterfall["x"][0] == api["attribution"]["base"]["prediction"]
    assert sum(waterfall["x"]) == pytest.approx(api["attribution"]["changed"]["prediction"], rel=1e-9)
    page.locator("#c-precision").fill("fp9")
    with page.expect_response("**/api/what-if"):
        page.locator("#w-run").click()
    page.wait_for_function("document.getElementById('err-whatif').textContent.length > 0")
    reason = post(page, "/api/what-if", page.evaluate("whatIfRequest()"))["what_if"]["changed"]["reason"]
    assert page.locator("#err-whatif").inner_text() == f"after: {reason}"
    from typer.testing import CliRunner

    from estimator.cli.main import app

    cli = CliRunner().invoke(app, ["what-if", "--model", "llama-70b", "--task", "chat", "--gpu", "b200",
                                   "--set", "precision=fp9"])
    assert "unknown precision 'fp9'" in reason and "unknown precision 'fp9'" in " ".join(cli.output.split())
    page.locator("#c-precision").fill("")


def test_plan_panel(page):
    """The plan panel offers plan()'s options and shows the chosen fleet and alternatives as /api/plan returns."""
    page.locator("#p-demand_tokens_per_sec").fill("50000")
    page.locator("#p-max_itl_ms").fill("50")
    page.locator("#p-electricity_usd_per_kwh").fill("0.1")
    page.locator("#p-grid_region").fill("US")
    with page.expect_response("**/api/plan"):
        page.locator("#p-run").click()
    page.wait_for_selector("#plan-alternatives tbody tr")
    plan = post(page, "/api/plan", page.evaluate("planRequest()"))["plan"]
    deployments = [plan["chosen"], *[d for d in plan["alternatives"] if d != plan["chosen"]]]
    rows = page.locator("#plan-alternatives tbody tr")
    assert rows.count() == len(deployments)
    for index, deployment in enumerate(deployments):
        row = rows.nth(index)
        assert row.get_attribute("data-gpu") == deployment["prediction"]["configuration"]["gpu_model"]
        for key in ("replicas", "total_gpus", "power_kw", "energy_per_day_kwh", "throughput_per_watt"):
            assert_shown(row.locator(f"td[data-field='{key}'] .v"), deployment[key])
        assert_shown(row.locator("td[data-field='power_kw'] .p90"), deployment["power_kw_p90"])
        costs = page.locator("#plan-costs tbody tr").nth(index)
        for key in ("energy_per_day_kwh", "total_usd_per_day", "carbon_kg_per_day"):
            for part in ("v", "p10", "p90"):
                name = {"v": "value"}.get(part, part)
                assert_shown(costs.locator(f"td[data-metric='costs.{key}'] .{part}"), deployment["costs"][key][name])
    heading = page.locator("#plan-chosen h3").inner_text()
    assert re.search(rf"{plan['chosen']['replicas']} replica", heading)


def test_html_file_works_offline(browser, page, tmp_path):
    """An --html file opens with every request to the network refused, and shows the embedded API numbers."""
    import estimator
    from estimator.serve.web import frontier_payload
    from estimator.serve.web_export import write_html

    est = estimator.estimate("llama-8b", "chat", "h100", max_itl_ms=20)
    path = write_html("frontier", frontier_payload([est], []), tmp_path / "frontier.html", command="test")
    context = browser.new_context(offline=True)
    offline = context.new_page()
    requested: list[str] = []
    offline.on("request", lambda request: requested.append(request.url))
    offline.goto(path.as_uri())
    offline.wait_for_selector("body[data-ready='1']")
    offline.wait_for_selector("#frontier-picks tbody tr")
    assert [url for url in requested if not url.startswith(("file:", "data:"))] == []
    cell = offline.locator("#frontier-picks td[data-metric='energy_per_token_joules'] .v")
    assert_shown(cell, est.min_energy.metrics["energy_per_token_joules"].value)
    context.close()
