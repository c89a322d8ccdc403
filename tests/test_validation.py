"""The one numeric validation layer (estimator/validation.py): bounds, integrality, finiteness, vLLM parallelism
rules, Hugging Face config fields and trained-range warnings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from estimator.validation import (
    BOUNDS,
    ImpossibleConfigurationError,
    InputError,
    check_hf_config,
    check_number,
    check_numbers,
    check_parallelism,
    out_of_training_range,
    refuse_json_constant,
    trained_ranges,
)


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("num_gpus", 4, 4), ("num_gpus", "8", 8), ("num_gpus", 2.0, 2), ("num_gpus", np.int64(2), 2),
    ("max_num_seqs", " 256 ", 256), ("avg_output_len", "1e3", 1000.0), ("avg_input_len", 1, 1.0),
    ("image_height", 1024, 1024), ("batch", 64, 64), ("steps", "28", 28), ("max_num_seqs", "1_024", 1024),
])
def test_accepts_valid_numbers(field, value, expected):
    """Valid numbers in any spelling a CLI, CSV or API gives come back as the right Python type."""
    got = check_number(field, value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("num_gpus", 2.5, "whole number"), ("num_gpus", True, "boolean"), ("num_gpus", np.bool_(True), "boolean"),
    ("num_gpus", 0, "outside 1-64"), ("num_gpus", 65, "outside 1-64"), ("num_gpus", 10**6, "outside"),
    ("max_num_seqs", 10**12, "1e+12"), ("avg_output_len", float("inf"), "not a finite"),
    ("avg_output_len", "nan", "not a finite"), ("avg_output_len", 1e308, "outside"),
    ("avg_output_len", 10**308, "1e+308"), ("image_height", 10**8, "outside 64-8192"), ("image_width", 32, "64"),
    ("inference_steps", 10**9, "outside"), ("num_frames", -1, "outside"), ("num_gpus", "four", "not a number"),
    ("num_gpus", [1], "list"), ("demand_tokens_per_sec", "inf", "not a finite"), ("max_itl_ms", 0, "outside"),
])
def test_refuses_bad_numbers_naming_field_and_value(field, value, words):
    """Every refusal is one line naming the field and what is wrong (never a 300-digit number)."""
    with pytest.raises(InputError) as info:
        check_number(field, value)
    message = str(info.value)
    assert message.startswith(f"{field}=") and words in message and "\n" not in message
    assert len(message) < 300


def test_every_bound_states_a_reason_and_sane_limits():
    """The table is the single statement of each range; a bound without a reason or with min > max is a bug."""
    for name, bound in BOUNDS.items():
        assert bound.reason and bound.minimum <= bound.maximum, name


def test_check_numbers_converts_lists_and_skips_text_fields():
    """Only numeric fields are checked; lists are checked item by item."""
    out = check_numbers({"num_gpus": [1, "2"], "model": "x", "precision": None, "batch": "8"})
    assert out == {"num_gpus": [1, 2], "model": "x", "precision": None, "batch": 8}
    with pytest.raises(InputError, match="num_gpus=0"):
        check_numbers({"num_gpus": [1, 0]})


@pytest.mark.parametrize("layout", [
    dict(num_gpus=8, tensor_parallel=8, num_attention_heads=64, num_kv_heads=8),
    dict(num_gpus=8, tensor_parallel=8, num_attention_heads=64, num_kv_heads=4),  # KV heads replicate
    dict(num_gpus=8, tensor_parallel=1, expert_parallel=8, num_attention_heads=64, num_kv_heads=4, num_experts=128),
    dict(num_gpus=8, tensor_parallel=1, expert_parallel=8, data_parallel=8, num_attention_heads=40, num_experts=8),
    dict(num_gpus=4, tensor_parallel=2, data_parallel=2, num_attention_heads=32, num_kv_heads=8),
])
def test_parallelism_vllm_accepts(layout):
    """Layouts vLLM runs (and ML.ENERGY recorded) pass."""
    check_parallelism(**layout)


@pytest.mark.parametrize(("layout", "words"), [
    (dict(num_gpus=3, tensor_parallel=3, num_attention_heads=64), "does not divide"),
    (dict(num_gpus=4, tensor_parallel=4, num_attention_heads=40, num_kv_heads=10), "KV heads"),
    (dict(num_gpus=4, tensor_parallel=2), "must equal num_gpus"),
    (dict(num_gpus=4, tensor_parallel=1, expert_parallel=4, num_attention_heads=32), "mixture-of-experts"),
    (dict(num_gpus=8, tensor_parallel=1, expert_parallel=4, num_experts=64), "span all"),
    (dict(num_gpus=8, tensor_parallel=1, expert_parallel=8, num_experts=4), "exceeds"),
])
def test_parallelism_vllm_refuses(layout, words):
    """TP 3 for a 64-head model, KV heads that neither split nor replicate, EP not spanning the GPUs: refused."""
    with pytest.raises(ImpossibleConfigurationError, match=words):
        check_parallelism(**layout)


def test_every_measured_layout_passes_the_parallelism_rules():
    """The rules must accept every layout in the training data (they were all run by vLLM)."""
    from estimator.catalog.catalog import load_catalog
    from estimator.learn.data import load_runs

    catalog = load_catalog()
    runs = load_runs()
    llm = runs[runs["task_family"] != "diffusion"]
    for row in llm.drop_duplicates(["model_id", "num_gpus", "tensor_parallel", "expert_parallel",
                                    "data_parallel"]).itertuples():
        arch = catalog.models[row.model_id]
        check_parallelism(num_gpus=int(row.num_gpus), tensor_parallel=int(row.tensor_parallel),
                          expert_parallel=int(row.expert_parallel), data_parallel=int(row.data_parallel),
                          num_attention_heads=arch.num_attention_heads, num_kv_heads=arch.num_kv_heads,
                          num_experts=arch.num_experts, model=row.model_id)


GOOD_CONFIG = {"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
               "intermediate_size": 14336, "vocab_size": 128256}


@pytest.mark.parametrize(("change", "words"), [
    ({"num_key_value_heads": 7}, "not a multiple"), ({"num_hidden_layers": True}, "boolean"),
    ({"num_hidden_layers": 31.5}, "whole number"), ({"hidden_size": float("nan")}, "finite"),
    ({"num_experts": 8, "num_experts_per_tok": 9}, "exceeds"), ({"vocab_size": "many"}, "not a number"),
    ({"text_config": {"num_hidden_layers": -2}}, "outside"),
])
def test_hf_config_refusals_name_file_and_field(change, words):
    """Broken config.json fields are refused naming the file and the field."""
    with pytest.raises(InputError) as info:
        check_hf_config({**GOOD_CONFIG, **change}, "cfg.json")
    assert str(info.value).startswith("cfg.json: ") and words in str(info.value)


def test_hf_config_good_passes_and_json_constants_refused():
    """A real-looking config passes; NaN/Infinity in the JSON text are refused at parse time."""
    check_hf_config(GOOD_CONFIG, "cfg.json")
    with pytest.raises(InputError, match="Infinity"):
        json.loads('{"hidden_size": Infinity}', parse_constant=refuse_json_constant)


def test_out_of_training_range_names_input_and_range():
    """A value outside the measured range gets a warning naming the input and the range; inside gets none."""
    domain = {"batch_min": 8, "batch_max": 4096, "num_gpus": [1, 2, 4, 8],
              "ranges": {"avg_output_len": [200, 12000]}}
    assert set(trained_ranges(domain)) == {"max_num_seqs", "batch_size", "num_gpus", "avg_output_len"}
    warnings = out_of_training_range({"num_gpus": 64, "max_num_seqs": 128, "avg_output_len": 1e6}, domain)
    assert sorted(warnings) == ["avg_output_len 1000000 outside the measured range 200-12000 (extrapolating)",
                                "num_gpus 64 outside the measured range 1-8 (extrapolating)"]
    assert out_of_training_range({"num_gpus": 8, "max_num_seqs": 8}, domain) == []
