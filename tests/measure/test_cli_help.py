"""`measure run` and `measure import` name their option values as the rest of the CLI does (``--out DIR``,
``--idle-s S``), not with typer's ``<path>``/``<str>``/``<float>`` labels (estimator/cli/options.py sets metavars)."""

import re

import pytest
from typer.testing import CliRunner

from estimator.cli.main import app


@pytest.mark.parametrize("command", ["run", "import"])
def test_measure_options_have_plain_labels(command):
    """Every option line of the help shows a plain metavar (or none, for flags)."""
    result = CliRunner().invoke(app, ["measure", command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    options = [line for line in result.stdout.splitlines() if re.match(r"^\s+--", line)]
    assert len(options) >= 2
    assert not [line for line in options if re.search(r"<(path|str|float|int)>", line)]
