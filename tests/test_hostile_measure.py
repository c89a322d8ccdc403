"""Hostile inputs to `measure run` (issue 12, item 3): every malformed spec, unusable --out, missing GPU or
package ends in one `error:` line with the documented exit code (2 bad input, 3 impossible here), names the
problem, writes no records and leaves the spec untouched; a traceback only with --debug."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from measure.cli import app

ROOT = Path(__file__).resolve().parents[1]
GOOD = """name = "t"
batch_sizes = [8]
[model]
model_id = "meta-llama/Llama-3.1-8B-Instruct"
"""
CPU = GOOD + '[torch]\ndevice = "cpu"\n'
TINY = 'name = "t"\nbatch_sizes = [8]\n[model]\nmodel_id = "x"\n[model.config]\nhidden_size = 64\n' \
       'num_hidden_layers = 2\nnum_attention_heads = 4\nnum_key_value_heads = {kv}\nintermediate_size = 128\n' \
       'vocab_size = 100\n'

SPECS = {
    "empty": ("", 2, "empty spec"),
    "whitespace": ("\n\n  \n", 2, "empty spec"),
    "garbage": ("this is not = = toml [[", 2, "not valid TOML"),
    "json": ('{"name": "t"}', 2, "not valid TOML"),
    "unknown-top-key": (GOOD + 'colour = "red"\n', 2, "colour"),
    "unknown-nested-key": (GOOD + "[harness]\nwarmup_seconds = 3\n", 2, "warmup_seconds"),
    "misspelt-section": (GOOD + "[workloads]\nseed = 1\n", 2, "workloads"),
    "negative-batch": (GOOD.replace("[8]", "[-8]"), 2, "batch"),
    "zero-batch": (GOOD.replace("[8]", "[0]"), 2, "batch"),
    "empty-batches": (GOOD.replace("[8]", "[]"), 2, "batch_sizes"),
    "string-batch": (GOOD.replace("[8]", '["eight"]'), 2, "batch_sizes"),
    "float-batch": (GOOD.replace("[8]", "[8.5]"), 2, "batch_sizes"),
    "no-batches": (GOOD.replace("batch_sizes = [8]\n", ""), 2, "batch_sizes"),
    "no-model": ('name = "t"\nbatch_sizes = [8]\n', 2, "model"),
    "no-name": (GOOD.replace('name = "t"\n', ""), 2, "name"),
    "bad-name": (GOOD.replace('name = "t"', 'name = "../../etc"'), 2, "name"),
    "unknown-model": (GOOD.replace("meta-llama/Llama-3.1-8B-Instruct", "acme/nonexistent-7b"), 2,
                      "unknown model"),
    "diffusion-on-torch": (GOOD.replace("meta-llama/Llama-3.1-8B-Instruct", "black-forest-labs/FLUX.1-dev"), 2,
                           "not an LLM"),
    "tp3-on-2-gpus": (GOOD + "tensor_parallel = 3\ngpu_indices = [0, 1]\n", 2, "tensor_parallel"),
    "unknown-engine": (GOOD.replace('name = "t"', 'name = "t"\nengine = "tensorrt"'), 2, "engine"),
    "negative-gpu-index": (GOOD.replace('name = "t"', 'name = "t"\ngpu_indices = []'), 2, "gpu_indices"),
    "heads-not-multiple": (TINY.format(kv=3), 2, "num_key_value_heads"),
    "negative-layers": (TINY.format(kv=2).replace("num_hidden_layers = 2", "num_hidden_layers = -2"), 2,
                        "num_hidden_layers"),
    "fraction-over-1": (GOOD + "[harness]\nmin_batch_fraction = 1.5\n", 2, "min_batch_fraction"),
    "negative-warmup": (GOOD + "[harness]\nwarmup_s = -1\n", 2, "warmup_s"),
    "nan-warmup": (GOOD + "[harness]\nwarmup_s = nan\n", 2, "warmup_s"),
    "bad-meter": (GOOD + '[harness]\nmeter = "rapl"\n', 2, "meter"),
    "bad-weights": (GOOD.replace("[model]\n", '[model]\nweights = "trained"\n'), 2, "weights"),
    "zero-output-len": (GOOD + "[workload]\nforced_output_len = 0\n", 2, "forced_output_len"),
    "gpu-util-over-100": (GOOD + "[vllm]\ngpu_memory_utilization = 2\n", 2, "gpu_memory_utilization"),
}


def _invoke(*args: str):
    return CliRunner().invoke(app, ["run", *args])


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert "Traceback" not in output
    return lines[0]


@pytest.mark.parametrize("case", sorted(SPECS))
def test_malformed_spec_is_one_error_line(tmp_path, case):
    """Each malformed spec: exit 2, one line naming the file and the problem; nothing written, spec untouched."""
    text, code, words = SPECS[case]
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    out = tmp_path / "out"
    result = _invoke(str(spec), "--out", str(out))
    line = _one_error_line(result.output)
    assert result.exit_code == code, line
    assert words.lower() in line.lower() and "spec.toml" in line
    assert not out.exists() and spec.read_text() == text


def test_spec_that_is_a_directory(tmp_path):
    """A directory as SPEC: exit 2, 'is a directory'."""
    result = _invoke(str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "is a directory" in _one_error_line(result.output)


def test_missing_spec(tmp_path):
    """A missing SPEC: exit 2, 'no such file'."""
    result = _invoke(str(tmp_path / "nope.toml"))
    assert result.exit_code == 2 and "no such file" in _one_error_line(result.output)


def test_binary_spec(tmp_path):
    """Binary garbage as SPEC: the decode error names the file."""
    spec = tmp_path / "blob.toml"
    spec.write_bytes(bytes(range(256)) * 4)
    result = _invoke(str(spec))
    line = _one_error_line(result.output)
    assert result.exit_code == 2 and "blob.toml" in line and "not UTF-8" in line


def test_fifo_spec_does_not_hang(tmp_path):
    """A FIFO as SPEC is refused at once (reading it would block forever)."""
    fifo = tmp_path / "spec.toml"
    os.mkfifo(fifo)
    result = _invoke(str(fifo))
    assert result.exit_code == 2 and "not a regular file" in _one_error_line(result.output)


def test_no_gpu_is_configuration_impossible(tmp_path):
    """A valid spec on a machine without a CUDA GPU: exit 3, says no GPU is visible, writes nothing."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    spec = tmp_path / "spec.toml"
    spec.write_text(GOOD)
    result = _invoke(str(spec), "--out", str(tmp_path / "out"))
    assert result.exit_code == 3 and "no CUDA GPU" in _one_error_line(result.output)
    assert not (tmp_path / "out").exists()


