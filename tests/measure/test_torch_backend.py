"""The torch backend's model: KV-cache decode must match full recomputation (needs torch; GPU run marked)."""

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


def test_cached_decode_matches_full_prefill_greedy():
    """If the static cache, masks or RoPE positions were off, energy would be measured for a wrong model:
    greedy tokens from cached decode must equal those from recomputing the whole prefix each time,
    for right-padded prompts of different lengths."""
    torch = pytest.importorskip("torch")
    from measure.backends.torch_backend import KVCache, build_weights, decode_step, prefill, rope_tables

    dev, dt = torch.device("cpu"), torch.float32
    w = build_weights(TINY, dev, dt, seed=1)
    w["embed"].mul_(50)
    rope = rope_tables(64, TINY.resolved_head_dim, TINY.rope_theta, dev, dt)
    toks, lens = torch.randint(0, 500, (3, 12)), torch.tensor([12, 7, 9])
    cache = KVCache(TINY, 3, 64, dev, dt)
    tok = prefill(w, TINY, cache, rope, toks, lens, 0)
    pos, seqs = lens.clone(), [toks[b, : lens[b]].tolist() + [tok[b].item()] for b in range(3)]
    for _ in range(4):
        decode_step(w, TINY, cache, rope, tok, pos, 32)
        for b in range(3):
            seqs[b].append(tok[b].item())
    for b in range(3):
        ref = toks[b, : lens[b]].tolist()
        for _ in range(5):
            one = KVCache(TINY, 1, 64, dev, dt)
            ref.append(prefill(w, TINY, one, rope, torch.tensor([ref]), torch.tensor([len(ref)]), 0).item())
        assert ref == seqs[b]


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
