"""The decoder math of the torch backends: weights, RoPE, KV cache, prefill and one decode step.

A Llama/Qwen-style decoder with random weights of an HF-like :class:`~measure.schema.ModelShape`
(normal, std 0.02; norms ones). The feed-forward block is dense (SwiGLU) or a mixture of experts
(:mod:`measure.backends.torch_moe`). Tensor parallelism enters through a ``comm`` object
(:class:`SingleDevice` here, :class:`measure.backends.torch_tp.TensorParallel` over torch.distributed): the
weights a rank holds are its shard (heads, intermediate and vocabulary columns divided by the TP degree,
Megatron-style), attention's output projection and the FFN's down projection are row-parallel and followed by
one all-reduce each, and the greedy token is the argmax over every rank's vocabulary slice.

Nothing here synchronises with the host inside :func:`decode_step`, so it can be captured in a CUDA graph.
torch is imported inside functions only.
"""

from __future__ import annotations

from typing import Any

from measure.schema import ModelShape


class SingleDevice:
    """The ``comm`` of an unsharded model: rank 0 of 1; collectives are identities."""

    rank, world = 0, 1

    def all_reduce(self, x: Any) -> Any:
        return x

    def gather_rows(self, x: Any) -> Any:
        """``x [n]`` from every rank stacked as ``[world, n]``."""
        return x[None]


def local_shape(shape: ModelShape, world: int) -> ModelShape:
    """The shape of one rank's shard under ``world``-way tensor parallelism (heads, FFN widths, vocab split).

    Raises:
        ValueError: a dimension does not divide by ``world``.
    """
    if world == 1:
        return shape
    dims = {"num_attention_heads": shape.num_attention_heads, "num_key_value_heads": shape.num_key_value_heads,
            "intermediate_size": shape.intermediate_size, "vocab_size": shape.vocab_size}
    if shape.num_experts:
        dims["moe_intermediate_size"] = shape.moe_intermediate_size
    bad = [name for name, v in dims.items() if v % world]
    if bad:
        raise ValueError(f"tensor parallel {world} does not divide {', '.join(bad)}")
    return shape.model_copy(update={k: v // world for k, v in dims.items()}
                            | {"head_dim": shape.resolved_head_dim, "tie_word_embeddings": False})


def build_weights(shape: ModelShape, device: Any, dtype: Any, seed: int = 0, full_vocab: int | None = None) -> dict:
    """Random weights with ``shape`` (matrices stored [in, out]; experts as [experts, out, in]).

    ``full_vocab`` is the unsharded vocabulary for the (replicated) embedding when ``shape`` is a TP shard.
    """
    import torch

    from measure.backends.torch_moe import build_moe_layer

    gen = torch.Generator(device=device).manual_seed(seed)
    h, d, n_layers = shape.hidden_size, shape.resolved_head_dim, shape.num_hidden_layers
    q, kv, inter = shape.num_attention_heads * d, shape.num_key_value_heads * d, shape.intermediate_size

    def rand(*dims: int) -> Any:
        return torch.empty(*dims, device=device, dtype=dtype).normal_(0.0, 0.02, generator=gen)

    def ones(*dims: int) -> Any:
        return torch.ones(*dims, device=device, dtype=dtype)

    w: dict[str, Any] = {"embed": rand(full_vocab or shape.vocab_size, h), "norm": ones(h), "layers": []}
    for _ in range(n_layers):
        layer = {"ln1": ones(h), "ln2": ones(h), "wqkv": rand(h, q + 2 * kv), "wo": rand(q, h)}
        if shape.num_experts:
            layer.update(build_moe_layer(shape, rand))
        else:
            layer.update({"wgu": rand(h, 2 * inter), "wd": rand(inter, h)})
        if shape.qk_norm:
            layer["qn"], layer["kn"] = ones(d), ones(d)
        w["layers"].append(layer)
    w["lm_head"] = w["embed"].t() if shape.tie_word_embeddings else rand(h, shape.vocab_size)
    return w


def rope_tables(max_positions: int, head_dim: int, theta: float, device: Any, dtype: Any) -> tuple[Any, Any]:
    """cos and sin tables ``[max_positions, head_dim // 2]`` for rotate-half RoPE."""
    import torch

    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(max_positions, device=device, dtype=torch.float32), inv)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rms_norm(x: Any, weight: Any, eps: float) -> Any:
    import torch

    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


def apply_rope(x: Any, cos: Any, sin: Any) -> Any:
    """Rotate-half RoPE; ``cos``/``sin`` broadcast against ``x[..., :head_dim // 2]``."""
    import torch

    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class KVCache:
    """Static per-layer key/value buffers ``[slots, max_context, kv_heads, head_dim]`` (one row per sequence)."""

    def __init__(self, shape: ModelShape, batch: int, max_context: int, device: Any, dtype: Any):
        import torch

        dims = (batch, max_context, shape.num_key_value_heads, shape.resolved_head_dim)
        self.k = [torch.zeros(dims, device=device, dtype=dtype) for _ in range(shape.num_hidden_layers)]
        self.v = [torch.zeros(dims, device=device, dtype=dtype) for _ in range(shape.num_hidden_layers)]
        self.batch, self.max_context = batch, max_context


def ffn(x: Any, layer: dict, shape: ModelShape, stats: Any | None = None) -> Any:
    """The feed-forward block on ``x [..., hidden]``: SwiGLU, or the MoE block for an MoE shape.

    ``stats`` (MoE only): a 1-element tensor that accumulates the number of distinct experts touched.
    """
    import torch.nn.functional as F

    if shape.num_experts:
        from measure.backends.torch_moe import moe_ffn

        return moe_ffn(x.reshape(-1, x.shape[-1]), layer, shape, stats).view_as(x)
    gate, up = (x @ layer["wgu"]).chunk(2, dim=-1)
    return (F.silu(gate) * up) @ layer["wd"]


