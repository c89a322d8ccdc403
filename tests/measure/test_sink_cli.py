"""Records to JSONL with provenance, the sweep driver, and the CLI's import command."""

from __future__ import annotations

import json
import subprocess
import sys

from measure_fakes import FakeClock, FakeMeter, FakeNvml, FakeStaticEngine, make_spec
from typer.testing import CliRunner

from measure.cli import app
from measure.meter import NvmlReader, PowerSampler
from measure.sink import read_records
from measure.sweep import run_sweep


def _sweep(tmp_path, clock: FakeClock, batch_override=None):
    spec = make_spec(batch_sizes=[8, 16], harness={"min_steady_state_s": 1.0, "min_gpu_utilization_pct": 0})
    reader = NvmlReader(FakeNvml(clock, 400.0))
    return run_sweep(
        spec,
        tmp_path / "run",
        engine=FakeStaticEngine(clock, batch_override=batch_override),
        reader=reader,
        meter=FakeMeter(clock, 400.0),
        sampler=PowerSampler(reader, [0], clock=clock),
        idle_s=0.0,
    )


def test_sweep_writes_validated_records_with_provenance(tmp_path, monkeypatch):
    """Every run lands in records.jsonl, re-validates, and names GPU, driver, power limit, sha and spec."""
    monkeypatch.setenv("JOULES_GIT_SHA", "deadbeef")
    result = _sweep(tmp_path, FakeClock())
    records = read_records(tmp_path / "run" / "records.jsonl")
    assert [r.max_num_seqs for r in records] == [8, 16] == [r.max_num_seqs for r in result.records]
    p = records[0].provenance
    assert (p.gpu_name, p.driver_version, p.power_limit_watts, p.git_sha) == (
        "NVIDIA H100 80GB HBM3",
        "580.159.04",
        700.0,
        "deadbeef",
    )
    assert (
        p.spec_hash
        == make_spec(
            batch_sizes=[8, 16], harness={"min_steady_state_s": 1.0, "min_gpu_utilization_pct": 0}
        ).spec_hash()
    )
    info = json.loads((tmp_path / "run" / "sweep.json").read_text())
    assert info["gpu_model"] == "NVIDIA H100 80GB HBM3"


def test_import_copies_only_stable_records(tmp_path):
    """`measure import` is the gate into datasets/local/: unstable runs stay out."""
    clock = FakeClock()
    _sweep(tmp_path, clock)
    lines = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    bad = json.loads(lines[1])
    bad.update(is_stable=False, unstable_reason="low batch utilization: scripted")
    (tmp_path / "run" / "records.jsonl").write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    result = CliRunner().invoke(
        app, ["import", str(tmp_path / "run"), "--name", "h100-test", "--dest", str(tmp_path / "local")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["stable"] == 1
    written = read_records(tmp_path / "local" / "h100-test.jsonl")
    assert [r.max_num_seqs for r in written] == [8]


def test_import_rejects_invalid_records(tmp_path):
    """A record breaking the energy identities must stop the import, naming the line."""
    _sweep(tmp_path, FakeClock())
    path = tmp_path / "run" / "records.jsonl"
    rec = json.loads(path.read_text().splitlines()[0])
    rec["avg_power_watts"] *= 2
    path.write_text(json.dumps(rec) + "\n")
    result = CliRunner().invoke(app, ["import", str(tmp_path / "run"), "--dest", str(tmp_path / "local")])
    flat = "".join(result.output.split())  # rich wraps long paths
    assert result.exit_code == 2 and "records.jsonl:1:invalidrunrecord" in flat


def test_measure_imports_without_torch_vllm_zeus_or_pynvml():
    """CI has none of the heavy packages: every measure module must import with them blocked."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'vllm', 'zeus', 'pynvml'}:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import measure.schema, measure.meter, measure.workloads, measure.harness, measure.sink\n"
        "import measure.sweep, measure.cli, measure.backends.torch_backend, measure.backends.vllm_backend\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
