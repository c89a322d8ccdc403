"""The canonical run frame: row counts, identities that hold in the data, and errors on malformed files."""

import json
import shutil

import numpy as np
import pytest

from estimator.learn.data import TARGETS, RunDataError, load_runs
from estimator.paths import datasets_dir


def test_published_data_loads_1534_rows_with_complete_targets(runs):
    """The issue's definition of done: 1,534 rows, no NaN in the target columns of their family."""
    published = runs[runs["source"].eq("mlenergy-v3")]
    assert len(published) == 1534
    llm = published[~published["task_family"].eq("diffusion")]
    diffusion = published[published["task_family"].eq("diffusion")]
    assert not llm[list(TARGETS["llm"])].isna().any().any()
    assert not diffusion[list(TARGETS["diffusion"])].isna().any().any()
    assert set(published["task_family"]) == {"llm", "mllm", "diffusion"}
    assert set(published["engine"]) == {"vllm", "xdit"}


def test_identities_hold(runs):
    """Energy per token x throughput = power; x output length = energy per request; diffusion E = P x t / B."""
    llm = runs[~runs["task_family"].eq("diffusion")]
    np.testing.assert_allclose(llm.energy_per_token_joules * llm.output_throughput_tokens_per_sec,
                               llm.avg_power_watts, rtol=1e-6)
    np.testing.assert_allclose(llm.energy_per_token_joules * llm.avg_output_len, llm.energy_per_request_joules,
                               rtol=1e-6)
    diffusion = runs[runs["task_family"].eq("diffusion")]
    np.testing.assert_allclose(diffusion.avg_power_watts * diffusion.batch_latency_s / diffusion.batch_size,
                               diffusion.energy_per_item_joules, rtol=1e-6)


def test_repeated_configurations_are_kept(runs):
    """SOURCE.txt: three configuration keys appear twice (separate upstream runs); both are kept."""
    key = ["model_id", "task", "gpu_model", "num_gpus", "max_num_seqs"]
    llm = runs[~runs["task_family"].eq("diffusion") & runs["source"].eq("mlenergy-v3")]
    assert int(llm.duplicated(key).sum()) == 3


@pytest.fixture()
def dataset_copy(tmp_path):
    """A writable copy of datasets/ with only the small sourcegraph-fim task file."""
    root = tmp_path / "datasets"
    (root / "mlenergy-v3" / "tasks").mkdir(parents=True)
    (root / "local").mkdir()
    shutil.copy(datasets_dir() / "mlenergy-v3" / "index.json", root / "mlenergy-v3" / "index.json")
    source = datasets_dir() / "mlenergy-v3" / "tasks" / "sourcegraph-fim.json"
    shutil.copy(source, root / "mlenergy-v3" / "tasks" / "sourcegraph-fim.json")
    return root


def _mutate(root, change):
    path = root / "mlenergy-v3" / "tasks" / "sourcegraph-fim.json"
    payload = json.loads(path.read_text())
    change(payload["configurations"][0])
    path.write_text(json.dumps(payload))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda row: row.pop("avg_power_watts"), "lacks field"),
    (lambda row: row.update(num_gpus="two"), "should be int"),
    (lambda row: row.update(energy_per_token_joules=-1.0), "non-positive"),
    (lambda row: row.update(gpu_model="TPUv9"), "unknown gpu"),
    (lambda row: row.update(model_id="acme/NoSuchModel"), "unknown model"),
    (lambda row: row.update(avg_power_watts=row["avg_power_watts"] * 1.5), "avg_power_watts"),
])
def test_malformed_files_fail_naming_file_and_configuration(dataset_copy, catalog, change, message):
    """A malformed file must fail with a message naming the file and the configuration, never load silently."""
    path = _mutate(dataset_copy, change)
    with pytest.raises(RunDataError) as info:
        load_runs(dataset_copy, catalog=catalog)
    text = str(info.value)
    assert message in text and str(path) in text and "model_id=" in text


def test_local_jsonl_runs_are_included_with_their_engine(dataset_copy, catalog):
    """Runs measured by measure/ (datasets/local/*.jsonl) join the frame with engine and provenance kept apart."""
    row = {"model_id": "meta-llama/Llama-3.1-8B-Instruct", "task": "lm-arena-chat",
           "gpu_model": "NVIDIA H100 80GB HBM3", "num_gpus": 1, "max_num_seqs": 64, "weight_precision": "bfloat16",
           "avg_batch_size": 64.0, "avg_output_len": 512.0, "avg_power_watts": 600.0,
           "energy_per_token_joules": 0.1, "energy_per_request_joules": 51.2,
           "output_throughput_tokens_per_sec": 6000.0, "median_itl_ms": 10.0, "tensor_parallel": 1,
           "expert_parallel": 1, "data_parallel": 1, "engine": "torch-cudagraph", "engine_version": "2.11.0",
           "is_stable": True, "provenance": {"gpu_name": "NVIDIA H100 80GB HBM3"}}
    unstable = {**row, "is_stable": False, "unstable_reason": "steady state too short"}
    (dataset_copy / "local" / "sweep.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(unstable) + "\n")
    frame = load_runs(dataset_copy, catalog=catalog)
    local = frame[frame["source"].eq("local:sweep.jsonl")]
    assert len(local) == 1 and local.iloc[0]["engine"] == "torch-cudagraph"
    assert local.iloc[0]["gpu_model"] == "H100-SXM"
    assert len(load_runs(dataset_copy, catalog=catalog, include_unstable=True)) == len(frame) + 1
