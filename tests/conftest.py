"""Shared fixtures: the project's catalog, runs and trained predictor, loaded once per session."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    """GPU tests run only when asked for (JOULES_RUN_GPU=1); CI has no GPU."""
    if os.environ.get("JOULES_RUN_GPU") == "1":
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; set JOULES_RUN_GPU=1")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory):
    """Parsed boosters (estimator/learn/trees.py) are cached in a temporary folder, not the user's ~/.cache."""
    os.environ["JOULES_ESTIMATE_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def catalog():
    from estimator.catalog.catalog import load_catalog

    return load_catalog()


@pytest.fixture(scope="session")
def runs(catalog):
    from estimator.learn.data import load_runs

    return load_runs(catalog=catalog)


@pytest.fixture(scope="session")
def bundle():
    from estimator.serve.api import load_predictor

    return load_predictor()
