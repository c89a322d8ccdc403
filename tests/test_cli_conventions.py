"""CLI conventions from issue 13: --version, one help style, plain type labels, repeated --set refused, one rule
for unreachable limits, --plot checked before any work, evaluate writes nothing unless asked, and the one-command
capacity plan with cost and carbon (evaluate's --write-report is tested in test_cli.py)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from estimator.cli.main import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


def test_version_prints_and_exits_zero():
    """`--version` was missing."""
    result = _run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("joules-estimate ")


@pytest.mark.parametrize("command", [[], ["plan"], ["what-if"], ["explain"], ["catalog"], ["measure"]])
def test_one_help_style_and_plain_type_labels(command):
    """No rich boxes or --install-completion on one command only, and no '<float range>' / '<list[int]>' labels."""
    result = _run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "--install-completion" not in result.stdout and "╭" not in result.stdout
    assert "<float range>" not in result.stdout and "list[int]" not in result.stdout and "<str>" not in result.stdout


def test_repeated_set_key_is_refused():
    """`--set gpu=a --set gpu=b` used to keep the last silently."""
    result = _run("what-if", "--model", "llama-8b", "--task", "chat", "--gpu", "h100", "--set", "gpu=b200",
                  "--set", "gpu=h200")
    assert result.exit_code == 2 and "given twice" in result.output


def test_unreachable_limit_exits_3_with_the_closest_value_from_frontier_and_plan():
    """One rule: the frontier used to exit 0 where plan exited 2; both now exit 3 (configuration impossible, the
    documented code of estimator/validation.py)."""
    frontier = _run("--model", "llama-8b", "--task", "chat", "--gpu", "h100", "--max-itl-ms", "0.5")
    assert frontier.exit_code == 3 and "closest achievable" in frontier.output
    plan = _run("plan", "--model", "llama-8b", "--task", "chat", "--demand-tokens-per-sec", "1000", "--max-itl-ms",
                "0.5")
    assert plan.exit_code == 3 and "closest achievable" in plan.output


def test_plot_dependencies_checked_before_work(monkeypatch, tmp_path):
    """--plot failed with 'needs matplotlib' after the whole table printed: now it fails first, with no table."""
    import importlib.util

    bad = _run("plan", "--model", "llama-8b", "--task", "chat", "--demand-rps", "1", "--plot", str(tmp_path / "f.jpg"))
    assert bad.exit_code == 2 and ".png or .svg" in bad.output
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    result = _run("--model", "llama-8b", "--task", "chat", "--gpu", "h100", "--plot", str(tmp_path / "f.png"))
    assert result.exit_code == 2 and "needs matplotlib" in result.output
    assert "Time-energy frontier" not in result.output


def test_one_command_answers_the_capacity_question(tmp_path):
    """'How many of which GPUs for 30,000 tokens/s of Qwen3-32B under 40 ms, at what kWh, $ and kg CO2 per day,
    with what risk' - one command, numbers with units in their JSON names."""
    result = _run("plan", "--model", "qwen3-32b", "--task", "chat", "--demand-tokens-per-sec", "30000",
                  "--max-itl-ms", "40", "--electricity-usd-per-kwh", "0.10", "--grid-region", "US", "--pue", "1.3",
                  "--average-load", "0.6", "--gpu-usd-per-hour", "3", "--json")
    assert result.exit_code == 0, result.output
    chosen = json.loads(result.stdout)["chosen"]
    assert chosen["total_gpus"] >= 1 and 0 <= chosen["risk"] < 0.5
    costs = chosen["costs"]
    for name in ("energy_per_day_kwh", "total_usd_per_day", "carbon_kg_per_day", "energy_per_month_kwh"):
        assert costs[name]["p10"] <= costs[name]["value"] <= costs[name]["p90"], name
    text = _run("plan", "--model", "qwen3-32b", "--task", "chat", "--demand-tokens-per-sec", "30000",
                "--max-itl-ms", "40", "--electricity-usd-per-kwh", "0.10", "--grid-region", "US",
                "--plot", str(tmp_path / "plan.svg"))
    assert text.exit_code == 0 and "Chosen:" in text.stdout and "kWh" in text.stdout and "kg CO2e" in text.stdout
    assert (tmp_path / "plan.svg").read_text().count("<svg") == 1


def test_what_if_costs_and_plot(tmp_path):
    """what-if takes the same cost flags and draws before/after bars."""
    result = _run("what-if", "--model", "llama-70b", "--task", "chat", "--gpu", "b200", "--num-gpus", "2", "--set",
                  "gpu=h100", "--set", "num_gpus=4", "--grid-gco2-per-kwh", "400", "--electricity-usd-per-kwh",
                  "0.1", "--plot", str(tmp_path / "w.png"))
    assert result.exit_code == 0, result.output
    assert "Cost and carbon" in result.stdout and (tmp_path / "w.png").exists()


def test_seconds_turns_into_frames_at_the_model_fps():
    """Video length in seconds: 5 s of Wan 2.1 at 16 fps is 81 frames (its 4k + 1 grid)."""
    result = _run("--model", "wan-1.3b", "--task", "text-to-video", "--gpu", "h100", "--seconds", "5",
                  "--num-gpus", "1", "--batch", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["workload"]["num_frames"] == 81


def test_readme_numbers_match_the_one_command():
    """The README quotes the plan's answer; if the predictor or the planner changes, the prose must follow."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.startswith("joules-estimate plan --model qwen3-32b"))
    args = command.split()[1:]
    args = args[:args.index("--plot")] + ["--json"]
    result = _run(*args)
    assert result.exit_code == 0, result.output
    chosen = json.loads(result.stdout)["chosen"]
    config = chosen["prediction"]["configuration"]
    gpu = config["gpu_model"]
    assert f"{chosen['replicas']} replicas of {config['num_gpus']} x {gpu}" in readme
    assert f"{chosen['costs']['energy_per_day_kwh']['value']:.0f} kWh" in readme
    assert f"{chosen['costs']['carbon_kg_per_day']['value']:.0f} kg CO2e" in readme


def test_readme_headline_accuracy_matches_the_card():
    """The README's prose quotes the headline accuracy by hand (the table above it is generated); a retrain that
    changes the card without the prose would leave users reading a stale number."""
    from pathlib import Path

    from estimator.learn.predictor import load_predictor

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    metrics = load_predictor().card.metrics["leave-one-model-out"]
    profile = metrics["llm|task-profile"]["energy_per_token_joules"]["median_ape_pct"]
    given = metrics["llm"]["energy_per_token_joules"]
    assert f"**{profile:.1f}% median on LLM energy per\ntoken**" in readme
    assert f"({given['median_ape_pct']:.1f}% when the workload's mean output length is given, p90 " \
           f"{given['p90_ape_pct']:.0f}%" in readme
