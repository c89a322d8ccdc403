"""``joules-estimate serve --calibration CAL.json``: the calibration the explorer applies to every API call.

The CAL.json is read once per server (re-fitted from its stored runs when it was fitted against another predictor,
as :func:`estimator.learn.calibration.load_calibration` does for the CLI) and passed as ``calibration=`` to
``estimate``, ``what_if``, ``explain_change`` and ``plan``; the page shows the CLI's line naming the levels it moved.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import estimator


@functools.cache
def calibration_kwargs(calibration: Path | None) -> dict[str, Any]:
    """``{"calibration": Calibration}`` for every API call, the CAL.json read once; ``{}`` without one.

    Raises:
        estimator.learn.calibration.CalibrationError: the file cannot be read as a calibration.
    """
    if calibration is None:
        return {}
    from estimator.learn.calibration import load_calibration

    return {"calibration": load_calibration(Path(calibration), estimator.load_predictor())}


def calibration_note(cal: dict[str, Any]) -> str | None:
    """The CLI's line for an applied calibration (how many runs, which levels moved), or None without one."""
    if not cal:
        return None
    from estimator.learn.calibration import describe

    return describe(cal["calibration"])
