"""Regenerate models/catalog/output_lengths.toml: mean output tokens per response by task, model and publisher.

Reads every run in ``datasets/`` (ML.ENERGY v3 and the project's own measurements) through the project's loader and
writes the profile that :mod:`estimator.catalog.output_lengths` documents (a model's own mean, its publisher's,
the task's; every level averages models, not runs). Rerun it after new measurement sweeps, before
``joules-estimate train`` (``train --replace-default`` does it too).

Usage: PYTHONPATH=. python models/catalog/output_lengths.py   (from the repository root)
"""

from __future__ import annotations

from estimator.learn.data import load_runs
from estimator.learn.training import refresh_output_lengths
from estimator.paths import catalog_dir


def main() -> None:
    changed = refresh_output_lengths(load_runs(), write=True)
    print(f"{catalog_dir() / 'output_lengths.toml'}: {'rewritten' if changed else 'already current'}")


if __name__ == "__main__":
    main()
