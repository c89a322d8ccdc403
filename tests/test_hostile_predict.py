"""Hostile CSV files for `joules-estimate predict` (issue 12, items 4, 6, 8): a bad cell or row is that row's
status/reason while the rest is predicted; unreadable files are one line naming the file; formula cells are
escaped; outputs are written atomically and never clobber the input."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile import check

from estimator.cli.main import app
from estimator.serve.api import load_predictor

ROOT = Path(__file__).resolve().parent.parent
HEADER = "model_id,task,gpu_model,num_gpus,max_num_seqs,avg_output_len,batch_size,inference_steps,image_height\n"
GOOD = "llama-8b,chat,h100,1,64,,,,\n"


@pytest.fixture(scope="module", autouse=True)
def _predictor_loaded_once():
    load_predictor()


def _predict(tmp_path: Path, body: str, *, header: str = HEADER):
    folder = tmp_path / "work"
    folder.mkdir(exist_ok=True)
    source = folder / "in.csv"
    source.write_text(header + GOOD + body + GOOD)
    target = folder / "out.csv"
    result = check(app, ["predict", "--input", str(source), "--output", str(target)], 0, r"predicted 2 of 3 rows",
                   folder, new_files=("out.csv",))
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [r["status"] for r in rows] == ["ok", "error", "ok"], rows
    return rows[1], result


BAD_ROWS = {
    "gpus-inf": ("llama-8b,chat,h100,inf,64,,,,", r"num_gpus.*not a finite"),
    "gpus-nan": ("llama-8b,chat,h100,nan,64,,,,", r"num_gpus.*not a finite"),
    "gpus-fraction": ("llama-8b,chat,h100,2.5,64,,,,", r"num_gpus.*whole number"),
    "gpus-bool": ("llama-8b,chat,h100,true,64,,,,", r"num_gpus.*not a number"),
    "gpus-negative": ("llama-8b,chat,h100,-1,64,,,,", r"num_gpus=-1 is outside"),
    "gpus-65": ("llama-8b,chat,h100,65,64,,,,", r"num_gpus=65 is outside"),
    "batch-1e12": ("llama-8b,chat,h100,1,1e12,,,,", r"max_num_seqs=1e\+12 is outside"),
    "batch-fraction": ("llama-8b,chat,h100,1,64.5,,,,", r"max_num_seqs.*whole number"),
    "batch-word": ("llama-8b,chat,h100,1,lots,,,,", r"max_num_seqs.*not a number"),
    "tokens-1e308": ("llama-8b,chat,h100,1,64,1e308,,,", r"avg_output_len=1e\+308 is outside"),
    "tokens-300-digits": ("llama-8b,chat,h100,1,64," + "9" * 300 + ",,,", r"avg_output_len=1e\+300 is outside"),
    "tokens-inf": ("llama-8b,chat,h100,1,64,-inf,,,", r"avg_output_len.*not a finite"),
    "tokens-zero": ("llama-8b,chat,h100,1,64,0,,,", r"avg_output_len=0 is outside"),
    "steps-1e9": ("flux-dev,text-to-image,h100,1,,,1,1000000000,", r"inference_steps.*outside"),
    "pixels-1e8": ("flux-dev,text-to-image,h100,1,,,1,28,100000000", r"image_height.*outside 64-8192"),
    "diffusion-batch-0": ("flux-dev,text-to-image,h100,1,,,0,,", r"batch_size=0 is outside"),
    "extra-field": ("llama-8b,chat,h100,1,64,,,,,surplus", r"has 10 fields but the header has 9"),
    "two-extra-fields": ("llama-8b,chat,h100,1,64,,,,,a,b", r"has 11 fields"),
    "unknown-model": ("no-such-model,chat,h100,1,64,,,,", r"unknown model"),
    "unknown-gpu": ("llama-8b,chat,z900,1,64,,,,", r"unknown gpu"),
    "ambiguous-task": ("qwen3-vl-8b,image,h100,1,64,,,,", r"ambiguous"),
    "ambiguous-gpu": ("llama-8b,chat,h100-80gb,1,64,,,,", r"ambiguous"),
    "tp3-64-heads": ("llama-70b,chat,b200,3,64,,,,", r"does not divide"),
    "missing-gpu": ("llama-8b,chat,,1,64,,,,", r"missing gpu_model"),
    "nul-in-name": ("llama-8b,ch\x00at,h100,1,64,,,,", r"unknown task"),
    "does-not-fit": ("llama-405b,chat,l4,1,64,,,,", r"does not fit"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_is_that_rows_reason(tmp_path, case):
    """One bad row: its status is error with a reason naming the problem; the rows around it are predicted."""
    body, pattern = BAD_ROWS[case]
    row, _ = _predict(tmp_path, body + "\n")
    import re

    assert re.search(pattern, row["reason"], re.IGNORECASE), row["reason"]
    assert len(row["reason"]) < 400


@pytest.mark.parametrize("cell", ["=cmd|' /C calc'!A0", "@SUM(1+1)", "+1+cmd", "-2+3+cmd|x", "\t=1"])
def test_formula_cells_are_escaped(tmp_path, cell):
    """A cell a spreadsheet would run as a formula comes back prefixed with ' (input and reason columns)."""
    quoted = '"' + cell.replace('"', '""') + '"'
    row, _ = _predict(tmp_path, f"{quoted},chat,h100,1,64,,,,\n")
    assert row["model_id"] == "'" + cell
    assert not row["reason"].startswith(("=", "+", "-", "@"))


