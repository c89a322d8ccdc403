"""The browser side of the CLI: ``joules-estimate serve`` and ``--html FILE`` (both need the ``[web]`` extra).

Only typer is imported here; FastAPI, uvicorn and plotly load inside the functions, after a check that names the
missing package in one line.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Annotated

import typer

from estimator.cli.calibrate import CalibrationOption
from estimator.cli.options import fail, user_errors

Html = Annotated[Path | None, typer.Option(help="Also write the result as one self-contained interactive HTML file "
                                           "(opens offline; needs the web extra).", dir_okay=False)]


def check_html(html: Path | None) -> None:
    """Fail before any work when --html is asked for but the page's chart library is missing."""
    if html is None:
        return
    from estimator.serve.web import plotly_js_path

    try:
        plotly_js_path()
    except ImportError as exc:
        fail(f"--html needs the web extra ({exc}); pip install -e '.[web]'")


def write_html(kind: str, make_payload, html: Path | None) -> None:
    """Write ``make_payload(web module)`` as a ``kind`` page ('frontier', 'what-if', 'plan') to ``html``, if given."""
    if html is None:
        return
    from estimator.serve import web
    from estimator.serve.web_export import write_html as write

    write(kind, make_payload(web), html, command="joules-estimate " + " ".join(sys.argv[1:]))
    typer.echo(f"wrote {html}", err=True)


def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    calibration: CalibrationOption = None,
) -> None:
    """The what-if explorer in your browser: frontier, what-if and plan on one page, over documented JSON
    endpoints (http://HOST:PORT/docs). Needs the web extra: pip install -e '.[web]'."""
    with user_errors():
        missing = [name for name in ("fastapi", "uvicorn", "plotly") if importlib.util.find_spec(name) is None]
        if missing:
            fail(f"serve needs {', '.join(missing)}: pip install -e '.[web]'")
        from estimator.serve.web_server import serve as run_server

        run_server(host=host, port=port, calibration=calibration)
