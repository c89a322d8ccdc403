"""`joules-estimate` through typer's CliRunner: output structure, JSON schema, exit codes, README examples."""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from typer.testing import CliRunner

from estimator.cli.main import app
from estimator.schema import Estimate, Plan, WhatIf
from estimator.serve.api import load_predictor

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _predictor_loaded_once():
    load_predictor()  # cached per process: every command below reuses it


def _run(*args: str):
    return runner.invoke(app, list(args))


def test_main_command_prints_a_frontier_with_the_minimum_energy_row():
    """The headline command must work exactly as written in the issue, and mark the min-energy choice."""
    result = _run("--model", "llama-70b", "--task", "chat", "--gpu", "b200", "--max-itl-ms", "30")
    assert result.exit_code == 0, result.output
    assert "Time-energy frontier" in result.stdout and "energy/token" in result.stdout
    assert "<- min energy" in result.stdout and "min energy with ITL <= 30 ms" in result.stdout
    assert "Assumptions:" in result.stdout and "vLLM 0.11.1" in result.stdout


def test_json_output_parses_back_into_the_schema():
    """`--json` is the machine interface; it must validate against estimator.schema.Estimate."""
    result = _run("--model", "flux-dev", "--task", "text-to-image", "--gpu", "h100", "--steps", "28",
                  "--resolution", "1024x1024", "--batch", "4", "--json")
    assert result.exit_code == 0, result.output
    est = Estimate.model_validate_json(result.stdout)
    assert est.family == "diffusion" and est.frontier and est.min_energy is not None
    assert {p.configuration.batch_size for p in est.configurations} == {4}
    assert all(p.configuration.ulysses_degree == p.configuration.num_gpus for p in est.configurations)


def test_unknown_model_exits_2_with_a_close_match():
    """A typo must fail fast with exit 2 and suggest the intended name, without a traceback."""
    result = _run("--model", "llama-70", "--task", "chat", "--gpu", "b200")
    assert result.exit_code == 2
    assert "unknown model" in result.stderr and "llama-70b" in result.stderr
    assert "Traceback" not in result.output


def test_impossible_configuration_explains_the_arithmetic():
    """405B on one L4 cannot run; the message must show weights vs memory in GB, and exit 3 (impossible)."""
    result = _run("--model", "llama-405b", "--task", "chat", "--gpu", "l4", "--num-gpus", "1")
    assert result.exit_code == 3
    assert "does not fit" in result.stderr and re.search(r"\d+(\.\d+)? GB", result.stderr)


def test_non_positive_numbers_are_rejected_in_one_line():
    """Bad numbers are named; typer's range check or ours, never a traceback."""
    result = _run("--model", "llama-70b", "--task", "chat", "--gpu", "b200", "--num-gpus", "0")
    assert result.exit_code == 2 and "--num-gpus" in result.output and "Traceback" not in result.output
    result = _run("--model", "flux-dev", "--task", "t2i", "--gpu", "h100", "--resolution", "big")
    assert result.exit_code == 2 and "resolution" in result.stderr


def test_predict_csv_round_trip_with_a_bad_row(tmp_path):
    """Rows come back in order with metrics + p10/p90; a bad row gets a reason and does not abort the file."""
    source = tmp_path / "configs.csv"
    source.write_text("model_id,task,gpu_model,num_gpus,max_num_seqs,batch_size\n"
                      "llama-8b,chat,h100,1,64,\n"
                      "no-such-model,chat,h100,1,64,\n"
                      "flux-dev,text-to-image,h100,1,,2\n"
                      "llama-8b,chat,h100,-1,64,\n")
    target = tmp_path / "preds.csv"
    result = _run("predict", "--input", str(source), "--output", str(target))
    assert result.exit_code == 0, result.output
    out = pd.read_csv(target)
    assert out["model_id"].tolist() == ["llama-8b", "no-such-model", "flux-dev", "llama-8b"]
    assert out["status"].tolist() == ["ok", "error", "ok", "error"]
    assert "unknown model" in out.loc[1, "reason"] and "num_gpus=-1 is outside" in out.loc[3, "reason"]
    for column in ("energy_per_token_joules", "energy_per_token_joules_p10", "energy_per_token_joules_p90",
                   "median_itl_ms", "energy_per_image_joules", "batch_latency_s", "warnings"):
        assert column in out.columns
    assert out["energy_per_token_joules"].notna().tolist() == [True, False, False, False]
    assert out["energy_per_image_joules"].notna().tolist() == [False, False, True, False]
    assert "predicted 2 of 4 rows" in result.stderr


def test_predict_names_missing_columns_and_malformed_csv(tmp_path):
    """A file the tool cannot read is one clear line and exit 2, naming what is wrong."""
    missing = tmp_path / "missing.csv"
    missing.write_text("model_id,task\nllama-8b,chat\n")
    result = _run("predict", "--input", str(missing))
    assert result.exit_code == 2 and "gpu_model" in result.stderr and "num_gpus" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    broken = tmp_path / "broken.csv"
    broken.write_text('model_id,task,gpu_model,num_gpus\n"llama-8b,chat,h100,1\n')
    result = _run("predict", "--input", str(broken))
    assert result.exit_code == 2 and "malformed CSV" in result.stderr


