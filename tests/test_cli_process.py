"""The console script ends with ``os._exit`` (estimator/cli/process.py); its output and exit status must be exactly
what ordinary exit gives: buffered output flushed, typer's status codes kept, ``sys.exit("text")`` as Python does."""

import json
import os
import subprocess
import sys
from pathlib import Path

from estimator.cli.process import exit_code

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "estimator.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=120)


def test_output_flushed_and_status_kept():
    """A piped --json frontier arrives whole (it parses), with status 0; an unknown model still exits 2 with its
    one error line."""
    done = _run("--model", "llama-70b", "--task", "chat", "--gpu", "b200", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model_id"] == "meta-llama/Llama-3.1-70B-Instruct"
    failed = _run("--model", "no-such-model", "--task", "chat", "--gpu", "b200")
    assert failed.returncode == 2
    assert failed.stderr.strip().startswith("error: unknown model")


def test_exit_code_as_python():
    """sys.exit(None) is 0, an int is itself, any other value is printed and gives 1."""
    assert (exit_code(None), exit_code(3), exit_code(0)) == (0, 3, 0)
    assert exit_code("bye") == 1
