"""``--html FILE``: one self-contained interactive HTML file of a frontier, what-if or plan result.

The file is the explorer's own page (``estimator/serve/static/``) with its stylesheet, plotly.min.js (from the
``plotly`` wheel) and app.js inlined, and the result embedded as the JSON the endpoints would have answered
(:func:`estimator.serve.web.frontier_payload` and siblings), so it opens offline and shows the same numbers; the
frontier's latency slider keeps working. No request leaves the page.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from estimator.serve import web

KINDS = ("frontier", "what-if", "plan")


def _inline_script(text: str) -> str:
    if "</script" in text.lower():
        raise ValueError("a script to inline contains '</script'")
    return f"<script>{text}</script>"


def standalone_html(kind: str, payload: dict[str, Any], *, note: str, tasks: list[dict] | None = None) -> str:
    """The page with everything inlined and ``payload`` embedded.

    Args:
        kind: 'frontier', 'what-if' or 'plan' (which panel the file shows).
        payload: the endpoint's answer for that kind (``frontier_payload``, ``what_if_payload``, ``plan_payload``).
        note: one line shown on top (what produced the file).
        tasks: the catalog's task list (names J/image or J/video on diffusion axes); optional.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    embedded = {"kind": kind, "data": payload, "note": note, "catalog": {"tasks": tasks or [], "models": [],
                                                                          "gpus": []}}
    data = json.dumps(embedded, allow_nan=False).replace("</", "<\\/")
    page = web.static_text("index.html")
    replacements = {
        '<link rel="stylesheet" href="/static/style.css">': f"<style>{web.static_text('style.css')}</style>",
        '<script src="/static/plotly.min.js"></script>': _inline_script(web.static_text("plotly.min.js")),
        '<script src="/static/app.js"></script>': (f"<script>window.JOULES_STATIC = {data};</script>"
                                                   + _inline_script(web.static_text("app.js"))),
    }
    for tag, inline in replacements.items():
        if tag not in page:
            raise ValueError(f"index.html lacks {tag}")
        page = page.replace(tag, inline)
    return page


def write_html(kind: str, payload: dict[str, Any], path: str | Path, *, command: str) -> Path:
    """Write :func:`standalone_html` to ``path``; ``command`` (the command line) goes into the note."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    note = f"Saved result of `{command}` ({stamp}). Opens offline; numbers as the API returned them."
    try:
        tasks = web.catalog_listing()["tasks"]
    except Exception:  # noqa: BLE001 - only the axis label's J/image vs J/item depends on it
        tasks = None
    path = Path(path)
    path.write_text(standalone_html(kind, payload, note=note, tasks=tasks), encoding="utf-8")
    return path
