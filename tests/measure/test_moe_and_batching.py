"""MoE routing and grouped experts, the continuous-batching scheduler, and the engines end to end on CPU."""

from __future__ import annotations

import pytest
from measure_fakes import FakeClock, FakeNvml

from measure.backends.continuous_batching import BlockPool, Scheduler
from measure.meter import NvmlReader
from measure.schema import ModelShape, SweepSpec
from measure.workloads import Request

MOE = ModelShape(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=0, vocab_size=300, num_experts=6, num_experts_per_tok=2, moe_intermediate_size=16)


def _scripted_router(torch, experts_of_token: list[tuple[int, int]]):
    """Tokens are one-hot rows; the router sends token t to exactly the two experts scripted for it."""
    router = torch.zeros(MOE.hidden_size, MOE.num_experts)
    for t, (a, b) in enumerate(experts_of_token):
        router[t, a], router[t, b] = 10.0, 9.0
    return router


def test_grouped_experts_match_token_by_token_reference_and_count_touched():
    """Scripted routing: the grouped GEMM path must equal the per-token loop, and 'experts touched' must count
    the distinct experts the script used (3 of 6), not assignments (8) or all experts."""
    torch = pytest.importorskip("torch")
    from measure.backends.torch_moe import build_moe_layer, moe_ffn, moe_ffn_reference, route

    gen = torch.Generator().manual_seed(0)
    layer = build_moe_layer(MOE, lambda *d: torch.randn(*d, generator=gen) * 0.1)
    script = [(0, 2), (2, 0), (5, 2), (0, 5)]
    layer["router"] = _scripted_router(torch, script)
    x = torch.eye(MOE.hidden_size)[:4] * 1.0
    _, ids = route(x, layer["router"], MOE)
    assert [tuple(r) for r in ids.tolist()] == script
    stats = torch.zeros((), dtype=torch.long)
    got = moe_ffn(x, layer, MOE, stats)
    torch.testing.assert_close(got, moe_ffn_reference(x, layer, MOE), rtol=1e-5, atol=1e-6)
    assert int(stats) == 3


def test_grouped_layout_pads_each_group_and_keeps_every_assignment():
    """Each expert's rows start on an aligned boundary and no two assignments share a row of the buffer."""
    torch = pytest.importorskip("torch")
    from measure.backends.torch_moe import grouped_layout

    ids = torch.tensor([[1, 3], [1, 0], [3, 1]])
    order, dest, offs = grouped_layout(ids, 4, align=4)
    assert offs.tolist() == [4, 8, 8, 12]  # expert 0: 1 row -> 4; expert 1: 3 -> 4; expert 2: none; expert 3: 2 -> 4
    assert len(set(dest.tolist())) == 6
    flat = ids.reshape(-1)
    starts = {0: 0, 1: 4, 3: 8}
    for o, d in zip(order.tolist(), dest.tolist(), strict=True):
        assert starts[int(flat[o])] <= d < starts[int(flat[o])] + 4


def _stream(lengths: list[tuple[int, int]]):
    for k, (i, o) in enumerate(lengths):
        yield Request(k, i, o)
    while True:
        yield Request(999, 4, 100)


def test_scheduler_admits_as_others_finish_within_budget_and_blocks():
    """Requests join the running batch as others finish, never beyond max_num_seqs or the prefill token budget,
    and KV blocks are taken as sequences grow and returned when they finish."""
    pool = BlockPool(num_blocks=100, block_tokens=4)
    sched = Scheduler(slots=2, pool=pool, prefill_token_budget=10)
    stream = _stream([(6, 2), (6, 4), (3, 3)])
    admitted = sched.admit(stream, 0)
    assert [r.request_id for _, r in admitted] == [0]  # the second prompt would exceed 10 prefill tokens
    done, produced = sched.after_step({0})
    assert [d.request.request_id for d in done] == [0] and produced == 2
    assert sched.running == 0 and pool.free == 100  # request 0 (2 tokens) finished: its blocks are back
    admitted = sched.admit(stream, 1)
    assert [r.request_id for _, r in admitted] == [1, 2]
    done, produced = sched.after_step({0, 1})
    assert produced == 4 and sched.running == 2
    done, produced = sched.after_step(set())
    assert [d.request.request_id for d in done] == [2] and produced == 2
    assert sched.running == 1 and pool.free == 100 - pool.blocks_for(6 + 3)


TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 128, "vocab_size": 512}


def _spec(**kw) -> SweepSpec:
    d = {"name": "t", "batch_sizes": [4], "model": {"model_id": "tiny", "config": TINY},
         "workload": {"forced_output_len": 12, "input_len_max": 24, "input_len_median": 8},
         "harness": {"warmup_s": 0.05, "min_steady_state_s": 0.3, "meter": "nvml"},
         "torch": {"device": "cpu", "context_bucket_tokens": 16}}
    for k, v in kw.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) else v
    return SweepSpec.model_validate(d)


def test_continuous_engine_keeps_batch_full_and_reports_ttft(tmp_path):
    """Continuous batching on CPU: the batch stays at max_num_seqs while requests of varied lengths come and
    go, output lengths follow the workload (not one forced length), and TTFT/ITL percentiles are on the record."""
    pytest.importorskip("torch")
    from measure.sweep import run_sweep

    spec = _spec(workload={"forced_output_len": None, "output_len_median": 10, "output_len_sigma": 0.6,
                           "output_len_max": 30}, torch={"batching": "continuous", "attention": "ragged"})
    rec = run_sweep(spec, tmp_path, reader=NvmlReader(FakeNvml(FakeClock())), idle_s=0).records[0]
    assert rec.batching == "continuous" and rec.avg_batch_size > 3.5
    assert rec.median_ttft_ms is not None and rec.median_ttft_ms > 0 and rec.p99_itl_ms >= rec.median_itl_ms
    assert rec.avg_output_len != 10 and rec.output_tokens_in_window > 0


def test_moe_static_engine_records_experts_touched(tmp_path):
    """The MoE record says how many experts a decode step read per layer: between top-k and all experts."""
    pytest.importorskip("torch")
    from measure.sweep import run_sweep

    moe = {**TINY, "intermediate_size": 0, "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32}
    rec = run_sweep(_spec(model={"config": moe}), tmp_path, reader=NvmlReader(FakeNvml(FakeClock())),
                    idle_s=0).records[0]
    assert 2 <= rec.avg_experts_touched_per_layer_step <= 8
