"""Screenshots of each panel of the web explorer (``joules-estimate serve``) for docs/: run, then look at them.

    PYTHONPATH=. python benchmarks/web_screenshots.py          # writes docs/web-*.png

It starts the server as a user would, drives the system Chromium (Playwright, nothing downloaded) through one
session: Llama-3.1-70B on chat over the GPUs in the training data, latency limit 30 ms; a what-if to 8 x H100;
a plan for 50,000 tokens/s under 50 ms at $0.10/kWh on the US grid with PUE 1.3; and FLUX.1-dev text-to-image
for the diffusion axes (J/image).
"""

from __future__ import annotations

from web_common import ROOT, browser_page, running_server

DOCS = ROOT / "docs"


def _frontier(page) -> None:
    page.locator("#f-limit").wait_for()
    page.evaluate("setLimit(30)")
    page.locator("#panel-frontier").screenshot(path=DOCS / "web-frontier.png")
    star = page.evaluate("""() => { const gd = document.getElementById('frontier-chart');
        const t = gd.data.filter(t => t.marker && t.marker.symbol === 'star' && t.x.length && t.x[0] !== null).pop();
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        return [xa._offset + xa.l2p(Math.log10(t.x[0])), ya._offset + ya.l2p(Math.log10(t.y[0]))]; }""")
    chart = page.locator("#frontier-chart").bounding_box()
    page.mouse.move(chart["x"] + star[0], chart["y"] + star[1])
    page.wait_for_selector("#frontier-chart .hovertext")
    page.locator("#frontier-chart").screenshot(path=DOCS / "web-hover.png")
    page.mouse.move(0, 0)


def _what_if(page) -> None:
    page.locator("#w-from-pick").click()
    page.locator("#c-gpu").select_option("H100-SXM")
    page.locator("#c-num_gpus").fill("8")
    with page.expect_response("**/api/what-if", timeout=60_000):
        page.locator("#w-run").click()
    page.wait_for_selector("#whatif-waterfall .main-svg")
    page.locator("#panel-whatif").screenshot(path=DOCS / "web-what-if.png")


def _plan(page) -> None:
    page.locator("#p-demand_tokens_per_sec").fill("50000")
    page.locator("#p-max_itl_ms").fill("50")
    page.locator("#p-electricity_usd_per_kwh").fill("0.10")
    page.locator("#p-grid_region").fill("US")
    page.locator("#p-pue").fill("1.3")
    with page.expect_response("**/api/plan", timeout=60_000):
        page.locator("#p-run").click()
    page.wait_for_selector("#plan-alternatives tbody tr")
    page.locator("#plan-notes").evaluate("node => node.open = true")
    page.locator("#panel-plan").screenshot(path=DOCS / "web-plan.png")


def _diffusion_and_error(page) -> None:
    with page.expect_response("**/api/frontier", timeout=60_000):
        page.locator("#f-model").fill("flux-dev")
        page.locator("#f-task").select_option("text-to-image")
    page.wait_for_function("window.__joules.frontier && window.__joules.frontier.estimates.length"
                           " && window.__joules.frontier.estimates[0].family === 'diffusion'", timeout=60_000)
    page.locator("#panel-frontier").screenshot(path=DOCS / "web-frontier-diffusion.png")
    with page.expect_response("**/api/frontier", timeout=60_000):
        page.locator("#f-resolution").fill("1024by1024")
        page.locator("#f-resolution").dispatch_event("change")
    page.wait_for_function("document.getElementById('err-resolution').textContent.length > 0")
    page.locator("#frontier-form").screenshot(path=DOCS / "web-error.png")


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    with running_server() as (base, _), browser_page(width=1280, height=1000) as page:
        page.goto(base + "/")
        page.locator("#f-model").fill("llama-70b")
        with page.expect_response("**/api/frontier", timeout=60_000):
            page.locator("#f-model").dispatch_event("change")
        page.wait_for_function("window.__joules.frontier && window.__joules.frontier.estimates.length"
                               " && window.__joules.frontier.estimates[0].model_id.includes('70B')", timeout=60_000)
        # the page's "update: N ms" readout depends on the machine's load at that moment: left out of the pictures
        # (benchmarks/web_speed.md measures it)
        page.add_style_tag(content="#frontier-timing { visibility: hidden; }")
        _frontier(page)
        _what_if(page)
        _plan(page)
        _diffusion_and_error(page)
    for name in ("frontier", "hover", "what-if", "plan", "frontier-diffusion", "error"):
        print(f"wrote docs/web-{name}.png")


if __name__ == "__main__":
    main()
