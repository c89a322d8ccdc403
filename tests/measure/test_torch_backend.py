"""The torch backends' model: KV-cache decode must match full recomputation, for dense and MoE shapes, on one
device and sharded over two gloo ranks (needs torch; GPU runs marked)."""

from __future__ import annotations

import pytest

from measure.schema import ModelShape

TINY = ModelShape(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=500,
    qk_norm=True,
)
TINY_MOE = TINY.model_copy(update={"intermediate_size": 0, "num_experts": 8, "num_experts_per_tok": 2,
                                   "moe_intermediate_size": 32, "num_shared_experts": 1})


def greedy_by_recompute(w, shape, rope, prompt: list[int], n: int) -> list[int]:
    """``n`` greedy tokens after ``prompt``, recomputing the whole prefix each time (no cache reuse)."""
    import torch

    from measure.backends.torch_dense import KVCache, prefill

    seq = list(prompt)
    for _ in range(n):
        one = KVCache(shape, 1, 64, torch.device("cpu"), torch.float32)
        seq.append(prefill(w, shape, one, rope, torch.tensor([seq]), torch.tensor([len(seq)]), 0).item())
    return seq


@pytest.mark.parametrize("shape", [TINY, TINY_MOE], ids=["dense", "moe"])
def test_cached_decode_matches_full_prefill_greedy(shape):
    """If the static cache, masks, RoPE positions or the MoE grouping were off, energy would be measured for a
    wrong model: greedy tokens from cached, graph-free decode must equal those from recomputing the whole
    prefix each time (teacher-forced full forward), for right-padded prompts of different lengths."""
    torch = pytest.importorskip("torch")
    from measure.backends.torch_dense import KVCache, build_weights, decode_step, prefill, rope_tables

    dev, dt = torch.device("cpu"), torch.float32
    w = build_weights(shape, dev, dt, seed=1)
    w["embed"].mul_(50)
    rope = rope_tables(64, shape.resolved_head_dim, shape.rope_theta, dev, dt)
    toks, lens = torch.randint(0, 500, (3, 12)), torch.tensor([12, 7, 9])
    cache = KVCache(shape, 3, 64, dev, dt)
    tok = prefill(w, shape, cache, rope, toks, lens, 0)
    pos, seqs = lens.clone(), [toks[b, : lens[b]].tolist() + [tok[b].item()] for b in range(3)]
    for _ in range(4):
        decode_step(w, shape, cache, rope, tok, pos, 32)
        for b in range(3):
            seqs[b].append(tok[b].item())
    for b in range(3):
        assert greedy_by_recompute(w, shape, rope, toks[b, : lens[b]].tolist(), 5) == seqs[b]


def test_prefill_into_scattered_rows_matches_contiguous():
    """Continuous batching prefills joiners into whatever slots are free: writing rows [3, 0] must leave the
    same cache contents and first tokens as prefilling them into rows [0, 1]."""
    torch = pytest.importorskip("torch")
    from measure.backends.torch_dense import KVCache, build_weights, prefill, rope_tables

    dev, dt = torch.device("cpu"), torch.float32
    w = build_weights(TINY, dev, dt, seed=2)
    rope = rope_tables(64, TINY.resolved_head_dim, TINY.rope_theta, dev, dt)
    toks, lens = torch.randint(0, 500, (2, 10)), torch.tensor([10, 6])
    a, b = KVCache(TINY, 4, 64, dev, dt), KVCache(TINY, 4, 64, dev, dt)
    first_a = prefill(w, TINY, a, rope, toks, lens, 0)
    first_b = prefill(w, TINY, b, rope, toks, lens, torch.tensor([3, 0]))
    assert torch.equal(first_a, first_b)
    assert torch.equal(a.k[1][0, :10], b.k[1][3, :10]) and torch.equal(a.v[0][1, :6], b.v[0][0, :6])


def _tp_rank(rank: int, world: int, port: int, queue) -> None:
    import torch

    from measure.backends.torch_dense import KVCache, build_weights, decode_step, local_shape, prefill, rope_tables
    from measure.backends.torch_tp import TensorParallel, init_process_group, shard_weights

    init_process_group(rank, world, "gloo", port)
    dev, dt = torch.device("cpu"), torch.float32
    full = build_weights(TINY, dev, dt, seed=5)
    full["embed"].mul_(50)
    shape = local_shape(TINY, world)
    w = shard_weights(full, TINY, rank, world)
    comm = TensorParallel(rank, world, dev)
    rope = rope_tables(64, TINY.resolved_head_dim, TINY.rope_theta, dev, dt)
    toks, lens = torch.arange(20).view(2, 10) * 7 % 500, torch.tensor([10, 8])
    cache = KVCache(shape, 2, 64, dev, dt)
    tok = prefill(w, shape, cache, rope, toks, lens, 0, comm)
    pos, out = lens.clone(), [tok.tolist()]
    for _ in range(4):
        decode_step(w, shape, cache, rope, tok, pos, 32, comm)
        out.append(tok.tolist())
    agree = comm.any_true(rank == 1)
    queue.put((rank, out, agree))
    torch.distributed.destroy_process_group()


def test_tensor_parallel_two_ranks_match_one_device():
    """Column/row sharding with an all-reduce after attention and the MLP, and the vocabulary-split argmax,
    must generate exactly what the unsharded model generates (two gloo ranks on CPU)."""
    torch = pytest.importorskip("torch")
    import torch.multiprocessing as mp

    from measure.backends.torch_dense import KVCache, build_weights, decode_step, prefill, rope_tables
    from measure.tp_sweep import free_port

    dev, dt = torch.device("cpu"), torch.float32
    w = build_weights(TINY, dev, dt, seed=5)
    w["embed"].mul_(50)
    rope = rope_tables(64, TINY.resolved_head_dim, TINY.rope_theta, dev, dt)
    toks, lens = torch.arange(20).view(2, 10) * 7 % 500, torch.tensor([10, 8])
    cache = KVCache(TINY, 2, 64, dev, dt)
    tok = prefill(w, TINY, cache, rope, toks, lens, 0)
    pos, ref = lens.clone(), [tok.tolist()]
    for _ in range(4):
        decode_step(w, TINY, cache, rope, tok, pos, 32)
        ref.append(tok.tolist())
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = free_port()
    procs = [ctx.Process(target=_tp_rank, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join(timeout=60)
    for _, out, agree in results:
        assert out == ref
        assert agree  # any_true is an OR over ranks


def test_local_shape_divides_heads_and_widths():
    """A TP shard holds heads/tp and FFN/vocab columns/tp; a shape that does not divide must be refused."""
    from measure.backends.torch_dense import local_shape

    half = local_shape(TINY_MOE, 2)
    assert (half.num_attention_heads, half.num_key_value_heads, half.moe_intermediate_size, half.vocab_size) == (
        2, 1, 16, 250)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        local_shape(TINY, 4)


@pytest.mark.gpu
def test_tiny_sweep_on_cuda(tmp_path):
    """On a GPU host: a tiny shape runs end to end through CUDA graphs, zeus/NVML and the sink."""
    from measure.schema import SweepSpec
    from measure.sweep import run_sweep

    spec = SweepSpec.model_validate(
        {
            "name": "gpu-smoke",
            "batch_sizes": [8],
            "model": {"model_id": "tiny", "config": TINY.model_dump()},
            "workload": {"forced_output_len": 64},
            "harness": {"warmup_s": 0.5, "min_steady_state_s": 1.0},
        }
    )
    result = run_sweep(spec, tmp_path / "run", idle_s=1.0)
    assert result.records and result.records[0].output_tokens_in_window > 0