def greedy_token(x: Any, w: dict, shape: ModelShape, comm: Any) -> Any:
    """Argmax over the whole vocabulary of ``norm(x) @ lm_head`` for ``x [n, hidden]``, each rank holding a slice."""

    logits = rms_norm(x, w["norm"], shape.rms_norm_eps) @ w["lm_head"]
    if comm.world == 1:
        return logits.argmax(dim=-1)
    best, idx = logits.float().max(dim=-1)
    idx = idx + comm.rank * logits.shape[-1]
    bests, idxs = comm.gather_rows(best), comm.gather_rows(idx)
    return idxs.gather(0, bests.argmax(dim=0, keepdim=True))[0]


def prefill(w: dict, shape: ModelShape, cache: KVCache, rope: tuple[Any, Any], tokens: Any, lens: Any, rows: Any,
            comm: Any = None, stats: Any = None) -> Any:
    """Run right-padded prompts ``tokens [b, L]`` into cache rows ``rows`` (an int first row, or a tensor of row
    indices); return each one's first output token (argmax at position ``lens - 1``), shape ``[b]``."""
    import torch
    import torch.nn.functional as F

    comm = comm or SingleDevice()
    b, length = tokens.shape
    if isinstance(rows, int):
        rows = torch.arange(rows, rows + b, device=tokens.device)
    nh, nkv, d = shape.num_attention_heads, shape.num_key_value_heads, shape.resolved_head_dim
    eps, group = shape.rms_norm_eps, nh // nkv
    cos, sin = rope[0][:length][None, :, None, :], rope[1][:length][None, :, None, :]
    x = w["embed"][tokens]
    for li, layer in enumerate(w["layers"]):
        hdn = rms_norm(x, layer["ln1"], eps)
        q, k, v = (hdn @ layer["wqkv"]).split([nh * d, nkv * d, nkv * d], dim=-1)
        q, k, v = q.view(b, length, nh, d), k.view(b, length, nkv, d), v.view(b, length, nkv, d)
        if shape.qk_norm:
            q, k = rms_norm(q, layer["qn"], eps), rms_norm(k, layer["kn"], eps)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        cache.k[li][rows, :length] = k
        cache.v[li][rows, :length] = v
        kk = k.transpose(1, 2).repeat_interleave(group, dim=1)
        vv = v.transpose(1, 2).repeat_interleave(group, dim=1)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), kk, vv, is_causal=True)
        x = x + comm.all_reduce(o.transpose(1, 2).reshape(b, length, nh * d) @ layer["wo"])
        x = x + comm.all_reduce(ffn(rms_norm(x, layer["ln2"], eps), layer, shape, stats))
    last = x[torch.arange(b, device=x.device), lens - 1]
    return greedy_token(last, w, shape, comm)


def decode_step(w: dict, shape: ModelShape, cache: KVCache, rope: tuple[Any, Any], tok: Any, pos: Any, bucket: int,
                comm: Any = None, stats: Any = None, ragged: bool = False) -> None:
    """One decode step for every row, in place: write K/V at ``pos``, attend over positions <= ``pos``
    within the first ``bucket`` slots, put the argmax token in ``tok`` and advance ``pos`` (clamped to the
    cache, so idle rows never write out of bounds). No host synchronisation: safe to capture in a CUDA graph.

    ``ragged``: attend with :func:`measure.backends.ragged_attention.ragged_decode_attention`, which reads each
    row's own ``pos + 1`` positions (``bucket`` is then ignored)."""
    import torch
    import torch.nn.functional as F

    from measure.backends.ragged_attention import ragged_decode_attention

    comm = comm or SingleDevice()
    b = tok.shape[0]
    nh, nkv, d = shape.num_attention_heads, shape.num_key_value_heads, shape.resolved_head_dim
    eps, group, smax = shape.rms_norm_eps, nh // nkv, cache.max_context
    cos, sin = rope[0][pos][:, None, :], rope[1][pos][:, None, :]
    flat = torch.arange(b, device=tok.device) * smax + pos
    mask = (torch.arange(bucket, device=tok.device)[None, :] <= pos[:, None])[:, None, None, :]
    x = w["embed"][tok]
    for li, layer in enumerate(w["layers"]):
        hdn = rms_norm(x, layer["ln1"], eps)
        q, k, v = (hdn @ layer["wqkv"]).split([nh * d, nkv * d, nkv * d], dim=-1)
        q, k, v = q.view(b, nh, d), k.view(b, nkv, d), v.view(b, nkv, d)
        if shape.qk_norm:
            q, k = rms_norm(q, layer["qn"], eps), rms_norm(k, layer["kn"], eps)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        kc, vc = cache.k[li][:b], cache.v[li][:b]  # the cache may hold spare rows after the batch's
        kc.view(b * smax, nkv, d).index_copy_(0, flat, k)
        vc.view(b * smax, nkv, d).index_copy_(0, flat, v)
        if ragged:
            o = ragged_decode_attention(q, kc, vc, pos)
        else:
            kk = kc[:, :bucket].transpose(1, 2)
            vv = vc[:, :bucket].transpose(1, 2)
            o = F.scaled_dot_product_attention(q.view(b, nkv, group, d), kk, vv, attn_mask=mask)
        x = x + comm.all_reduce(o.reshape(b, nh * d) @ layer["wo"])
        x = x + comm.all_reduce(ffn(rms_norm(x, layer["ln2"], eps), layer, shape, stats))
    tok.copy_(greedy_token(x, w, shape, comm))
    pos.add_(1).clamp_(max=smax - 1)