def test_what_if_with_no_change_has_zero_deltas():
    """The what-if of nothing must report zero change in every metric (a predictor-independent invariant)."""
    result = _run("what-if", "--model", "llama-70b", "--task", "chat", "--gpu", "b200", "--num-gpus", "2",
                  "--json")
    assert result.exit_code == 0, result.output
    parsed = WhatIf.model_validate_json(result.stdout)
    assert all(d.absolute == 0 for d in parsed.deltas.values())


def test_what_if_table_shows_both_sides_and_deltas():
    """People read the table: both configurations and a signed percentage per metric."""
    result = _run("what-if", "--model", "llama-70b", "--task", "chat", "--gpu", "b200", "--num-gpus", "2",
                  "--set", "gpu=h100", "--set", "num_gpus=4")
    assert result.exit_code == 0, result.output
    assert "2 x B200" in result.stdout and "4 x H100-SXM" in result.stdout and "%" in result.stdout
    bad = _run("what-if", "--model", "llama-70b", "--task", "chat", "--gpu", "b200", "--set", "gpu")
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.stderr


def test_plan_returns_replicas_within_the_itl_limit():
    """A plan must serve the demand with >= 1 replica at an ITL under the limit."""
    result = _run("plan", "--model", "llama-70b", "--task", "chat", "--demand-rps", "30", "--max-itl-ms", "40",
                  "--json")
    assert result.exit_code == 0, result.output
    parsed = Plan.model_validate_json(result.stdout)
    assert parsed.chosen.replicas >= 1 and parsed.chosen.prediction.value("median_itl_ms") <= 40
    assert parsed.chosen.capacity_total >= parsed.demand
    assert _run("plan", "--model", "llama-70b", "--task", "chat").exit_code == 2  # neither demand nor budget


def test_catalog_list_and_show():
    """Users discover names here; JSON must parse and `show` must accept an alias."""
    result = _run("catalog", "list", "gpus", "--json")
    assert result.exit_code == 0 and "B200" in json.loads(result.stdout)
    result = _run("catalog", "show", "gpu", "b200")
    assert result.exit_code == 0 and "B200" in result.stdout and "sources" in result.stdout
    assert _run("catalog", "list", "gpux").exit_code == 2


def test_evaluate_prints_the_cards_split_metrics():
    """The accuracy summary names its splits (honest error: never an unnamed number)."""
    result = _run("evaluate", "--json", "--no-report")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "leave-one-model-out" in summary
    assert "median_ape_pct" in summary["leave-one-model-out"]["llm"]


