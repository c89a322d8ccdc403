"""Sweeps across hosts on Ray: placement by GPU count, retry elsewhere, resume after a killed driver, and the same
records as a sequential sweep. Two fake hosts (Ray nodes with fake GPU resources: 1 GPU labelled A100, 2 GPUs
labelled H100) run fake engines and meters; Ray itself is real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from measure_fakes import FakeClock, FakeMeter, FakeNvml, FakeStaticEngine, make_spec
from ray_fakes import FakeFactory
from typer.testing import CliRunner

from measure.cli import app
from measure.config_key import config_key
from measure.meter import NvmlReader, PowerSampler
from measure.ray_sweep import RayUnavailable, import_ray, recorded_keys, run_ray_sweep, split_arguments
from measure.sink import read_records
from measure.sweep import run_sweep

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EASY = {"min_steady_state_s": 1.0, "min_gpu_utilization_pct": 0}


def _spec(name: str, batch_sizes: list[int], **overrides):
    return make_spec(name=name, batch_sizes=batch_sizes, harness=EASY, **overrides)


@pytest.fixture(scope="module")
def cluster():
    """One Ray cluster for the module (starting Ray is the slow part): host A with 1 GPU, host B with 2."""
    try:
        ray = import_ray()
    except RayUnavailable as err:
        pytest.skip(str(err))
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "JOULES_GIT_SHA")}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), *filter(None, [saved["PYTHONPATH"]])])
    os.environ["JOULES_GIT_SHA"] = "c0ffee"
    head = {"num_cpus": 1, "num_gpus": 1, "resources": {"accelerator_type:A100": 1}, "include_dashboard": False}
    c = Cluster(initialize_head=True, head_node_args=head)
    node_b = c.add_node(num_cpus=2, num_gpus=2, resources={"accelerator_type:H100": 1})
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    c.wait_for_nodes()
    yield SimpleNamespace(address=c.address, a=c.head_node.node_id, b=node_b.node_id)
    ray.shutdown()
    c.shutdown()
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_config_key_ignores_the_sweep_around_a_configuration():
    """Resume must match a configuration even after the sweep grew or was renamed, and only that configuration."""
    base = _spec("a", [8, 16])
    assert config_key(base, 8) == config_key(_spec("renamed", [4, 8, 32]), 8)
    assert config_key(base, 8) != config_key(base, 16)
    assert config_key(base, 8) != config_key(_spec("a", [8], workload={"seed": 4}), 8)
    assert config_key(base, 8) != config_key(_spec("a", [8], engine="vllm", gpu_indices=[0, 1], tensor_parallel=2), 8)


def test_resume_reads_sequential_records_and_cuts_a_half_written_line(tmp_path):
    """A driver killed inside a write leaves half a line: resume must drop it (it was never a record) rather than
    fail or glue the next record onto it; records without a key (a sequential run's) are matched by spec hash."""
    spec = _spec("seq", [8, 16])
    clock = FakeClock()
    reader = NvmlReader(FakeNvml(clock, 400.0))
    run_sweep(spec, tmp_path, engine=FakeStaticEngine(clock), reader=reader, meter=FakeMeter(clock, 400.0),
              sampler=PowerSampler(reader, [0], clock=clock), idle_s=0)
    path = tmp_path / "records.jsonl"
    path.write_bytes(path.read_bytes()[:-40])
    assert recorded_keys(tmp_path, [spec]) == {config_key(spec, 8)}
    assert path.read_text().endswith("\n") and len(read_records(path)) == 1


def test_without_ray_the_cli_says_how_to_install_it(tmp_path, monkeypatch):
    """Ray stays optional: the modules import without it, and `--ray` then answers with one line naming the install
    command (exit 2); ADDRESS is told apart from the spec files."""
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\nbatch_sizes = [8]\n[model]\nmodel_id = "meta-llama/Llama-3.1-8B-Instruct"\n')
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "o"), "--ray"])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "pip install 'joules-estimate[cluster]'" in result.output
    code = "import sys; sys.modules['ray'] = None; import measure.cli, measure.ray_sweep, measure.ray_worker"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True).returncode == 0
    assert split_arguments([str(spec), "ray://head:10001"]) == ([spec], "ray://head:10001")
    assert split_arguments([str(spec), "auto"]) == ([spec], "auto")
    assert split_arguments([str(spec), "b.toml"]) == ([spec, Path("b.toml")], None)


