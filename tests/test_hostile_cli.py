"""Hostile inputs to every `joules-estimate` command (issue 12, items 4, 5, 6, 9): each case asserts the exit code
(2 bad input, 3 configuration impossible), a message naming the problem, no traceback and no file clobbered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile import check, error_line

from estimator.cli.main import app
from estimator.serve.api import load_predictor

ROOT = Path(__file__).resolve().parent.parent
LLM = ["--model", "llama-70b", "--task", "chat", "--gpu", "b200"]
IMG = ["--model", "flux-dev", "--task", "text-to-image", "--gpu", "h100"]
VID = ["--model", "wan-1.3b", "--task", "text-to-video", "--gpu", "h100"]
WHAT_IF = ["what-if", *LLM, "--num-gpus", "2"]
EXPLAIN = ["explain", *LLM, "--num-gpus", "2"]
PLAN = ["plan", "--model", "llama-70b", "--task", "chat"]


@pytest.fixture(scope="module", autouse=True)
def _predictor_loaded_once():
    load_predictor()


# (id, argv, exit code, regex the output must contain)
OPTIONS = [
    ("gpus-fraction", [*LLM, "--num-gpus", "2.5"], 2, r"--num-gpus.*integer"),
    ("gpus-65", [*LLM, "--num-gpus", "65"], 2, r"num.gpus.*65.*outside 1-64"),
    ("gpus-million", [*LLM, "--num-gpus", "1000000"], 2, r"num.gpus.*outside 1-64"),
    ("gpus-zero", [*LLM, "--num-gpus", "0"], 2, r"num.gpus"),
    ("gpus-text", [*LLM, "--num-gpus", "two"], 2, r"num.gpus"),
    ("batch-1e12", [*LLM, "--max-num-seqs", "1000000000000"], 2, r"max_num_seqs=1e\+12 is outside"),
    ("batch-70000", [*LLM, "--batch", "70000"], 2, r"70000 is outside 1-65536"),
    ("output-inf", [*LLM, "--output-tokens", "inf"], 2, r"output.tokens.*not a finite"),
    ("output-nan", [*LLM, "--output-tokens", "nan"], 2, r"output.tokens.*not a finite"),
    ("output-1e308", [*LLM, "--output-tokens", "1e308"], 2, r"output.tokens=1e\+308 is outside"),
    ("output-above-1e7", [*LLM, "--output-tokens", "10000001"], 2, r"output.tokens=10000001 is outside 1-10000000"),
    ("input-inf", [*LLM, "--input-tokens", "inf"], 2, r"input.tokens.*not a finite"),
    ("itl-inf", [*LLM, "--max-itl-ms", "inf"], 2, r"max.itl.ms.*not a finite"),
    ("itl-nan", [*LLM, "--max-itl-ms", "nan"], 2, r"max.itl.ms.*not a finite"),
    ("precision-unknown", [*LLM, "--precision", "fp3"], 2, r"unknown precision 'fp3'"),
    ("tp3-64-heads", [*LLM, "--num-gpus", "3"], 3, r"tensor parallel 3 does not divide .*64 attention heads"),
    ("405b-on-l4", ["--model", "llama-405b", "--task", "chat", "--gpu", "l4", "--num-gpus", "1"], 3,
     r"does not fit.*GB"),
    ("steps-1e9", [*IMG, "--steps", "1000000000"], 2, r"steps.*outside 1-1000"),
    ("resolution-huge", [*IMG, "--resolution", "100000000x100000000"], 2, r"outside 64-8192"),
    ("resolution-tiny", [*IMG, "--resolution", "10x10"], 2, r"outside 64-8192"),
    ("resolution-zero", [*IMG, "--resolution", "0x0"], 2, r"outside 64-8192"),
    ("resolution-word", [*IMG, "--resolution", "big"], 2, r"resolution"),
    ("resolution-one-number", [*IMG, "--resolution", "1024"], 2, r"resolution"),
    ("resolution-fraction", [*IMG, "--resolution", "1024.5x1024"], 2, r"resolution|whole"),
    ("resolution-negative", [*IMG, "--resolution", "-5x-5"], 2, r"resolution|outside"),
    ("resolution-inf", [*IMG, "--resolution", "infxinf"], 2, r"resolution|finite"),
    ("frames-huge", [*VID, "--frames", "100000"], 2, r"frames.*outside 1-1024"),
    ("ulysses-3-of-4", [*IMG, "--num-gpus", "4", "--ulysses-degree", "3"], 2, r"ulysses"),
    ("itl-on-diffusion", [*IMG, "--max-itl-ms", "50"], 2, r"max-itl-ms applies to LLM"),
    ("precision-on-diffusion", [*IMG, "--precision", "fp8"], 2, r"precision applies to LLM"),
    ("missing-task", ["--model", "llama-70b", "--gpu", "b200"], 2, r"missing --task"),
    ("unknown-gpu", ["--model", "llama-70b", "--task", "chat", "--gpu", "z900"], 2, r"unknown gpu 'z900'"),
    ("unknown-model", ["--model", "llama-7000b", "--task", "chat", "--gpu", "b200"], 2, r"unknown model"),
    ("unknown-task", ["--model", "llama-70b", "--task", "chitchat", "--gpu", "b200"], 2, r"unknown task"),
    ("llm-on-diffusion-task", ["--model", "llama-70b", "--task", "text-to-image", "--gpu", "b200"], 2,
     r"cannot run task"),
]

# ambiguous aliases (issue item 9): refused with the candidates
ALIASES = [
    ("task-image", ["--model", "qwen3-vl-8b", "--task", "image", "--gpu", "h100"], 2,
     r"ambiguous.*image-chat.*text-to-image"),
    ("task-video", ["--model", "qwen3-vl-8b", "--task", "video", "--gpu", "h100"], 2,
     r"ambiguous.*video-chat.*text-to-video"),
    ("cogvideox-5b", ["--model", "cogvideox-5b", "--task", "text-to-video", "--gpu", "h100"], 2,
     r"ambiguous.*CogVideoX1\.5-5B"),
    ("h100-80gb", ["--model", "llama-70b", "--task", "chat", "--gpu", "h100-80gb"], 2,
     r"ambiguous.*H100-SXM.*H100-PCIe"),
]


@pytest.mark.parametrize(("argv", "code", "pattern"), [c[1:] for c in OPTIONS + ALIASES],
                         ids=[c[0] for c in OPTIONS + ALIASES])
def test_frontier_options(tmp_path, argv, code, pattern):
    """The frontier command refuses each bad number, impossible layout and ambiguous name in one line."""
    check(app, argv, code, pattern, tmp_path)


@pytest.mark.parametrize(("model", "gpu", "taken"), [
    ("llama-8b", "h100", "gpu h100 taken as H100-SXM"), ("llama-8b", "a100", "gpu a100 taken as A100-SXM-80GB"),
    ("llama-4-maverick", "b200", "model llama-4-maverick taken as meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8"),
])
def test_default_aliases_say_which_entry_was_taken(tmp_path, model, gpu, taken):
    """`h100` stays the SXM part the data was measured on, `a100` the 80 GB part, `llama-4-maverick` the FP8
    checkpoint; the output says which entry was taken and why."""
    result = check(app, ["--model", model, "--task", "chat", "--gpu", gpu, "--num-gpus", "8"], 0, taken, tmp_path)
    assert "Time-energy frontier" in result.stdout


MODEL_CONFIGS = {
    "nan-field": ('{"num_hidden_layers": 32, "hidden_size": NaN, "num_attention_heads": 32, "vocab_size": 1000, '
                  '"intermediate_size": 100}', r"NaN.*refused"),
    "infinity-field": ('{"num_hidden_layers": Infinity, "hidden_size": 64, "num_attention_heads": 4, '
                       '"vocab_size": 10, "intermediate_size": 10}', r"Infinity.*refused"),
    "heads-32-kv-7": ('{"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, '
                      '"num_key_value_heads": 7, "vocab_size": 1000, "intermediate_size": 100}', r"not a multiple"),
    "layers-fraction": ('{"num_hidden_layers": 31.5, "hidden_size": 4096, "num_attention_heads": 32, '
                        '"vocab_size": 1000, "intermediate_size": 100}', r"num_hidden_layers=31\.5.*whole"),
    "layers-boolean": ('{"num_hidden_layers": true, "hidden_size": 4096, "num_attention_heads": 32, '
                       '"vocab_size": 1000, "intermediate_size": 100}', r"num_hidden_layers.*boolean"),
    "top-k-above-experts": ('{"num_hidden_layers": 4, "hidden_size": 512, "num_attention_heads": 8, '
                            '"vocab_size": 1000, "intermediate_size": 100, "num_local_experts": 8, '
                            '"num_experts_per_tok": 9}', r"num_experts_per_tok=9 exceeds"),
    "layers-huge": ('{"num_hidden_layers": 1000000000, "hidden_size": 64, "num_attention_heads": 4, '
                    '"vocab_size": 10, "intermediate_size": 10}', r"num_hidden_layers.*outside"),
    "vocab-negative": ('{"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, '
                       '"vocab_size": -10, "intermediate_size": 10}', r"vocab_size.*outside"),
    "missing-fields": ('{"num_hidden_layers": 2}', r"lacks required keys"),
    "empty": ("", r"not valid JSON"),
    "array": ("[1, 2, 3]", r"JSON object"),
    "text-config-bad": ('{"text_config": {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, '
                        '"num_key_value_heads": 3, "vocab_size": 10, "intermediate_size": 10}}', r"not a multiple"),
}


@pytest.mark.parametrize("case", sorted(MODEL_CONFIGS))
def test_model_config_fields(tmp_path, case):
    """A broken config.json is refused naming the file and the field (never a math domain error)."""
    text, pattern = MODEL_CONFIGS[case]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "config.json").write_text(text)
    result = check(app, ["--model-config", str(folder / "config.json"), "--task", "chat", "--gpu", "h100"], 2,
                   pattern, tmp_path)
    assert "config.json" in error_line(result)


@pytest.mark.parametrize("kind", ["directory", "fifo", "binary"])
def test_model_config_unreadable_files(tmp_path, kind):
    """A directory, a FIFO (would hang) or binary garbage as --model-config: one line naming the file."""
    path = tmp_path / "config.json"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    pattern = {"directory": "directory", "fifo": "not a regular file", "binary": "not UTF-8"}[kind]
    check(app, ["--model-config", str(path), "--task", "chat", "--gpu", "h100"], 2, pattern, tmp_path)


def test_plot_to_a_directory(tmp_path):
    """--plot naming a directory is refused before anything is computed."""
    check(app, [*LLM, "--plot", str(tmp_path)], 2, r"directory", tmp_path)


SETS = [
    ("set-gpus-fraction", ["--set", "num_gpus=2.5"], 2, r"num_gpus='?2\.5'? must be a whole number"),
    ("set-gpus-inf", ["--set", "num_gpus=inf"], 2, r"num_gpus.*not a finite"),
    ("set-gpus-nan", ["--set", "num_gpus=nan"], 2, r"num_gpus.*not a finite"),
    ("set-gpus-bool", ["--set", "num_gpus=true"], 2, r"num_gpus.*not a number"),
    ("set-gpus-100", ["--set", "num_gpus=100"], 2, r"num_gpus=100 is outside"),
    ("set-batch-1e12", ["--set", "batch=1e12"], 2, r"batch.*outside"),
    ("set-batch-negative", ["--set", "max_num_seqs=-5"], 2, r"max_num_seqs=-5 is outside"),
    ("set-output-1e308", ["--set", "output_tokens=1e308"], 2, r"output_tokens.*outside"),
    ("set-unknown-key", ["--set", "colour=red"], 2, r"unknown configuration key 'colour'"),
    ("set-repeated-key", ["--set", "num_gpus=2", "--set", "num_gpus=4"], 2, r"num_gpus given twice"),
    ("set-repeated-alias", ["--set", "batch=8", "--set", "max_num_seqs=16"], 2, r"more than once"),
    ("set-empty-value", ["--set", "gpu="], 2, r"KEY=VALUE"),
    ("set-empty-key", ["--set", "=4"], 2, r"KEY=VALUE"),
    ("set-no-equals", ["--set", "novalue"], 2, r"KEY=VALUE"),
    ("set-unknown-gpu", ["--set", "gpu=z900"], 2, r"unknown gpu"),
    ("set-unknown-model", ["--set", "model=acme/x"], 2, r"unknown model"),
    ("set-ambiguous-gpu", ["--set", "gpu=h100-80gb"], 2, r"ambiguous"),
    ("set-family-change", ["--set", "task=text-to-image"], 2, r"cannot run task text-to-image"),
    ("set-precision", ["--set", "precision=fp3"], 0, r"changed cannot run: unknown precision 'fp3'"),
]


@pytest.mark.parametrize(("argv", "code", "pattern"), [c[1:] for c in SETS], ids=[c[0] for c in SETS])
def test_what_if_sets(tmp_path, argv, code, pattern):
    """Every --set value passes the same validation as the options; a repeated key is refused."""
    check(app, [*WHAT_IF, *argv], code, pattern, tmp_path)


def test_what_if_both_sides_impossible_exits_3(tmp_path):
    """Both sides impossible (TP 3 for a 64-head model): exit 3 with the rule."""
    check(app, ["what-if", *LLM, "--num-gpus", "3", "--set", "batch=64"], 3, r"does not divide", tmp_path)


def test_what_if_steps_zero_on_diffusion(tmp_path):
    """--set steps=0 for a diffusion what-if: refused naming steps."""
    check(app, ["what-if", *IMG, "--num-gpus", "1", "--set", "steps=0"], 2, r"steps=0 is outside", tmp_path)


EXPLAINS = [
    ("quantity-diffusion-on-llm", [*EXPLAIN, "--quantity", "batch_latency_s"], 2,
     r"batch_latency_s.*not a quantity of llm"),
    ("quantity-item-on-llm", [*EXPLAIN, "--quantity", "energy_per_item_joules"], 2, r"not a quantity of llm"),
    ("quantity-bogus", [*EXPLAIN, "--quantity", "joules_per_vibe"], 2, r"joules_per_vibe"),
    ("quantity-llm-on-diffusion", ["explain", *IMG, "--num-gpus", "1", "--quantity", "median_itl_ms"], 2,
     r"median_itl_ms.*not a quantity of diffusion"),
    ("explain-tp3", ["explain", *LLM, "--num-gpus", "3"], 3, r"does not divide"),
    ("explain-output-inf", [*EXPLAIN, "--output-tokens", "inf"], 2, r"not a finite"),
    ("explain-batch-huge", [*EXPLAIN, "--max-num-seqs", "100000000"], 2, r"outside"),
]


@pytest.mark.parametrize(("argv", "code", "pattern"), [c[1:] for c in EXPLAINS], ids=[c[0] for c in EXPLAINS])
def test_explain(tmp_path, argv, code, pattern):
    """explain refuses a quantity of the other family instead of explaining another quantity."""
    check(app, argv, code, pattern, tmp_path)


PLANS = [
    ("demand-inf", ["--demand-tokens-per-sec", "inf"], 2, r"demand.tokens.per.sec.*not a finite"),
    ("demand-nan", ["--demand-tokens-per-sec", "nan"], 2, r"not a finite"),
    ("demand-1e300", ["--demand-tokens-per-sec", "1e300"], 2, r"outside"),
    ("rps-inf", ["--demand-rps", "inf"], 2, r"demand.rps.*not a finite"),
    ("power-inf", ["--power-budget-kw", "inf"], 2, r"power.budget.kw.*not a finite"),
    ("power-mw-huge", ["--power-budget-mw", "1e300"], 2, r"power.budget.*outside"),
    ("gpu-budget-huge", ["--gpu-budget", "100000000000"], 2, r"gpu.budget.*outside"),
    ("two-demands", ["--demand-rps", "1", "--demand-tokens-per-sec", "1"], 2, r"one demand"),
    ("no-demand", [], 2, r"give a demand"),
    ("unknown-gpu", ["--demand-rps", "1", "--gpu", "z900"], 2, r"unknown gpu"),
    ("unreachable-latency", ["--demand-tokens-per-sec", "1000", "--max-itl-ms", "0.01"], 3,
     r"no configuration meets"),
    ("plan-gpus-fraction", ["--demand-rps", "1", "--num-gpus", "1.5"], 2, r"--num-gpus.*integer"),
]


@pytest.mark.parametrize(("argv", "code", "pattern"), [c[1:] for c in PLANS], ids=[c[0] for c in PLANS])
def test_plan(tmp_path, argv, code, pattern):
    """plan refuses infinite or absurd demand and budgets instead of 'succeeding' with one replica."""
    check(app, [*PLAN, *argv], code, pattern, tmp_path)


@pytest.mark.parametrize(("card", "pattern"), [
    ("{}", r"no held-out metrics"), ('{"metrics": {}}', r"no held-out metrics"), ("not json", r"not valid JSON"),
    (None, r"no predictor card"), (b"\xff\xfe\x00garbage", r"not UTF-8"),
])
def test_evaluate_bad_cards(tmp_path, card, pattern):
    """evaluate on an empty, missing or malformed card is refused (never an empty table)."""
    folder = tmp_path / "predictor"
    folder.mkdir()
    if isinstance(card, bytes):
        (folder / "card.json").write_bytes(card)
    elif card is not None:
        (folder / "card.json").write_text(card)
    check(app, ["evaluate", "--predictor", str(folder), "--no-report"], 2, pattern, tmp_path)


@pytest.mark.parametrize(("argv", "pattern"), [
    (["catalog", "list", "widgets"], r"unknown catalog 'widgets'"),
    (["catalog", "show", "gpus", "z900"], r"unknown gpu"),
    (["catalog", "show", "gpus", "h100-80gb"], r"ambiguous.*H100-PCIe"),
    (["catalog", "show", "tasks", "image"], r"ambiguous"),
])
def test_catalog(tmp_path, argv, pattern):
    """The catalog browser names unknown and ambiguous names with candidates."""
    check(app, argv, 2, pattern, tmp_path)


def test_real_process_inf_output_tokens_one_line():
    """Through a real interpreter: `--output-tokens inf` is one stderr line and exit 2, no traceback."""
    out = subprocess.run([sys.executable, "-m", "estimator.cli", *LLM, "--output-tokens", "inf"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2 and out.stderr.startswith("error: ") and len(out.stderr.splitlines()) == 1
    assert "not a finite" in out.stderr and "Traceback" not in out.stderr


def test_real_process_impossible_exits_3_json():
    """Through a real interpreter: an impossible configuration exits 3 even with --json."""
    out = subprocess.run([sys.executable, "-m", "estimator.cli", "--model", "llama-405b", "--task", "chat", "--gpu",
                          "l4", "--num-gpus", "1", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 3 and "does not fit" in out.stderr
    assert json.loads(out.stdout)["configurations"] == []
