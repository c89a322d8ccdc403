"""The mixture-of-experts feed-forward block of the torch backends (Qwen3-MoE / Mixtral / DeepSeek style).

Per token: a linear router over ``num_experts`` logits, softmax, top-``num_experts_per_tok`` (renormalised when
the model does so, ``norm_topk_prob``), then the chosen experts' SwiGLU MLPs weighted by their router
probabilities, plus the always-on shared experts where the architecture has them.

How the experts run: the token-expert assignments are sorted by expert and the experts' MLPs run as two
grouped GEMMs (``torch._grouped_mm``, one CUTLASS launch over all groups, as vLLM's fused MoE kernel does with
Triton): each group multiplies the rows routed to one expert by that expert's weights, so a step reads each
*touched* expert's weights once and never reads an untouched one. Group sizes are padded to ``ALIGN_ROWS``
rows (the padded rows are zeros and are dropped), which keeps every group's start aligned for the kernel.
Every shape is static, so the block can be captured in a CUDA graph; nothing synchronises with the host.

With random weights the router's choices are close to uniform; a trained router with load balancing is
near-uniform too, but skew would touch fewer experts at small batch (the record carries the measured count).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from measure.schema import ModelShape

#: rows each expert's group is padded to a multiple of (16 rows x 2 bytes keeps group starts 32-byte aligned)
ALIGN_ROWS = 16


def build_moe_layer(shape: ModelShape, rand: Callable[..., Any]) -> dict[str, Any]:
    """Random MoE weights of one layer: router ``[hidden, experts]``, experts' gate-up ``[E, 2I, hidden]`` and
    down ``[E, hidden, I]`` (stored [out, in], used transposed), and the shared experts as one dense SwiGLU."""
    h, e, inter = shape.hidden_size, shape.num_experts, shape.moe_intermediate_size
    layer = {"router": rand(h, e), "w_gu": rand(e, 2 * inter, h), "w_d": rand(e, h, inter)}
    if shape.num_shared_experts:
        shared = shape.num_shared_experts * inter
        layer.update({"shared_gu": rand(h, 2 * shared), "shared_d": rand(shared, h)})
    return layer


def route(x: Any, router: Any, shape: ModelShape) -> tuple[Any, Any]:
    """Top-k routing of ``x [n, hidden]``: (weights ``[n, k]`` float32, expert ids ``[n, k]``)."""
    probs = (x @ router).float().softmax(dim=-1)
    weights, ids = probs.topk(shape.num_experts_per_tok, dim=-1)
    if shape.norm_topk_prob:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, ids


def grouped_layout(ids: Any, num_experts: int, align: int = ALIGN_ROWS) -> tuple[Any, Any, Any]:
    """Where each token-expert assignment goes in the expert-sorted, padded buffer.

    Args:
        ids: expert ids ``[n, k]``.
    Returns:
        (order ``[n*k]``: assignments sorted by expert; dest ``[n*k]``: their rows in the padded buffer;
        offsets ``[E]`` int32: cumulative padded group ends, the ``offs`` of ``torch._grouped_mm``).
    """
    import torch

    flat = ids.reshape(-1)
    order = flat.argsort(stable=True)
    counts = torch.zeros(num_experts, dtype=torch.long, device=ids.device).scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts + align - 1) // align * align
    start, pstart = counts.cumsum(0) - counts, padded.cumsum(0) - padded
    sorted_e = flat[order]
    dest = pstart[sorted_e] + torch.arange(flat.numel(), device=ids.device) - start[sorted_e]
    return order, dest, padded.cumsum(0).to(torch.int32)


def experts_touched(ids: Any, num_experts: int) -> Any:
    """Number of distinct experts in ``ids`` (a 0-d tensor; no host sync)."""
    import torch

    hit = torch.zeros(num_experts, dtype=torch.int32, device=ids.device)
    return hit.index_fill_(0, ids.reshape(-1), 1).sum()


def moe_ffn(x: Any, layer: dict, shape: ModelShape, stats: Any | None = None, align: int = ALIGN_ROWS) -> Any:
    """The MoE block on ``x [n, hidden]`` with grouped expert GEMMs; adds the distinct experts touched to ``stats``."""
    import torch
    import torch.nn.functional as F

    n, h = x.shape
    k, e = shape.num_experts_per_tok, shape.num_experts
    weights, ids = route(x, layer["router"], shape)
    order, dest, offs = grouped_layout(ids, e, align)
    rows = n * k + e * align  # static upper bound of the padded buffer
    xs = torch.zeros(rows, h, device=x.device, dtype=x.dtype).index_copy_(0, dest, x[order // k])
    gate, up = torch._grouped_mm(xs, layer["w_gu"].transpose(-2, -1), offs=offs).chunk(2, dim=-1)
    down = torch._grouped_mm(F.silu(gate) * up, layer["w_d"].transpose(-2, -1), offs=offs)
    out = down[dest] * weights.reshape(-1)[order, None].to(x.dtype)
    y = torch.zeros_like(x).index_add_(0, order // k, out)
    if "shared_gu" in layer:
        sg, su = (x @ layer["shared_gu"]).chunk(2, dim=-1)
        y = y + (F.silu(sg) * su) @ layer["shared_d"]
    if stats is not None:
        stats.add_(experts_touched(ids, e))
    return y


def moe_ffn_reference(x: Any, layer: dict, shape: ModelShape) -> Any:
    """The same block token by token, expert by expert (a slow, obviously right version for tests)."""
    import torch
    import torch.nn.functional as F

    weights, ids = route(x, layer["router"], shape)
    y = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            gate, up = (layer["w_gu"][e] @ x[t]).chunk(2)
            y[t] += weights[t, j].to(x.dtype) * (layer["w_d"][e] @ (F.silu(gate) * up))
    if "shared_gu" in layer:
        sg, su = (x @ layer["shared_gu"]).chunk(2, dim=-1)
        y = y + (F.silu(sg) * su) @ layer["shared_d"]
    return y
