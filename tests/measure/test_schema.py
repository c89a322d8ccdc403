"""SweepSpec and RunRecord validation."""

from __future__ import annotations

import pytest
from measure_fakes import make_spec
from pydantic import ValidationError

from measure.schema import SweepSpec, resolve_shape

SPEC_TOML = """
name = "llama8b-h100"
batch_sizes = [8, 64]

[model]
model_id = "meta-llama/Llama-3.1-8B-Instruct"

[workload]
forced_output_len = 400
seed = 1
"""


def test_spec_from_toml_expands_one_run_per_batch(tmp_path):
    """A spec file is the user's entry point: it must parse and expand to one run per batch size."""
    path = tmp_path / "s.toml"
    path.write_text(SPEC_TOML)
    spec = SweepSpec.from_toml(path)
    runs = spec.expand()
    assert [r.max_num_seqs for r in runs] == [8, 64]
    assert runs[1].key == "llama8b-h100-bs64"
    assert spec.shape.num_hidden_layers == 32


def test_misspelt_key_is_rejected(tmp_path):
    """extra="forbid": a typo must fail loudly instead of silently using a default."""
    path = tmp_path / "s.toml"
    path.write_text(SPEC_TOML.replace("seed = 1", "sead = 1"))
    with pytest.raises(ValidationError, match="sead"):
        SweepSpec.from_toml(path)


def test_unknown_model_names_close_matches():
    """Keys are exact; an unknown id without a config errors with close matches, never a silent pick."""
    with pytest.raises(KeyError, match="qwen3-8b"):
        resolve_shape("qwen3-8bb")


def test_shapes_the_torch_backend_cannot_build_are_refused():
    """An MLA model must not be silently run as a GQA decoder of the wrong cost; an MoE model must come with its
    experts (not as a dense decoder) and the published parameter count (Qwen3-30B-A3B: 30.53 B)."""
    with pytest.raises(ValueError, match="MLA attention"):
        resolve_shape("deepseek-ai/DeepSeek-V3")
    moe = resolve_shape("Qwen/Qwen3-30B-A3B-Instruct-2507")
    assert (moe.num_experts, moe.num_experts_per_tok, moe.moe_intermediate_size) == (128, 8, 768)
    assert moe.num_params / 1e9 == pytest.approx(30.53, abs=0.01)


def test_spec_hash_is_stable_and_sensitive():
    """The spec hash ties records to the exact spec; equal specs hash equal, any change changes it."""
    assert make_spec().spec_hash() == make_spec().spec_hash()
    assert make_spec().spec_hash() != make_spec(batch_sizes=[8]).spec_hash()


def test_catalog_shapes_have_published_parameter_counts():
    """Random weights stand in for the model only if the shape is right: shapes come from the catalog and
    reproduce the published parameter counts."""
    assert resolve_shape("meta-llama/Llama-3.1-8B-Instruct").num_params / 1e9 == pytest.approx(8.03, abs=0.01)
    assert resolve_shape("Qwen/Qwen3-32B").num_params / 1e9 == pytest.approx(32.8, abs=0.1)
    assert resolve_shape("Qwen/Qwen3-32B").qk_norm
    assert resolve_shape("Qwen/Qwen3-8B").num_params / 1e9 == pytest.approx(8.19, abs=0.01)
    assert resolve_shape("meta-llama/Llama-3.1-8B-Instruct").kv_bytes_per_token() == 131072


def test_record_rejects_broken_identities(record_dict):
    """J/token x tokens/s must equal W, and J/token x output length must equal J/request (1e-6)."""
    from measure.schema import RunRecord

    RunRecord.model_validate(record_dict)
    with pytest.raises(ValidationError, match="avg_power_watts"):
        RunRecord.model_validate({**record_dict, "avg_power_watts": record_dict["avg_power_watts"] * 1.001})
    with pytest.raises(ValidationError, match="energy_per_request"):
        RunRecord.model_validate({**record_dict, "energy_per_request_joules": 1.0})


def test_record_verdict_must_agree_with_reason(record_dict):
    """A record cannot claim to be unstable without saying why (or stable with a reason)."""
    from measure.schema import RunRecord

    with pytest.raises(ValidationError, match="is_stable"):
        RunRecord.model_validate({**record_dict, "is_stable": False})


@pytest.fixture
def record_dict() -> dict:
    ept, tput, out_len = 0.1, 5000.0, 400.0
    return {
        "model_id": "meta-llama/Llama-3.1-8B-Instruct",
        "task": "lm-arena-chat",
        "gpu_model": "NVIDIA H100 80GB HBM3",
        "num_gpus": 1,
        "max_num_seqs": 64,
        "avg_batch_size": 64.0,
        "avg_input_len": 120.0,
        "avg_output_len": out_len,
        "avg_power_watts": ept * tput,
        "energy_per_token_joules": ept,
        "energy_per_request_joules": ept * out_len,
        "output_throughput_tokens_per_sec": tput,
        "median_itl_ms": 12.0,
        "p90_itl_ms": 12.5,
        "p95_itl_ms": 13.0,
        "p99_itl_ms": 14.0,
        "engine": "torch-cudagraph",
        "engine_version": "torch 2.11",
        "batching": "static",
        "weights": "random",
        "is_stable": True,
        "unstable_reason": "",
        "steady_state_duration_s": 12.0,
        "gpu_utilization_pct": 99.0,
        "sm_clock_mhz": 1980.0,
        "idle_power_watts": 121.0,
        "window_energy_joules": 6000.0,
        "output_tokens_in_window": 60000,
        "provenance": {
            "gpu_name": "NVIDIA H100 80GB HBM3",
            "driver_version": "580",
            "power_limit_watts": 700.0,
            "engine": "torch-cudagraph",
            "engine_version": "torch 2.11",
            "spec_hash": "abc",
            "started_at": "2026-11-23T00:00:00+00:00",
            "meter": "zeus",
        },
    }