def test_placement_by_gpu_count_and_idle_power_once_per_gpu(cluster, tmp_path):
    """Two-GPU configurations land on the host with two GPUs, one needing four is failed with its reason (not
    left hanging), --gpu-type steers to that label, and idle power is measured once per GPU and reused."""
    specs = [_spec("tp1", [8, 16, 24, 32]), _spec("tp2", [8], engine="vllm", gpu_indices=[0, 1], tensor_parallel=2),
             _spec("tp4", [8], engine="vllm", gpu_indices=[0, 1, 2, 3], tensor_parallel=4)]
    result = run_ray_sweep(specs, tmp_path / "run", idle_s=1.0, factory=FakeFactory())
    ran = {o.key: o for outcomes in result.attempts.values() for o in outcomes}
    tp2 = ran[config_key(specs[1], 8)]
    assert tp2.node_id == cluster.b and sorted(tp2.gpu_indices) == [0, 1]
    assert "no node has 4 GPUs (the largest has 2)" in result.failed["tp4-bs8"]
    records = read_records(tmp_path / "run" / "records.jsonl")
    assert sorted((r.num_gpus, r.max_num_seqs) for r in records) == [(1, 8), (1, 16), (1, 24), (1, 32), (2, 8)]
    assert {r.idle_power_watts for r in records if r.num_gpus == 1} == {400.0}
    assert [r.idle_power_watts for r in records if r.num_gpus == 2] == [800.0]
    info = json.loads((tmp_path / "run" / "sweep.json").read_text())
    used = {f"{o.node_id}/{i}" for o in ran.values() if o.record for i in o.gpu_indices}
    assert set(info["idle_power_watts_by_node_gpu"]) == used
    assert info["idle_measurements"] <= len(used) < len(records)
    steered = run_ray_sweep([_spec("typed", [8, 16])], tmp_path / "typed", idle_s=0, gpu_type="A100",
                            factory=FakeFactory())
    assert {o.node_id for outcomes in steered.attempts.values() for o in outcomes} == {cluster.a}


def test_failed_task_retried_on_another_host_then_recorded_failed(cluster, tmp_path):
    """A configuration whose attempt fails is retried on the other host; one that always fails is written to
    failed.jsonl with its reason after the bounded retries, and never as a record."""
    spec = _spec("faults", [8, 16, 32])
    result = run_ray_sweep([spec], tmp_path / "run", idle_s=0, retries=2,
                           factory=FakeFactory(fail_first=(16,), fail_always=(32,)))
    flaky = result.attempts[config_key(spec, 16)]
    assert [bool(o.error) for o in flaky] == [True, False] and flaky[0].node_id != flaky[1].node_id
    assert sorted(r.max_num_seqs for r in read_records(tmp_path / "run" / "records.jsonl")) == [8, 16]
    (failed,) = [json.loads(line) for line in (tmp_path / "run" / "failed.jsonl").read_text().splitlines()]
    assert failed["key"] == "faults-bs32" and failed["attempts"] == 3 and "scripted fault" in failed["reason"]


def test_records_identical_to_a_sequential_sweep(cluster, tmp_path):
    """Running on Ray must not change a measurement: same records as run_sweep, apart from the start time, the
    configuration key, and the wall-clock cost of the meter calls (real time, different in any two runs)."""
    spec = _spec("same", [8, 16])
    clock = FakeClock()
    reader = NvmlReader(FakeNvml(clock, 400.0))
    sequential = run_sweep(spec, tmp_path / "seq", engine=FakeStaticEngine(clock), reader=reader,
                           meter=FakeMeter(clock, 400.0), sampler=PowerSampler(reader, [0], clock=clock), idle_s=0)
    on_ray = run_ray_sweep([spec], tmp_path / "ray", idle_s=0, factory=FakeFactory())

    def comparable(record):
        row = record.model_dump(mode="json")
        row["provenance"].pop("started_at")
        row["provenance"].pop("config_key")
        row.pop("harness_overhead_fraction")
        return json.dumps(row, sort_keys=True)

    by_batch = {r.max_num_seqs: comparable(r) for r in on_ray.records}
    assert [by_batch[r.max_num_seqs] for r in sequential.records] == [comparable(r) for r in sequential.records]
    assert {r.provenance.config_key for r in on_ray.records} == {config_key(spec, 8), config_key(spec, 16)}


