"""`datasets/validation` holds the project's own runs kept out of training: prospective checks and calibration demos.

Why: those runs are only honest checks while no training row comes from them. If `load_runs` (what `train` reads)
ever picked them up, or `load_validation_runs` skipped the checks `load_runs` applies to local records, a
"never seen" comparison in `benchmarks/calibration.md` would silently become an in-sample one.
"""

import json
import shutil

import pytest

from estimator.learn.data import RunDataError, load_runs, load_validation_runs
from estimator.paths import datasets_dir


def test_validation_runs_are_loaded_apart_and_never_trained_on():
    validation = load_validation_runs()
    assert len(validation) >= 6
    assert validation["source"].str.startswith("validation:").all()
    training = load_runs()
    configuration = ["model_id", "gpu_model", "num_gpus", "engine"]
    trained = set(training[configuration].itertuples(index=False, name=None))
    assert not set(validation[configuration].itertuples(index=False, name=None)) & trained
    assert not training["source"].str.startswith("validation:").any()


def test_validation_records_get_the_local_checks(tmp_path):
    root = tmp_path / "datasets"
    shutil.copytree(datasets_dir() / "mlenergy-v3", root / "mlenergy-v3")
    (root / "validation").mkdir(parents=True)
    record = json.loads((datasets_dir() / "validation" / "h200-mixtral-8x7b-moe.jsonl").read_text().splitlines()[0])
    record["energy_per_token_joules"] *= 2  # breaks energy = power / throughput
    (root / "validation" / "broken.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(RunDataError, match="broken.jsonl"):
        load_validation_runs(root)


def test_prospective_check_predicts_every_validation_run_with_consistent_energy():
    """benchmarks/prospective.py's table: one finite prediction per run, J/token = W / (tok/s) as the predictor's
    identity says (a broken column join would pair one run's measurement with another run's prediction)."""
    import numpy as np

    from benchmarks.prospective import compare

    runs = load_validation_runs()
    table = compare(runs)
    assert len(table) == len(runs)
    assert np.isfinite(table.filter(like="_predicted").to_numpy(float)).all()
    derived = table["avg_power_watts_predicted"] / table["output_throughput_tokens_per_sec_predicted"]
    assert np.allclose(derived, table["energy_per_token_joules_predicted"], rtol=1e-6)
    assert np.allclose(table["energy_per_token_joules_measured"], runs["energy_per_token_joules"].to_numpy(float))