def test_missing_torch_names_the_extra(tmp_path, monkeypatch):
    """Without torch: one line naming the measure extra and its install command (exit 2)."""
    spec = tmp_path / "spec.toml"
    spec.write_text(GOOD)
    monkeypatch.setitem(sys.modules, "torch", None)
    result = _invoke(str(spec))
    line = _one_error_line(result.output)
    assert result.exit_code == 2 and "pip install -e '.[measure]'" in line and "torch" in line


def test_missing_vllm_names_the_install(tmp_path):
    """The vllm backend without vllm installed: one line with the install command."""
    spec = tmp_path / "spec.toml"
    spec.write_text(GOOD.replace('name = "t"', 'name = "t"\nengine = "vllm"'))
    result = _invoke(str(spec))
    assert result.exit_code == 2 and "pip install vllm" in _one_error_line(result.output)


@pytest.mark.parametrize("kind", ["read-only", "is-a-file"])
def test_unwritable_out(tmp_path, kind):
    """--out read-only or an existing file: exit 2 naming --out, before any measurement."""
    spec = tmp_path / "spec.toml"
    spec.write_text(CPU)
    out = tmp_path / "out"
    if kind == "read-only":
        if os.geteuid() == 0:
            out = Path("/proc/joules-out")  # root ignores permission bits; /proc refuses new entries
        else:
            out.mkdir()
            out.chmod(0o500)
    else:
        out.write_text("keep me")
    result = _invoke(str(spec), "--out", str(out))
    assert result.exit_code == 2 and "--out" in _one_error_line(result.output)
    if kind == "is-a-file":
        assert out.read_text() == "keep me"


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_bad_idle_seconds(tmp_path, value):
    """--idle-s must be finite and >= 0."""
    spec = tmp_path / "spec.toml"
    spec.write_text(CPU)
    result = _invoke(str(spec), "--idle-s", value, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "--idle-s" in _one_error_line(result.output)


def test_debug_shows_the_traceback(tmp_path):
    """--debug lets the exception through (the traceback a developer needs)."""
    spec = tmp_path / "spec.toml"
    spec.write_text("")
    result = _invoke(str(spec), "--debug")
    assert result.exit_code != 0 and result.exception is not None and not isinstance(result.exception, SystemExit)


def test_real_process_prints_one_line_and_exit_code(tmp_path):
    """Through a real interpreter (the console entry path): one stderr line, exit 2, no traceback."""
    spec = tmp_path / "spec.toml"
    spec.write_text("garbage [[")
    out = subprocess.run([sys.executable, "-m", "estimator.cli", "measure", "run", str(spec)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr
