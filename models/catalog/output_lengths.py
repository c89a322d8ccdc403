"""Regenerate models/catalog/output_lengths.toml: mean output tokens per response by task, model and publisher.

Reads every run in ``datasets/`` (ML.ENERGY v3 and the project's own measurements) through the project's loader and
writes the profile that :mod:`estimator.catalog.output_lengths` documents (a model's own mean, its publisher's,
the task's; every level averages models, not runs). Rerun it after new measurement sweeps, before
``joules-estimate train``.

Usage: PYTHONPATH=. python models/catalog/output_lengths.py   (from the repository root)
"""

from __future__ import annotations

from estimator.catalog.output_lengths import OUTPUT_LENGTHS_FILE, profile_from_runs
from estimator.learn.data import load_runs
from estimator.learn.family import family_column
from estimator.paths import catalog_dir
from estimator.safe_io import write_text_atomic


def main() -> None:
    runs = load_runs()
    llm = runs[family_column(runs["task_family"]).eq("llm")]
    profile = profile_from_runs(llm)
    path = catalog_dir() / OUTPUT_LENGTHS_FILE
    write_text_atomic(path, profile.to_toml())
    models = sum(len(v) for v in profile.by_model.values())
    print(f"wrote {path}: {len(profile.by_task)} tasks, {models} (task, model) means")


if __name__ == "__main__":
    main()
