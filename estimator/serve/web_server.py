"""Running the explorer: uvicorn, with the page served while the API loads.

Importing FastAPI and the estimator's API (pandas, the pydantic schema) takes most of a second on an idle core,
and loading the predictor more. :class:`DeferredApp` answers the page and its static files at once (they need
neither) and builds the FastAPI app of :mod:`estimator.serve.web` in a background thread once the socket is bound;
API requests that arrive before it is built wait for it. The browser meanwhile parses plotly.min.js, so a user's
wait overlaps the server's.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from estimator.serve import web

#: what the page needs before its first API call, served without FastAPI
_PAGE = {"/": ("index.html", "text/html; charset=utf-8"), "/static/app.js": ("app.js", "text/javascript"),
         "/static/style.css": ("style.css", "text/css"), "/static/plotly.min.js": ("plotly.min.js", "text/javascript")}


class DeferredApp:
    """An ASGI app: the page at once; everything else by the FastAPI app once :meth:`build` has made it."""

    def __init__(self, factory):
        self._factory = factory
        self._app = None
        self._error: BaseException | None = None
        self._ready = threading.Event()

    def build(self) -> None:
        """Make the FastAPI app (call from a background thread); a failure is answered to every API request."""
        try:
            self._app = self._factory()
        except BaseException as exc:  # noqa: BLE001 - reported to each request instead of killing the server
            self._error = exc
        finally:
            self._ready.set()

    async def _send(self, send, status: int, body: bytes, content_type: str) -> None:
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": f"{message['type']}.complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if self._app is None and scope["type"] == "http":
            path = scope["path"]
            if path in _PAGE and scope["method"] == "GET":
                name, content_type = _PAGE[path]
                await self._send(send, 200, web.static_text(name).encode(), content_type)
                return
            if path == "/api/health":
                body = json.dumps({"status": "ok", "ready": self._ready.is_set()}).encode()
                await self._send(send, 200, body, "application/json")
                return
        if not self._ready.is_set():
            import anyio

            await anyio.to_thread.run_sync(self._ready.wait)
        if self._error is not None:
            body = json.dumps({"error": f"the server could not start its API: {web.one_line(self._error)}",
                               "field": None}).encode()
            await self._send(send, 500, body, "application/json")
            return
        await self._app(scope, receive, send)


def _build_when_listening(server, app: DeferredApp) -> None:
    """Once ``server`` listens: build the API, then load the predictor and catalogs (first answers come faster)."""
    while not server.started and not server.should_exit:
        time.sleep(0.01)
    app.build()
    try:
        web.estimator.load_predictor()
        web.catalog_listing()
    except Exception:  # noqa: BLE001 - the first request reports the problem with its own message
        return


def serve(*, host: str = "127.0.0.1", port: int = 8000, calibration: Path | None = None) -> None:
    """Run the explorer with uvicorn until interrupted (binds 127.0.0.1 unless told otherwise).

    Raises:
        estimator.learn.calibration.CalibrationError: ``calibration`` cannot be read as a calibration.
    """
    import uvicorn

    if calibration is not None:  # read once, before listening: a bad file fails with the CLI's one-line message
        print(f"{calibration}: {web.calibration_note(web.calibration_kwargs(calibration))}", file=sys.stderr)
    app = DeferredApp(lambda: web.create_app(calibration=calibration))
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    threading.Thread(target=_build_when_listening, args=(server, app), daemon=True).start()
    print(f"joules-estimate explorer on http://{host}:{port}/  (API docs: http://{host}:{port}/docs)", flush=True)
    server.run()
