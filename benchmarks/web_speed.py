"""Speed of the web explorer, measured as a user meets it: server start, and frontier updates timed in the browser.

    PYTHONPATH=. python benchmarks/web_speed.py        # prints the table and writes benchmarks/web_speed.md

- server start: spawn ``python -m estimator.cli serve`` until ``/api/health`` answers (the page is served from then
  on; the predictor loads in the background), and until the first frontier answer;
- slider: from the slider's input event to the next animation frame after the chart and table were redrawn
  (``performance.now()`` in the page, no request: the API's configurations are already there);
- input change: from a new input (output tokens) to the next animation frame after fetch + redraw, for inputs the
  server has not seen (cold: ``estimate()`` runs) and for inputs it has (warm: memoised answer), with 1 and 3 GPUs.
Targets (issue 14): update <= 300 ms, server start <= 2 s, on 2 cores.
"""

from __future__ import annotations

import os
import statistics
import time
import urllib.request

from web_common import ROOT, browser_page, cpu_seconds, running_server

REPEATS_START = 3
SLIDER_POSITIONS = list(range(50, 1000, 50))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _row(name: str, values: list[float], unit: str, target: float | None) -> str:
    median = statistics.median(values)
    verdict = "-" if target is None else ("yes" if median <= target else "no")
    return (f"| {name} | {len(values)} | {median:.0f} | {_percentile(values, 0.9):.0f} | {max(values):.0f} | {unit} "
            f"| {'-' if target is None else f'{target:.0f}'} | {verdict} |")


def measure_start() -> dict[str, list[float]]:
    """Per run, in ms: spawn to the page answering, the server's CPU time by then, spawn to the API answering
    (/api/options: FastAPI and the estimator API imported), its CPU time by then, spawn to the first frontier.
    On an otherwise idle machine the start is single-threaded: wall time ~ CPU time."""
    out: dict[str, list[float]] = {}
    body = b'{"model": "llama-70b", "task": "chat", "gpus": ["b200"]}'
    for _ in range(REPEATS_START):
        started = time.perf_counter()
        with running_server(with_process=True) as (base, seconds, process):
            out.setdefault("server start: spawn to page answering", []).append(1e3 * seconds)
            out.setdefault("server start: its CPU time by then", []).append(1e3 * cpu_seconds(process.pid))
            with urllib.request.urlopen(base + "/api/options", timeout=120) as response:
                response.read()
            out.setdefault("server start: spawn to API answering", []).append(1e3 * (time.perf_counter() - started))
            out.setdefault("server start: its CPU time by API answering", []).append(1e3 * cpu_seconds(process.pid))
            request = urllib.request.Request(base + "/api/frontier", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=120) as response:
                response.read()
            out.setdefault("server start: spawn to first frontier answer", []).append(
                1e3 * (time.perf_counter() - started))
    return out


def _thread_ms(cdp) -> float:
    """CPU time of the page's main thread so far (Chrome DevTools Protocol Performance.getMetrics ThreadTime)."""
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return 1e3 * metrics["ThreadTime"]


def _update_ms(page, output_tokens: float) -> float:
    return page.evaluate("""async (tokens) => {
        document.getElementById('f-output_tokens').value = String(tokens);
        const started = performance.now();
        await refreshFrontier();
        await new Promise((resolve) => requestAnimationFrame(() => resolve()));
        return performance.now() - started; }""", output_tokens)


def _set_gpus(page, keys: list[str]) -> None:
    page.evaluate("""(keys) => { for (const box of document.querySelectorAll('#f-gpus input'))
        box.checked = keys.includes(box.value); }""", keys)


def measure_browser() -> dict[str, list[float]]:
    """Milliseconds per update in the page, by kind, and the server's CPU milliseconds per cold update."""
    out: dict[str, list[float]] = {}
    with running_server(with_process=True) as (base, _, process), browser_page() as page:
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.goto(base + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        page.evaluate("() => { document.getElementById('f-model').value = 'llama-70b'; return refreshFrontier(); }")
        for offset, (gpus, label) in enumerate(((["B200"], "1 GPU"), (["B200", "H100-SXM", "H200"], "3 GPUs"))):
            _set_gpus(page, gpus)
            tokens = [300 + 37 * i + 1000 * offset for i in range(6)]  # never asked before: estimate() runs
            for kind in ("cold", "warm"):
                for count in tokens:
                    server, browser = cpu_seconds(process.pid), _thread_ms(cdp)
                    out.setdefault(f"input change, {kind}, {label}", []).append(_update_ms(page, count))
                    cpu = 1e3 * (cpu_seconds(process.pid) - server) + _thread_ms(cdp) - browser
                    out.setdefault(f"input change, {kind}, {label}: CPU time", []).append(cpu)
        for position in SLIDER_POSITIONS:
            page.evaluate("window.__joules.timings.length = 0")
            browser = _thread_ms(cdp)
            page.locator("#f-limit").fill(str(position))
            page.wait_for_function("window.__joules.timings.some(t => t.kind === 'slider')")
            out.setdefault("slider, 3 GPUs", []).append(page.evaluate("window.__joules.timings[0].ms"))
            out.setdefault("slider, 3 GPUs: CPU time", []).append(_thread_ms(cdp) - browser)
    return out


def main() -> None:
    load_before = os.getloadavg()[0]
    start = measure_start()
    updates = measure_browser()
    lines = ["# Web explorer speed", "",
             "Generated by `PYTHONPATH=. python benchmarks/web_speed.py` on "
             f"{os.cpu_count()} cores (1-minute load average {load_before:.1f} at start, "
             f"{os.getloadavg()[0]:.1f} at end; other jobs shared the cores).", "",
             "| what | runs | median | p90 | max | unit | target | median within |",
             "|---|---|---|---|---|---|---|---|",
             *[_row(name, values, "ms", None if "frontier" in name else 2000)
               for name, values in start.items()],
             *[_row(name, values, "ms", 300) for name, values in updates.items()], "",
             "Slider: input event to the next animation frame after the redraw (no request). Input change: new "
             "output-token count to the next animation frame after fetch + redraw; cold = the server runs "
             "`estimate()` for each GPU, warm = the same inputs again (memoised). CPU time rows: user + system time of "
             "the server process (/proc) plus, for updates, the page's main-thread CPU time (Chrome DevTools "
             "Performance.getMetrics ThreadTime): about what the wall time would be on idle cores.", ""]
    text = "\n".join(lines)
    (ROOT / "benchmarks" / "web_speed.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