def test_resume_after_the_driver_is_killed(cluster, tmp_path, monkeypatch):
    """Kill the driver (a real process, SIGKILL) mid-sweep: what it recorded stays, --resume measures only the
    rest, an out dir with records is refused without --resume, and no configuration is recorded twice."""
    spec_path, out = tmp_path / "sweep.toml", tmp_path / "run"
    batches = [8, 16, 24, 32, 40, 48]
    spec_path.write_text(f'name = "resume"\nbatch_sizes = {batches}\n[model]\nmodel_id = '
                         f'"meta-llama/Llama-3.1-8B-Instruct"\n[workload]\nforced_output_len = 50\nseed = 3\n'
                         f'[harness]\nwarmup_s = 0.5\nmin_steady_state_s = 1.0\nmin_gpu_utilization_pct = 0\n')
    driver = ("import sys, ray_fakes\nfrom measure import ray_sweep\n"
              "ray_sweep.BACKEND_FACTORY = ray_fakes.FakeFactory(delay_s=1.0)\n"
              "from measure.cli import app\napp(sys.argv[1:], prog_name='measure')\n")
    cmd = [sys.executable, "-c", driver, "run", str(spec_path), "--out", str(out), "--idle-s", "0", "--json",
           "--ray", cluster.address]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records = out / "records.jsonl"
    deadline = time.monotonic() + 90
    while not (records.exists() and records.read_text().count("\n")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    before = records.read_text()
    assert 1 <= before.count("\n") < len(batches), "the driver must be killed mid-sweep"
    result = CliRunner().invoke(app, ["run", str(spec_path), "--out", str(out), "--idle-s", "0", "--ray",
                                      cluster.address])
    assert result.exit_code == 2 and "--resume" in result.output
    monkeypatch.setattr("measure.ray_sweep.BACKEND_FACTORY", FakeFactory())
    result = CliRunner().invoke(app, ["run", str(spec_path), "--out", str(out), "--idle-s", "0", "--resume",
                                      "--ray", cluster.address])
    assert result.exit_code == 0, result.output
    after = read_records(records)
    assert records.read_text().startswith(before.rsplit("\n", 1)[0])
    assert sorted(r.max_num_seqs for r in after) == batches
    assert len({r.provenance.config_key for r in after}) == len(batches)


def test_configuration_no_live_node_can_host_is_failed_not_awaited(cluster, tmp_path, monkeypatch):
    """When the only host with enough GPUs dies, its pending configuration must be cancelled and recorded as failed;
    Ray alone would keep it waiting for a node that never comes back."""
    import measure.ray_sweep as ray_sweep
    from measure.ray_worker import Job

    spec = _spec("orphan", [8], engine="vllm", gpu_indices=[0, 1], tensor_parallel=2)
    result = ray_sweep.RaySweepResult()
    driver = ray_sweep.SweepDriver(import_ray(), tmp_path / "run", FakeFactory(delay_s=5.0), 2, None, set(), result)
    driver.submit(Job(spec, 8, config_key(spec, 8), idle_s=0))
    assert len(driver.pending) == 1
    host_a_only = {k: v for k, v in ray_sweep.cluster_nodes().items() if k == cluster.a}
    monkeypatch.setattr(ray_sweep, "cluster_nodes", lambda: host_a_only)
    driver.drop_infeasible()
    assert not driver.pending and "no live node has 2 GPUs" in result.failed["orphan-bs8"]
    assert json.loads((tmp_path / "run" / "failed.jsonl").read_text())["key"] == "orphan-bs8"
