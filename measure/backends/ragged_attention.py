"""Decode attention that reads each sequence's own context only (a Triton kernel), for continuous batching.

Why: the static backend's SDPA decode attends over a whole context bucket for every row with a mask. That is
right when all rows of a static batch have about the same length, but under continuous batching the rows'
contexts differ widely (new prompts next to 2,000-token answers), and a bucket set by the longest row would make
every row read the longest row's KV rows: several times the KV bytes a paged kernel such as vLLM's reads.
This kernel runs one program per (sequence, KV head), loops over that sequence's ``pos + 1`` cached positions in
blocks of ``BLOCK`` with an online softmax (FlashAttention-style) and handles the ``group`` query heads that
share the KV head together, so a step reads each sequence's KV exactly once. The lengths are read on the device,
so a captured CUDA graph stays valid as sequences grow. KV storage stays one row per slot
(:class:`measure.backends.torch_dense.KVCache`); only the reads are ragged.

On CPU (tests) :func:`ragged_decode_attention` falls back to a plain masked reference,
:func:`reference_decode_attention`; the GPU-marked test compares the kernel with it on the device.
"""

from __future__ import annotations

import math
from typing import Any

BLOCK = 64


def reference_decode_attention(q: Any, k: Any, v: Any, pos: Any) -> Any:
    """Masked SDPA over positions ``0..pos[b]`` of each row; ``q [b, nh, d]``, ``k``/``v`` ``[b, smax, nkv, d]``."""
    import torch
    import torch.nn.functional as F

    b, nh, d = q.shape
    nkv = k.shape[2]
    mask = (torch.arange(k.shape[1], device=q.device)[None, :] <= pos[:, None])[:, None, None, :]
    o = F.scaled_dot_product_attention(q.view(b, nkv, nh // nkv, d), k.transpose(1, 2), v.transpose(1, 2),
                                       attn_mask=mask)
    return o.reshape(b, nh, d)


def _kernel() -> Any:
    import triton
    import triton.language as tl

    @triton.jit
    def decode_attn(q_ptr, k_ptr, v_ptr, pos_ptr, o_ptr, scale, stride_qb, stride_qh, stride_kb, stride_ks,
                    stride_kh, GROUP: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, BLOCK: tl.constexpr):
        b = tl.program_id(0)
        kvh = tl.program_id(1)
        length = tl.load(pos_ptr + b).to(tl.int32) + 1
        offs_g = tl.arange(0, GP)
        offs_d = tl.arange(0, D)
        gmask = offs_g < GROUP
        heads = kvh * GROUP + offs_g
        q = tl.load(q_ptr + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :], mask=gmask[:, None],
                    other=0.0)
        m = tl.full([GP], float("-inf"), tl.float32)
        l_sum = tl.zeros([GP], tl.float32)
        acc = tl.zeros([GP, D], tl.float32)
        base = b * stride_kb + kvh * stride_kh
        for start in range(0, length, BLOCK):
            offs_s = start + tl.arange(0, BLOCK)
            smask = offs_s < length
            kv_off = base + offs_s[:, None] * stride_ks + offs_d[None, :]
            k = tl.load(k_ptr + kv_off, mask=smask[:, None], other=0.0)
            s = tl.dot(q, tl.trans(k)).to(tl.float32) * scale
            s = tl.where(smask[None, :], s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 1))
            p = tl.exp(s - m_new[:, None])
            alpha = tl.exp(m - m_new)
            v = tl.load(v_ptr + kv_off, mask=smask[:, None], other=0.0)
            l_sum = l_sum * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v).to(tl.float32)
            m = m_new
        out = acc / l_sum[:, None]
        tl.store(o_ptr + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :], out.to(o_ptr.dtype.element_ty),
                 mask=gmask[:, None])

    return decode_attn


_COMPILED: dict[str, Any] = {}


def triton_usable(device: Any) -> bool:
    """True where the kernel can run: a CUDA device with Triton importable."""
    if getattr(device, "type", "cpu") != "cuda":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def ragged_decode_attention(q: Any, k: Any, v: Any, pos: Any) -> Any:
    """Attention of ``q [b, nh, d]`` over each row's positions ``0..pos[b]`` of ``k``/``v [b, smax, nkv, d]``."""
    import torch

    if not triton_usable(q.device):
        return reference_decode_attention(q, k, v, pos)
    if "k" not in _COMPILED:
        _COMPILED["k"] = _kernel()
    b, nh, d = q.shape
    nkv = k.shape[2]
    group = nh // nkv
    q = q.contiguous()
    out = torch.empty_like(q)
    _COMPILED["k"][(b, nkv)](q, k, v, pos, out, 1.0 / math.sqrt(d), q.stride(0), q.stride(1), k.stride(0),
                             k.stride(1), k.stride(2), GROUP=group, GP=max(16, 1 << (group - 1).bit_length()),
                             D=d, BLOCK=BLOCK)
    return out
