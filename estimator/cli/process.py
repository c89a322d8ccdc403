"""How the ``joules-estimate`` process ends: without Python's teardown once the command is done.

Python's ordinary exit frees every pandas, numpy and pydantic object one by one; on 2 cores that took ~0.3 s of a
cold frontier run's 1.5 s budget (``benchmarks/speed.md``), after the output was already written. So the console
script runs the command, then the atexit handlers ordinary exit would run, flushes stdout and stderr, and ends with
``os._exit``. Files the commands write are closed by then (context managers, ``estimator/safe_io.py``), and the
multiprocessing pool of ``predict`` is closed by its ``with`` block. An exception other than SystemExit takes the
ordinary way out (traceback, normal teardown). Tests drive the typer app in-process and never reach this.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from typing import NoReturn


def exit_code(code) -> int:
    """The status ``sys.exit(code)`` gives: None -> 0, an int as is, anything else printed to stderr -> 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_then_exit(app) -> NoReturn:
    """Run the typer ``app`` (standalone: it ends with SystemExit) and end the process with its exit status."""
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exit_code(exc.code)
    atexit._run_exitfuncs()  # noqa: SLF001 - the handlers ordinary interpreter exit would run
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`): nothing more can be written
            stream.flush()
    os._exit(code)
