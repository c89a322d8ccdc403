"""Issue 18 outputs of the committed predictor: p90 ITL, physics-only TTFT, KV-cache precision, fp4 dense models,
task-profile intervals, and the accuracy report regenerated from the card."""

import pandas as pd

from estimator.learn.features import featurize
from estimator.learn.prediction import predict_frame
from estimator.learn.report import accuracy_markdown
from estimator.paths import project_root

BASE = {"model_id": "meta-llama/Llama-3.1-8B-Instruct", "task": "lm-arena-chat", "gpu_model": "H100-SXM",
        "num_gpus": 1, "max_num_seqs": 64}


def test_p90_itl_and_physics_ttft_are_predicted(bundle, catalog):
    """p90 ITL never falls below the median; TTFT (physics only) grows with the prompt the user gives."""
    rows = pd.DataFrame([{**BASE, "avg_input_len": n, "avg_output_len": 500.0} for n in (100.0, 4000.0)])
    out = predict_frame(rows, bundle, catalog)
    assert (out["status"] == "ok").all()
    assert (out["p90_itl_ms"] >= out["median_itl_ms"]).all()
    assert out["ttft_physics_ms"].iloc[1] > 5 * out["ttft_physics_ms"].iloc[0] > 0


def test_fp8_kv_cache_is_a_configuration_input(catalog, bundle):
    """An fp8 KV cache halves the cache bytes, so about twice as many long sequences fit; unknown dtypes refuse."""
    rows = pd.DataFrame([{**BASE, "avg_input_len": 4000.0, "avg_output_len": 4000.0, "kv_cache_dtype": dtype}
                         for dtype in ("auto", "fp8")])
    feasible = featurize(rows, catalog)["max_feasible_batch"].to_numpy()
    assert 1.9 < feasible[1] / feasible[0] < 2.1
    bad = predict_frame(pd.DataFrame([{**BASE, "kv_cache_dtype": "int3"}]), bundle, catalog)
    assert bad["status"].iloc[0] == "error" and "kv_cache_dtype" in bad["reason"].iloc[0]


def test_dense_fp4_model_is_sized_as_fp4(bundle, catalog):
    """Llama-3.1-405B in MXFP4 on 4 x GB200 (~55 GB of weights per GPU) is predicted, not refused as bf16-sized."""
    rows = pd.DataFrame([{"model_id": "meta-llama/Llama-3.1-405B-Instruct", "task": "lm-arena-chat",
                          "gpu_model": "GB200", "num_gpus": 4, "weight_precision": "mxfp4", "max_num_seqs": 64}])
    out = predict_frame(rows, bundle, catalog)
    assert out["status"].iloc[0] == "ok", out["reason"].iloc[0]


def test_unknown_output_length_widens_the_energy_per_response_interval(bundle, catalog):
    """Without a given output length the task profile's interval applies, which carries its uncertainty."""
    rows = pd.DataFrame([{**BASE, "avg_output_len": catalog.tasks["lm-arena-chat"].mean_output_tokens}, BASE])
    out = predict_frame(rows, bundle, catalog)
    width = out["energy_per_request_joules_p90"] / out["energy_per_request_joules_p10"]
    assert width.iloc[1] > width.iloc[0]


def test_accuracy_report_regenerates_from_the_card(bundle):
    """benchmarks/accuracy.md is exactly what the committed card renders (both output-length readings included)."""
    text = accuracy_markdown(bundle.card)
    assert "llm, task-profile length" in text and "task profile (training fold)" in text
    assert (project_root() / "benchmarks" / "accuracy.md").read_text() == text


def test_attention_data_parallel_is_flagged_as_a_lower_bound(bundle, catalog):
    """Attention DP is a straggler mechanism the physics does not model (one measured model, 2-6x the energy of
    expert parallelism): such predictions must say so, and the expert-parallel default must not."""
    base = {"model_id": "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8", "task": "sourcegraph-fim", "gpu_model": "B200",
            "num_gpus": 8, "max_num_seqs": 64}
    rows = pd.DataFrame([{**base, "data_parallel": 8, "expert_parallel": 8, "tensor_parallel": 1}, base])
    out = predict_frame(rows, bundle, catalog)
    assert (out["status"] == "ok").all(), list(out["reason"])
    assert "attention data parallel" in out["warnings"].iloc[0]
    assert "attention data parallel" not in out["warnings"].iloc[1]


def test_estimate_objects_carry_the_physics_only_ttft():
    """The API objects (what --json and the web page show) carry TTFT, labelled physics-only, not as a Metric
    with an interval it does not have."""
    from estimator import what_if

    prediction = what_if({**BASE, "avg_input_len": 2000.0}).base
    assert prediction.physics_only["ttft_physics_ms"] > 0
    assert "ttft_physics_ms" not in prediction.metrics


def test_output_length_defaults_to_the_models_own_profile_with_profile_intervals(catalog):
    """Without an output length the frontier uses the model's measured mean on the task (Llama answers chat in
    ~390 tokens, not the task-wide ~600), says so, and takes the task-profile intervals (output-length
    uncertainty); the same length given by the user takes the narrower 'given' intervals."""
    from estimator import estimate, what_if

    tokens, level = catalog.profile_output_tokens("meta-llama/Llama-3.1-8B-Instruct", "lm-arena-chat")
    assert level == "model" and 300 < tokens < 500 < catalog.tasks["lm-arena-chat"].mean_output_tokens
    result = estimate(model="meta-llama/Llama-3.1-8B-Instruct", task="lm-arena-chat", gpu="H100-SXM")
    assert result.workload.output_tokens == tokens
    assert any("this model's measured mean" in line for line in result.assumptions)
    base = {**BASE}
    profiled = what_if(base).base.metrics["energy_per_request_joules"]
    given = what_if({**base, "output_tokens": tokens}).base.metrics["energy_per_request_joules"]
    assert profiled.value == given.value
    assert profiled.p90 / profiled.p10 > given.p90 / given.p10
