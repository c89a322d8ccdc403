"""Seeded request sets."""

from __future__ import annotations

from measure_fakes import make_spec

from measure.workloads import make_requests, max_context_len, request_stream


def test_same_seed_same_requests_and_forced_lengths():
    """Runs must be reproducible: the same workload and seed give the same requests."""
    w = make_spec().workload
    a, b = make_requests(w, 50), make_requests(w, 50)
    assert a == b
    assert {r.output_len for r in a} == {50}
    assert all(w.input_len_min <= r.input_len <= w.input_len_max for r in a)
    assert len({r.input_len for r in a}) > 5  # prompts vary


def test_stream_chunks_differ_and_ids_are_unique():
    """Consecutive rounds must not replay the same prompts, and request ids must not collide."""
    stream = request_stream(make_spec().workload, chunk=10)
    first = [next(stream) for _ in range(30)]
    assert len({r.request_id for r in first}) == 30
    assert [r.input_len for r in first[:10]] != [r.input_len for r in first[10:20]]


def test_unforced_outputs_follow_the_distribution():
    """Continuous engines draw output lengths; they must stay inside the clip range."""
    w = make_spec(
        workload={"forced_output_len": None, "output_len_sigma": 0.5, "output_len_max": 900}
    ).workload
    outs = [r.output_len for r in make_requests(w, 200)]
    assert max(outs) <= 900 and len(set(outs)) > 20
    assert max_context_len(w, 128) == 1408
