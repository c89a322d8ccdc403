"""The torch backend (engine ``torch-cudagraph``): static batches, decode captured in CUDA graphs.

Why: eager HF ``generate`` launches every kernel from Python, so on the project's GPU VMs it is CPU-launch-bound
(GPU utilisation far below the 90% the harness asks for, ``datasets/README.md``); energy numbers from it describe
the VM's CPU. Here the whole decode step (all layers, the LM head, the argmax and the position update) is one
``torch.cuda.CUDAGraph`` per context bucket (https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs),
replayed back to back with no host synchronisation, so decode is GPU-bound.

The model (:mod:`measure.backends.torch_dense`) is a Llama/Qwen-style decoder, dense or MoE, with random bf16
weights of the catalog shape, a static KV cache, SDPA prefill over right-padded prompts and SDPA decode with a
per-sequence length mask; under tensor parallelism each process holds its shard and the graphs contain the
NCCL all-reduces. Batches here are static: every request of a round decodes exactly the forced output length,
then the next round is prefilled. Continuous batching is :mod:`measure.backends.continuous_batching`.

torch is imported inside functions only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any, Literal

from measure.backends.torch_dense import (  # noqa: F401 - re-exported for callers of the old module
    KVCache,
    SingleDevice,
    apply_rope,
    build_weights,
    decode_step,
    local_shape,
    prefill,
    rms_norm,
    rope_tables,
)
from measure.harness import EngineTrace, RequestTiming, Step
from measure.schema import ModelShape, RunConfig
from measure.workloads import Request


class TorchCudaGraphEngine:
    """Static batches, forced output lengths; dense or MoE shapes; one GPU or one TP rank (``comm``)."""

    name = "torch-cudagraph"
    batching: Literal["static", "continuous"] = "static"
    weights: Literal["random", "pretrained"] = "random"
    spare_rows = 0  # KV rows after the batch's (continuous batching writes padded prefill rows there)

    def __init__(self, seed: int = 0, comm: Any = None):
        self.seed = seed
        self.comm = comm or SingleDevice()
        self._shape: ModelShape | None = None
        self._full_shape: ModelShape | None = None
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

        if self.comm.world > 1:
            gpu_index = getattr(self.comm.device, "index", gpu_index)
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

    def agree(self, flag: bool) -> bool:
        """True when any rank says so (one tiny all-reduce under TP): keeps time-driven loops in lockstep."""
        return self.comm.any_true(flag) if self.comm.world > 1 else flag

    # -- per run -----------------------------------------------------------------------------------
    def _device(self, run: RunConfig) -> Any:
        import torch

        opts, spec = run.spec.torch, run.spec
        if opts.device != "cuda":
            return torch.device("cpu")
        return torch.device(f"cuda:{spec.gpu_indices[self.comm.rank]}")

    def _ensure_weights(self, run: RunConfig, device: Any) -> None:
        import torch

        full = run.spec.shape
        if self._full_shape == full:
            return
        self._w = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
        self._shape = local_shape(full, self.comm.world)
        self._w = build_weights(self._shape, device, torch.bfloat16, seed=self.seed + self.comm.rank,
                                full_vocab=full.vocab_size)
        self._full_shape = full

    def context_tokens(self, run: RunConfig) -> int:
        """KV-cache rows per sequence: the longest prompt plus output, rounded up to the context bucket."""
        w = run.spec.workload
        out = w.forced_output_len or w.output_len_max
        bucket = run.spec.torch.context_bucket_tokens
        return int(math.ceil((w.input_len_max + out) / bucket) * bucket)

    def load(self, run: RunConfig) -> None:
        """Build weights (once per shape), the KV cache and one CUDA graph per context bucket."""
        import torch

        if self.batching == "static" and run.spec.workload.forced_output_len is None:
            raise ValueError("static batches need workload.forced_output_len")
        device = self._device(run)
        self._run = run
        if self.comm.world > 1:
            self.comm.barrier()  # rank 0 may still be measuring idle power
        self._ensure_weights(run, device)
        smax, b, bucket = self.context_tokens(run), run.max_num_seqs, run.spec.torch.context_bucket_tokens
        need = self._shape.kv_bytes_per_token() * b * smax
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if need + 2 * 1024**3 > free:
                raise MemoryError(f"KV cache {need / 1e9:.1f} GB for batch {b} x {smax} tokens does not fit "
                                  f"({free / 1e9:.1f} GB free after weights)")
        self._state = {
            "cache": KVCache(self._shape, b + self.spare_rows, smax, device, torch.bfloat16),
            "rope": rope_tables(smax, self._shape.resolved_head_dim, self._shape.rope_theta, device, torch.bfloat16),
            "tok": torch.zeros(b, dtype=torch.long, device=device),
            "pos": torch.zeros(b, dtype=torch.long, device=device),
            "stats": torch.zeros((), dtype=torch.long, device=device),
            "smax": smax, "bucket": bucket, "device": device, "graphs": {},
            "gen": torch.Generator(device=device).manual_seed(self.seed),
        }
        if device.type == "cuda" and run.spec.torch.use_cuda_graphs:
            self._capture_graphs()

    def _step(self, bucket: int) -> None:
        s = self._state
        decode_step(self._w, self._shape, s["cache"], s["rope"], s["tok"], s["pos"], bucket, self.comm,
                    s["stats"] if self._shape.num_experts else None,
                    ragged=self._run.spec.torch.attention == "ragged")

    def graph_buckets(self) -> list[int]:
        """Context sizes (tokens) a decode graph is captured for: one per context bucket."""
        s = self._state
        return list(range(s["bucket"], s["smax"] + 1, s["bucket"]))

    def _capture_graphs(self) -> None:
        import torch

        s = self._state
        pool = torch.cuda.graph_pool_handle()
        for bucket in self.graph_buckets():
            s["pos"].zero_()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._step(bucket)
            torch.cuda.current_stream().wait_stream(side)
            s["pos"].zero_()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self._step(bucket)
            s["graphs"][bucket] = graph
        torch.cuda.synchronize()

    def replay(self, context: int) -> None:
        """One decode step for a batch whose longest context is ``context`` tokens (graph if captured)."""
        s = self._state
        size = min(int(math.ceil(context / s["bucket"]) * s["bucket"]), s["smax"])
        if s["graphs"]:
            s["graphs"][size if size in s["graphs"] else s["smax"]].replay()
        else:
            self._step(size)

    def release(self) -> None:
        """Free the KV cache and graphs (weights stay for the next batch size)."""
        import torch

        self._state = {}
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def unload(self) -> None:
        self.release()
        self._w, self._shape, self._full_shape = None, None, None

    # -- work --------------------------------------------------------------------------------------
    def prefill_rows(self, requests: list[Request], rows: Any) -> Any:
        """Prefill ``requests`` into cache rows ``rows`` in chunks of ``prefill_chunk_tokens``; first tokens ``[n]``."""
        import torch

        s, spec = self._state, self._run.spec
        device, longest = s["device"], max(r.input_len for r in requests)
        lens = torch.tensor([r.input_len for r in requests], device=device)
        tokens = torch.randint(0, self._shape.vocab_size, (len(requests), longest), device=device, generator=s["gen"])
        per_chunk = max(1, spec.torch.prefill_chunk_tokens // longest)
        return torch.cat([prefill(self._w, self._shape, s["cache"], s["rope"], tokens[r: r + per_chunk],
                                  lens[r: r + per_chunk], rows[r: r + per_chunk], self.comm)
                          for r in range(0, len(requests), per_chunk)])

    def _round(self, requests: list[Request], timer: Timer) -> tuple[list[Step], list[RequestTiming]]:
        import torch

        s = self._state
        b, out_len = len(requests), requests[0].output_len
        longest = max(r.input_len for r in requests)
        mark0 = timer.mark()
        s["tok"].copy_(self.prefill_rows(requests, torch.arange(b, device=s["device"])))
        s["pos"].copy_(torch.tensor([r.input_len for r in requests], device=s["device"]))
        marks = [mark0, timer.mark()]
        for k in range(out_len - 1):
            self.replay(longest + k + 1)
            marks.append(timer.mark())
        times = timer.resolve(marks)
        steps = [Step(times[0], times[1], b, b, "prefill")]
        steps += [Step(t0, t1, b, b, "decode") for t0, t1 in zip(times[1:], times[2:], strict=False)]
        timings = [RequestTiming(r.request_id, r.input_len, out_len, times[0], times[1], times[-1]) for r in requests]
        return steps, timings

    def _take_round(self, requests: Iterator[Request]) -> list[Request]:
        return [next(requests) for _ in range(self._run.max_num_seqs)]

    def warm_up(self, requests: Iterator[Request], seconds: float) -> None:
        """Decode for about ``seconds`` (rounds cut to 64 tokens) so clocks and caches settle."""
        if seconds <= 0:
            return
        timer = Timer(self._state["device"])
        batch = self._take_round(requests)
        start = time.time()
        while self.agree(time.time() - start < seconds):
            self._round([Request(r.request_id, r.input_len, min(r.output_len, 64)) for r in batch], timer)
            self.sync()

    def generate(self, requests: Iterator[Request], min_seconds: float) -> EngineTrace:
        """Static rounds of ``max_num_seqs`` requests until at least ``min_seconds`` have passed."""
        timer = Timer(self._state["device"])
        self._state["stats"].zero_()
        steps: list[Step] = []
        timings: list[RequestTiming] = []
        while True:
            round_steps, round_timings = self._round(self._take_round(requests), timer)
            steps += round_steps
            timings += round_timings
            if not self.agree(steps[-1].end_s - steps[0].start_s < min_seconds):
                break
        return EngineTrace(requests=timings, steps=steps, notes=self.describe(), extras=self.extras(steps))

    def describe(self) -> str:
        """What the trace's numbers came from (graphs or eager; MoE; TP)."""
        s = self._state
        if not s["graphs"]:
            parts = ["eager decode (no graphs)"]
        elif len(s["graphs"]) == 1 and self._run.spec.torch.attention == "ragged":
            parts = ["one CUDA graph for the decode step (ragged Triton attention over each sequence's own KV)"]
        else:
            parts = [f"CUDA graphs per {s['bucket']}-token context bucket"]
        if self._shape.num_experts:
            parts.append("MoE experts as grouped GEMMs (torch._grouped_mm), each touched expert read once per step")
        if self.comm.world > 1:
            parts.append(f"tensor parallel {self.comm.world} over NCCL, all-reduces inside the graphs")
        return "; ".join(parts)

    def extras(self, steps: list[Step]) -> dict[str, float]:
        """Per-run figures beyond the trace: experts touched per MoE layer per decode step."""
        if not self._shape.num_experts:
            return {}
        decodes = sum(1 for s in steps if s.kind == "decode")
        touched = int(self._state["stats"].item())
        return {"avg_experts_touched_per_layer_step": touched / max(1, decodes * self._shape.num_hidden_layers)}


class Timer:
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
