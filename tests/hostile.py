"""Shared checks of the hostile-input suites (tests/test_hostile_*.py): exit code, a message naming the problem,
no traceback, and no file clobbered."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from typer.testing import CliRunner

runner = CliRunner()


def snapshot(folder: Path) -> dict[str, str]:
    """Path -> sha256 of every regular file under ``folder`` (FIFOs and sockets are skipped, never opened)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def check(app, argv: list[str], code: int, pattern: str, folder: Path, *, new_files: tuple[str, ...] = ()):
    """Run ``argv``; assert the exit code, that ``pattern`` (regex, case-insensitive) is in the output, that no
    traceback is shown, and that files under ``folder`` are unchanged (only ``new_files`` may appear)."""
    before = snapshot(folder)
    result = runner.invoke(app, argv)
    output = result.output  # click >= 8.2: stdout and stderr as a terminal shows them
    assert result.exit_code == code, f"exit {result.exit_code} != {code}: {output[-2000:]}"
    assert re.search(pattern, output, re.IGNORECASE | re.DOTALL), f"{pattern!r} not in: {output[-2000:]}"
    assert "Traceback" not in output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}")
    after = snapshot(folder)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    added = [name for name in after if name not in before and name not in new_files]
    assert not changed and not added, f"clobbered {changed}, added {added}"
    return result


def error_line(result) -> str:
    """The single ``error:`` line of a failed command (asserting there is exactly one)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]