def test_negative_numbers_are_not_escaped(tmp_path):
    """A plain signed number is data, not a formula: written back unchanged."""
    row, _ = _predict(tmp_path, "llama-8b,chat,h100,-1,64,,,,\n")
    assert row["num_gpus"] == "-1"


UNREADABLE = {
    "empty": (b"", r"empty CSV"),
    "missing-columns": (b"model_id,task\nllama-8b,chat\n", r"missing required column.*gpu_model.*num_gpus"),
    "duplicate-columns": (b"model_id,task,gpu_model,num_gpus,num_gpus\nllama-8b,chat,h100,1,2\n",
                          r"num_gpus appear more than once"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" + bytes(range(256)), r"in\.csv.*not UTF-8"),
    "latin-1": (b"model_id,task,gpu_model,num_gpus\nllama-8b,chat,h100,1\ncaf\xe9,chat,h100,1\n",
                r"in\.csv.*not UTF-8"),
    "unclosed-quote": (b'model_id,task,gpu_model,num_gpus\n"llama-8b,chat,h100,1\n', r"malformed CSV"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_files(tmp_path, case):
    """A file that is not a configurations CSV: exit 2, one line naming the file and the problem, no output."""
    content, pattern = UNREADABLE[case]
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "in.csv").write_bytes(content)
    check(app, ["predict", "--input", str(folder / "in.csv"), "--output", str(folder / "out.csv")], 2, pattern,
          folder)


@pytest.mark.parametrize("kind", ["fifo", "directory", "missing"])
def test_non_regular_inputs(tmp_path, kind):
    """A FIFO (would hang), a directory or a missing path as --input: refused at once."""
    path = tmp_path / "in.csv"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    pattern = {"fifo": "not a regular file", "directory": "is a directory", "missing": "no such file"}[kind]
    check(app, ["predict", "--input", str(path)], 2, pattern, tmp_path)


@pytest.mark.parametrize("kind", ["directory", "same-as-input", "missing-folder", "fifo"])
def test_bad_outputs_clobber_nothing(tmp_path, kind):
    """--output that is a directory, the input itself, in a missing folder or a FIFO: refused, input intact."""
    source = tmp_path / "in.csv"
    source.write_text(HEADER + GOOD)
    target = {"directory": tmp_path, "same-as-input": source, "missing-folder": tmp_path / "nope" / "out.csv",
              "fifo": tmp_path / "out.csv"}[kind]
    if kind == "fifo":
        os.mkfifo(target)
    pattern = {"directory": "directory", "same-as-input": "is the input", "missing-folder": "nope",
               "fifo": "not a regular file"}[kind]
    check(app, ["predict", "--input", str(source), "--output", str(target)], 2, pattern, tmp_path)


def test_existing_output_replaced_whole(tmp_path):
    """An existing, longer --output is replaced by exactly the new predictions (no stale tail)."""
    (tmp_path / "in").mkdir()
    source = tmp_path / "in" / "in.csv"
    source.write_text(HEADER + GOOD)
    target = tmp_path / "out.csv"
    target.write_text("stale\n" * 1000)
    check(app, ["predict", "--input", str(source), "--output", str(target)], 0, r"predicted 1 of 1", tmp_path / "in")
    assert "stale" not in target.read_text() and len(target.read_text().splitlines()) == 2


def test_header_only_gives_header_only(tmp_path):
    """A header and no rows: a header-only output and 'predicted 0 of 0 rows', exit 0."""
    source = tmp_path / "in.csv"
    source.write_text(HEADER)
    check(app, ["predict", "--input", str(source), "--output", str(tmp_path / "out.csv")], 0, r"predicted 0 of 0",
          tmp_path, new_files=("out.csv",))


def test_bom_and_blank_lines_are_accepted(tmp_path):
    """A UTF-8 BOM and blank lines are normal in exported CSVs: accepted."""
    source = tmp_path / "in.csv"
    source.write_bytes(b"\xef\xbb\xbf" + (HEADER + "\n" + GOOD + "\n\n" + GOOD).encode())
    check(app, ["predict", "--input", str(source), "--output", str(tmp_path / "out.csv")], 0, r"predicted 2 of 2",
          tmp_path, new_files=("out.csv",))


def test_chunks_give_the_same_output_as_one_pass(tmp_path):
    """Streaming in chunks must not change any output row (chunk boundaries are invisible)."""
    from estimator.catalog.catalog import load_catalog
    from estimator.learn.prediction import predict_frame as raw_predict
    from estimator.serve.stream import predict_csv

    source = tmp_path / "in.csv"
    body = "".join(f"llama-8b,chat,h100,{1 + i % 2},{8 * (1 + i % 5)},,,,\n" for i in range(23))
    source.write_text(HEADER + body + "flux-dev,text-to-image,h100,1,,,2,,\nbad,chat,h100,1.5,8,,,,\n")
    bundle, catalog = load_predictor(), load_catalog()

    def predict(frame):
        return raw_predict(frame, bundle, catalog, {})

    outputs = []
    for rows in (5, 10_000):
        target = tmp_path / f"out{rows}.csv"
        predict_csv(source, target, predict=predict, catalog=catalog, chunk_rows=rows)
        outputs.append(target.read_text())
    assert outputs[0] == outputs[1]


def test_concurrent_writers_never_interleave(tmp_path):
    """Two real `predict` processes with different inputs and one --output: the file is one complete output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    inputs = []
    for n, model in enumerate(("llama-8b", "qwen3-8b")):
        path = tmp_path / f"in{n}.csv"
        path.write_text(HEADER + "".join(f"{model},chat,h100,1,{8 * (1 + i % 8)},,,,\n" for i in range(300)))
        inputs.append(path)
    target = tmp_path / "out.csv"
    procs = [subprocess.Popen([sys.executable, "-m", "estimator.cli", "predict", "--input", str(p), "--output",
                               str(target)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for p in inputs]
    for proc in procs:
        assert proc.wait(timeout=240) == 0, proc.stderr.read()
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == 300 and len({r["model_id"] for r in rows}) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_fifo_input_real_process_does_not_hang(tmp_path):
    """Through a real interpreter: a FIFO as --input returns at once with exit 2 (the old behaviour hung)."""
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)
    out = subprocess.run([sys.executable, "-m", "estimator.cli", "predict", "--input", str(fifo)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2 and "not a regular file" in out.stderr