def test_cli_import_is_light_and_help_teaches():
    """`--help` must stay fast: importing the CLI may not import pandas, LightGBM or matplotlib."""
    code = ("import sys, estimator.cli.main; "
            "print(sorted(m for m in ('pandas', 'lightgbm', 'matplotlib', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
    result = _run("--help")
    assert result.exit_code == 0 and "Examples" in result.stdout and "--max-itl-ms" in result.stdout


def _readme_usage() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("<!-- usage:start -->", 1)[1].split("<!-- usage:end -->", 1)[0]


def test_readme_examples_run(tmp_path, monkeypatch):
    """Every `joules-estimate ...` line in the README's usage section must run (exit 0, or 3 where it says so)."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    commands = [line.strip() for line in re.findall(r"```bash\n(.*?)```", _readme_usage(), flags=re.S)
                for line in line.splitlines() if line.strip().startswith("joules-estimate")]
    assert len(commands) >= 8
    for command in commands:
        args = shlex.split(command)[1:]
        result = runner.invoke(app, args)
        expected = 3 if "llama-405b" in command and "l4" in args else 0
        assert result.exit_code == expected, f"{command}\n{result.output}"
        assert "Traceback" not in result.output


def test_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python API example is copied by users as-is; it must run."""
    blocks = re.findall(r"```python\n(.*?)```", _readme_usage(), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    with redirect_stdout(io.StringIO()):
        exec(compile(blocks[0], "README.md", "exec"), {})  # noqa: S102 - our own README


def test_plot_and_explain_flags(tmp_path):
    """--plot must write a PNG; --explain must either attribute or say it cannot, never fail the estimate."""
    png = tmp_path / "frontier.png"
    result = _run("--model", "llama-8b", "--task", "chat", "--gpu", "h100", "--num-gpus", "1", "--plot", str(png),
                  "--explain")
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Time-energy frontier" in result.stdout


def test_model_config_describes_a_model_outside_the_catalog():
    """--model-config lets a user estimate an unlisted model; it must warn that it extrapolates."""
    config = ROOT / "tests" / "fixtures" / "hf_configs" / "mistralai__Mistral-7B-Instruct-v0.3.json"
    result = _run("--model", "my-mistral", "--model-config", str(config), "--task", "chat", "--gpu", "h100",
                  "--num-gpus", "1", "--json")
    assert result.exit_code == 0, result.output
    est = Estimate.model_validate_json(result.stdout)
    assert est.model_id == "my-mistral" and any("absent from training data" in w for w in est.warnings)


def test_measure_is_mounted_and_forwards_arguments():
    """`joules-estimate measure` hands its arguments to measure.cli (imported only when used)."""
    result = _run("measure", "--help")
    assert result.exit_code == 0 and "measure" in result.output.lower()


def test_train_reports_progress_and_the_split_summary(monkeypatch, tmp_path):
    """`train` is a thin wrapper: it must pass a progress callback, write to --output, replace the default
    predictor (and the default output lengths) only with --replace-default, and summarise."""
    from estimator.learn import training

    calls = []

    class _Bundle:
        card = SimpleNamespace(metrics={"leave-one-model-out": {
            "llm": {"energy_per_token_joules": {"median_ape_pct": 11.0, "p90_ape_pct": 42.0, "n": 7}},
            "diffusion": {"energy_per_item_joules": {"median_ape_pct": 12.0, "p90_ape_pct": 43.0, "n": 8}}}})

    def fake_train(*, output, progress, update_output_lengths):
        calls.append(output)
        updates.append(update_output_lengths)
        progress("fold 1")
        return _Bundle()

    updates = []

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.setattr(training, "default_output", lambda: tmp_path / "default")
    result = _run("train", "--output", str(tmp_path / "new"))
    assert result.exit_code == 0, result.output
    assert calls == [tmp_path / "new"]
    assert "leave-one-model-out" in result.stdout and "11.0" in result.stdout and "43.0" in result.stdout
    assert "default predictor is unchanged" in result.stdout
    assert _run("train", "--replace-default").exit_code == 0
    assert calls[-1] == tmp_path / "default"
    assert updates == [False, True]  # only replacing the default rewrites the default output lengths


def test_explain_command_json_is_exact_and_matches_the_prediction():
    """`joules-estimate explain` must attribute the same number `predict` gives, and its items must multiply
    from the baseline to that number exactly (the paper's layered diagnosis, not a loose story)."""
    import math

    from estimator.explain.model import Attribution
    from estimator.serve.api import predict_frame

    result = _run("explain", "--model", "qwen3-32b", "--task", "gpqa", "--gpu", "b200", "--num-gpus", "1",
                  "--max-num-seqs", "128", "--json")
    assert result.exit_code == 0, result.output
    attribution = Attribution.model_validate_json(result.stdout)
    assert attribution.status == "ok" and attribution.quantity == "energy_per_token_joules"
    total = sum(item.log_contribution for item in attribution.items)
    assert math.log(attribution.baseline) + total == pytest.approx(math.log(attribution.prediction), abs=1e-9)
    row = pd.DataFrame([{"model_id": "qwen3-32b", "task": "gpqa", "gpu_model": "b200", "num_gpus": 1,
                         "max_num_seqs": 128}])
    assert attribution.prediction == pytest.approx(predict_frame(row)["energy_per_token_joules"][0], rel=1e-9)
    human = _run("explain", "--model", "qwen3-32b", "--task", "gpqa", "--gpu", "b200", "--max-num-seqs", "128")
    assert human.exit_code == 0 and "baseline" in human.stdout and "software/batch" in human.stdout


def test_explain_command_refuses_an_impossible_configuration_with_the_arithmetic():
    """Attribution of a configuration that cannot run must say why (memory arithmetic), exit 3, no traceback."""
    result = _run("explain", "--model", "llama-405b", "--task", "chat", "--gpu", "l4", "--num-gpus", "1")
    assert result.exit_code == 3
    assert "does not fit" in result.stderr and "GB" in result.stderr


def test_evaluate_writes_the_report_only_when_asked(tmp_path, monkeypatch):
    """`evaluate` prints the card; it may touch benchmarks/accuracy.md and the README only under --write-report."""
    home = tmp_path / "home"
    shutil.copytree(ROOT / "models" / "predictors" / "default", home / "models" / "predictors" / "default")
    (home / "benchmarks").mkdir()
    monkeypatch.setenv("JOULES_ESTIMATE_HOME", str(home))
    report = home / "benchmarks" / "accuracy.md"
    assert _run("evaluate").exit_code == 0 and not report.exists()
    result = _run("evaluate", "--write-report")
    assert result.exit_code == 0, result.output
    assert "leave-one-model-out" in report.read_text()


def test_option_conflicts_are_named_as_flags_by_the_cli():
    """The library names inputs by their Python names; the CLI must show its own flags instead."""
    result = _run("--model", "llama-70b", "--task", "chat", "--gpu", "b200", "--max-latency-s", "3")
    assert result.exit_code == 2
    assert "--max-latency-s applies to diffusion tasks; for LLMs give --max-itl-ms" in result.output
    from estimator.serve.api import estimate

    with pytest.raises(ValueError, match="max_latency_s applies to diffusion tasks; for LLMs give max_itl_ms"):
        estimate("llama-70b", "chat", "b200", max_latency_s=3)
