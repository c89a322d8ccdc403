"""Shared set-up for the measure tests: GPU tests run only with JOULES_RUN_GPU=1."""

from __future__ import annotations

import pytest
from measure_fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
