"""A gpt-fast-style decoder in plain PyTorch whose decode step is captured in CUDA graphs.

Why: eager HF ``generate`` on the project's GPU VMs is CPU-launch-bound (GPU utilisation 12-53%,
device-notes); energy numbers from it describe the VM's CPU. Here the whole decode step (all layers, the LM
head, the argmax and the position update) is one ``torch.cuda.CUDAGraph`` per context bucket, replayed back
to back with no host synchronisation, so decode is GPU-bound.

What it is: a Llama/Qwen-style dense decoder built from an HF-like shape with random bf16 weights
(normal, std 0.02), a static KV cache ``[batch, max_context, kv_heads, head_dim]`` per layer, SDPA prefill
over right-padded prompts (causal), and SDPA decode with a per-sequence length mask. Batches are static:
every request of a round decodes exactly the forced output length, then the next round is prefilled.
The token ids are random; the work per token is that of the real model at that shape.

torch is imported inside functions only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any, Literal

from measure.harness import EngineTrace, RequestTiming, Step
from measure.schema import ModelShape, RunConfig
from measure.workloads import Request


def build_weights(shape: ModelShape, device: Any, dtype: Any, seed: int = 0) -> dict[str, Any]:
    """Random weights with ``shape`` (matrices stored [in, out], normal std 0.02; norms ones)."""
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    h, d, n_layers = shape.hidden_size, shape.resolved_head_dim, shape.num_hidden_layers
    q, kv, inter = shape.num_attention_heads * d, shape.num_key_value_heads * d, shape.intermediate_size

    def rand(*dims: int) -> Any:
        return torch.empty(*dims, device=device, dtype=dtype).normal_(0.0, 0.02, generator=gen)

    def ones(*dims: int) -> Any:
        return torch.ones(*dims, device=device, dtype=dtype)

    w: dict[str, Any] = {"embed": rand(shape.vocab_size, h), "norm": ones(h), "layers": []}
    for _ in range(n_layers):
        layer = {
            "ln1": ones(h),
            "ln2": ones(h),
            "wqkv": rand(h, q + 2 * kv),
            "wo": rand(q, h),
            "wgu": rand(h, 2 * inter),
            "wd": rand(inter, h),
        }
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
    """Static per-layer key/value buffers ``[batch, max_context, kv_heads, head_dim]``."""

    def __init__(self, shape: ModelShape, batch: int, max_context: int, device: Any, dtype: Any):
        import torch

        dims = (batch, max_context, shape.num_key_value_heads, shape.resolved_head_dim)
        self.k = [torch.zeros(dims, device=device, dtype=dtype) for _ in range(shape.num_hidden_layers)]
        self.v = [torch.zeros(dims, device=device, dtype=dtype) for _ in range(shape.num_hidden_layers)]
        self.batch, self.max_context = batch, max_context


def _mlp(x: Any, layer: dict[str, Any]) -> Any:
    import torch.nn.functional as F

    gate, up = (x @ layer["wgu"]).chunk(2, dim=-1)
    return (F.silu(gate) * up) @ layer["wd"]


def prefill(
    w: dict, shape: ModelShape, cache: KVCache, rope: tuple[Any, Any], tokens: Any, lens: Any, row0: int
) -> Any:
    """Run right-padded prompts ``tokens [b, L]`` into cache rows ``row0:row0+b``; return the first
    output token of each (argmax at position ``lens - 1``), shape ``[b]``."""
    import torch
    import torch.nn.functional as F

    b, length = tokens.shape
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
        cache.k[li][row0 : row0 + b, :length] = k
        cache.v[li][row0 : row0 + b, :length] = v
        kk = k.transpose(1, 2).repeat_interleave(group, dim=1)
        vv = v.transpose(1, 2).repeat_interleave(group, dim=1)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), kk, vv, is_causal=True)
        x = x + o.transpose(1, 2).reshape(b, length, nh * d) @ layer["wo"]
        x = x + _mlp(rms_norm(x, layer["ln2"], eps), layer)
    last = x[torch.arange(b, device=x.device), lens - 1]
    return (rms_norm(last, w["norm"], eps) @ w["lm_head"]).argmax(dim=-1)


def decode_step(
    w: dict, shape: ModelShape, cache: KVCache, rope: tuple[Any, Any], tok: Any, pos: Any, bucket: int
) -> None:
    """One decode step for every row, in place: write K/V at ``pos``, attend over positions <= ``pos``
    within the first ``bucket`` slots, put the argmax token in ``tok`` and advance ``pos``.
    No host synchronisation: safe to capture in a CUDA graph."""
    import torch
    import torch.nn.functional as F

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
        cache.k[li].view(b * smax, nkv, d).index_copy_(0, flat, k)
        cache.v[li].view(b * smax, nkv, d).index_copy_(0, flat, v)
        kk = cache.k[li][:, :bucket].transpose(1, 2)
        vv = cache.v[li][:, :bucket].transpose(1, 2)
        o = F.scaled_dot_product_attention(q.view(b, nkv, group, d), kk, vv, attn_mask=mask)
        x = x + o.reshape(b, nh * d) @ layer["wo"]
        x = x + _mlp(rms_norm(x, layer["ln2"], eps), layer)
    logits = rms_norm(x, w["norm"], eps) @ w["lm_head"]
    tok.copy_(logits.argmax(dim=-1))
    pos.add_(1)


class TorchCudaGraphEngine:
    """The torch backend (engine name ``torch-cudagraph``): static batches, forced output lengths."""

    name = "torch-cudagraph"
    batching: Literal["static", "continuous"] = "static"
    weights: Literal["random", "pretrained"] = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._shape: ModelShape | None = None
        self._w: dict | None = None
        self._run: RunConfig | None = None
        self._state: dict[str, Any] = {}

    # -- environment -------------------------------------------------------------------------------
    def version(self) -> str:
        import torch

        return f"torch {torch.__version__}"

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch_version": torch.__version__, "cuda_version": torch.version.cuda or ""}

    def init_device(self, device: str = "cuda", gpu_index: int = 0) -> None:
        """Create the CUDA context (so idle power can be read with a context held)."""
        import torch

        if device == "cuda":
            torch.cuda.set_device(gpu_index)
            torch.zeros(1, device="cuda")
            torch.cuda.synchronize()

    def sync(self) -> None:
        import torch

        if torch.cuda.is_available() and self._device_type() == "cuda":
            torch.cuda.synchronize()

    def _device_type(self) -> str:
        return self._run.spec.torch.device if self._run else "cuda"

    # -- per run -----------------------------------------------------------------------------------
    def load(self, run: RunConfig) -> None:
        """Build weights (once per shape), the KV cache and one CUDA graph per context bucket."""
        import torch

        opts, spec = run.spec.torch, run.spec
        device = torch.device(f"cuda:{spec.gpu_indices[0]}" if opts.device == "cuda" else "cpu")
        dtype = torch.bfloat16
        self._run = run
        shape = spec.shape
        if self._shape != shape:
            self._w = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
            self._w = build_weights(shape, device, dtype, seed=self.seed)
            self._shape = shape
        forced = spec.workload.forced_output_len
        if forced is None:
            raise ValueError("the torch backend runs static batches: set workload.forced_output_len")
        bucket = opts.context_bucket_tokens
        smax = int(math.ceil((spec.workload.input_len_max + forced) / bucket) * bucket)
        b = run.max_num_seqs
        need = shape.kv_bytes_per_token() * b * smax
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if need + 2 * 1024**3 > free:
                raise MemoryError(
                    f"KV cache {need / 1e9:.1f} GB for batch {b} x {smax} tokens does not fit "
                    f"({free / 1e9:.1f} GB free after weights)"
                )
        cache = KVCache(shape, b, smax, device, dtype)
        rope = rope_tables(smax, shape.resolved_head_dim, shape.rope_theta, device, dtype)
        tok = torch.zeros(b, dtype=torch.long, device=device)
        pos = torch.zeros(b, dtype=torch.long, device=device)
        self._state = {
            "cache": cache,
            "rope": rope,
            "tok": tok,
            "pos": pos,
            "smax": smax,
            "bucket": bucket,
            "device": device,
            "graphs": {},
            "gen": torch.Generator(device=device).manual_seed(self.seed),
        }
        if device.type == "cuda" and opts.use_cuda_graphs:
            self._capture_graphs()

    def _step_fn(self, bucket: int) -> Any:
        s = self._state
        return lambda: decode_step(self._w, self._shape, s["cache"], s["rope"], s["tok"], s["pos"], bucket)

    def _capture_graphs(self) -> None:
        import torch

        s = self._state
        pool = torch.cuda.graph_pool_handle()
        for bucket in range(s["bucket"], s["smax"] + 1, s["bucket"]):
            step = self._step_fn(bucket)
            s["pos"].zero_()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                step()
            torch.cuda.current_stream().wait_stream(side)
            s["pos"].zero_()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                step()
            s["graphs"][bucket] = graph
        torch.cuda.synchronize()

    def release(self) -> None:
        """Free the KV cache and graphs (weights stay for the next batch size)."""
        import torch

        self._state = {}
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def unload(self) -> None:
        self.release()
        self._w, self._shape = None, None

    # -- work --------------------------------------------------------------------------------------
    def _round(self, requests: list[Request], timer: _Timer) -> tuple[list[Step], list[RequestTiming]]:
        import torch

        s, spec = self._state, self._run.spec
        b, device, bucket = len(requests), s["device"], s["bucket"]
        lens_list = [r.input_len for r in requests]
        out_len = requests[0].output_len
        longest = max(lens_list)
        lens = torch.tensor(lens_list, device=device)
        tokens = torch.randint(0, self._shape.vocab_size, (b, longest), device=device, generator=s["gen"])
        mark0 = timer.mark()
        per_chunk = max(1, spec.torch.prefill_chunk_tokens // longest)
        firsts = [
            prefill(
                self._w,
                self._shape,
                s["cache"],
                s["rope"],
                tokens[r : r + per_chunk],
                lens[r : r + per_chunk],
                r,
            )
            for r in range(0, b, per_chunk)
        ]
        s["tok"].copy_(torch.cat(firsts))
        s["pos"].copy_(lens)
        marks = [mark0, timer.mark()]
        for k in range(out_len - 1):
            ctx = longest + k + 1
            size = int(math.ceil(ctx / bucket) * bucket)
            if s["graphs"]:
                s["graphs"][size].replay()
            else:
                decode_step(self._w, self._shape, s["cache"], s["rope"], s["tok"], s["pos"], size)
            marks.append(timer.mark())
        times = timer.resolve(marks)
        steps = [Step(times[0], times[1], b, b, "prefill")]
        steps += [Step(t0, t1, b, b, "decode") for t0, t1 in zip(times[1:], times[2:], strict=False)]
        timings = [
            RequestTiming(r.request_id, r.input_len, out_len, times[0], times[1], times[-1]) for r in requests
        ]
        return steps, timings

    def _take_round(self, requests: Iterator[Request]) -> list[Request]:
        return [next(requests) for _ in range(self._run.max_num_seqs)]

    def warm_up(self, requests: Iterator[Request], seconds: float) -> None:
        """Decode for about ``seconds`` (one round, cut short) so clocks and caches settle."""
        if seconds <= 0:
            return
        timer = _Timer(self._state["device"])
        batch = self._take_round(requests)
        start = time.time()
        while time.time() - start < seconds:
            short = [Request(r.request_id, r.input_len, min(r.output_len, 64)) for r in batch]
            self._round(short, timer)
            self.sync()

    def generate(self, requests: Iterator[Request], min_seconds: float) -> EngineTrace:
        """Static rounds of ``max_num_seqs`` requests until at least ``min_seconds`` have passed."""
        timer = _Timer(self._state["device"])
        steps: list[Step] = []
        timings: list[RequestTiming] = []
        while True:
            round_steps, round_timings = self._round(self._take_round(requests), timer)
            steps += round_steps
            timings += round_timings
            if steps[-1].end_s - steps[0].start_s >= min_seconds:
                break
        return EngineTrace(
            requests=timings,
            steps=steps,
            notes=f"CUDA graphs per {self._state['bucket']}-token context bucket"
            if self._state["graphs"]
            else "eager decode (no CUDA graphs)",
        )


class _Timer:
    """Wall-clock times of points in the GPU stream: CUDA events anchored to ``time.time()`` at creation.

    On CPU it reads the wall clock directly. ``resolve`` synchronises once.
    """

    def __init__(self, device: Any):
        import torch

        self.cuda = getattr(device, "type", "cpu") == "cuda"
        if self.cuda:
            torch.cuda.synchronize()
            self.anchor = torch.cuda.Event(enable_timing=True)
            self.anchor.record()
            self.anchor.synchronize()
        self.anchor_s = time.time()

    def mark(self) -> Any:
        import torch

        if not self.cuda:
            return time.time()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def resolve(self, marks: list[Any]) -> list[float]:
        if not self.cuda:
            return list(marks)
        marks[-1].synchronize()
        return [self.anchor_s + self.anchor.elapsed_time(m) / 1e3 for m in marks]
