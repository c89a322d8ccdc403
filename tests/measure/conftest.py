"""Shared set-up for the measure tests: GPU tests run only with JOULES_RUN_GPU=1."""

from __future__ import annotations

import os

import pytest
from measure_fakes import FakeClock


def pytest_collection_modifyitems(config, items):
    if os.environ.get("JOULES_RUN_GPU") == "1":
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (set JOULES_RUN_GPU=1)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
