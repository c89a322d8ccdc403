"""Continuous batching for the torch backend (engine ``torch-cudagraph``, ``batching = "continuous"``).

Like vLLM's scheduler with ``max_num_seqs`` and an infinite request rate (ML.ENERGY's setting): requests with
their own prompt and output lengths (the workload's distributions) wait in a queue; each iteration first admits
waiting requests into free slots (while the iteration's new prompt tokens stay within ``prefill_chunk_tokens``
and the KV block pool has room for their prompts), prefills them, then runs one decode step for every running
sequence; a sequence leaves when it has produced its output length (EOS ignored, as vLLM's benchmark does with
``ignore_eos``) and its slot and KV blocks are reused at the next iteration.

KV cache: one row of ``max_context`` positions per slot (:class:`~measure.backends.torch_dense.KVCache`), with
vLLM-style accounting in ``kv_block_tokens``-token blocks (:class:`BlockPool`) that gates admission; the pool
holds every slot's longest context, so no sequence is ever preempted. Decode attention is the ragged Triton
kernel (:mod:`measure.backends.ragged_attention`), which reads each sequence's own context only; the decode step
over all ``max_num_seqs`` slots is one CUDA graph (idle slots compute and are discarded, as vLLM pads a batch to
its captured size).

Timing: one engine step is one iteration (admission prefill plus the decode step), so its duration is the gap
between consecutive tokens of a running request, prefill stalls included, as vLLM's ITL is. TTFT runs from
admission into the running batch to the end of the prefill that produced the first token.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from measure.backends.torch_backend import Timer, TorchCudaGraphEngine
from measure.harness import EngineTrace, RequestTiming, Step
from measure.schema import RunConfig
from measure.workloads import Request


class BlockPool:
    """KV blocks of ``block_tokens`` tokens: how many a sequence of a given length holds, and how many are free."""

    def __init__(self, num_blocks: int, block_tokens: int):
        self.free, self.block_tokens, self.peak_used, self.total = num_blocks, block_tokens, 0, num_blocks

    def blocks_for(self, tokens: int) -> int:
        return math.ceil(tokens / self.block_tokens)

    def take(self, n: int) -> bool:
        """Reserve ``n`` blocks; False (nothing reserved) when fewer are free."""
        if n > self.free:
            return False
        self.free -= n
        self.peak_used = max(self.peak_used, self.total - self.free)
        return True

    def give(self, n: int) -> None:
        self.free += n


@dataclass
class Running:
    """A sequence in a slot: its request, tokens produced so far, blocks held, and its trace mark indices."""

    request: Request
    produced: int
    blocks: int
    admitted_mark: int
    first_mark: int


class Scheduler:
    """Host-side continuous-batching state: slots, the waiting queue and the KV block pool (no torch)."""

    def __init__(self, slots: int, pool: BlockPool, prefill_token_budget: int):
        self.slots: list[Running | None] = [None] * slots
        self.pool, self.budget = pool, prefill_token_budget
        self.waiting: deque[Request] = deque()

    @property
    def running(self) -> int:
        return sum(s is not None for s in self.slots)

    def admit(self, requests: Iterator[Request], mark: int) -> list[tuple[int, Request]]:
        """Move waiting requests into free slots (FCFS) within the prefill token budget and the block pool."""
        admitted, tokens = [], 0
        for slot, state in enumerate(self.slots):
            if state is not None:
                continue
            if not self.waiting:
                self.waiting.append(next(requests))
            req = self.waiting[0]
            need = self.pool.blocks_for(req.input_len + 1)
            if (admitted and tokens + req.input_len > self.budget) or not self.pool.take(need):
                break
            self.waiting.popleft()
            tokens += req.input_len
            self.slots[slot] = Running(req, 0, need, mark, mark)
            admitted.append((slot, req))
        return admitted

    def after_step(self, admitted_slots: set[int]) -> tuple[list[Running], int]:
        """Account one iteration (prefill of ``admitted_slots``, then one decode step over every slot): a new
        sequence got its first token from prefill and its second from the decode step, every other running one
        token more. Grow block holdings; free the sequences that are done. Returns (done, tokens produced)."""
        done, produced = [], 0
        for slot, state in enumerate(self.slots):
            if state is None:
                continue
            before = state.produced
            state.produced = min(state.request.output_len, before + (2 if slot in admitted_slots else 1))
            produced += state.produced - before
            want = self.pool.blocks_for(state.request.input_len + state.produced)
            if want > state.blocks and self.pool.take(want - state.blocks):
                state.blocks = want
            if state.produced >= state.request.output_len:
                self.pool.give(state.blocks)
                self.slots[slot] = None
                done.append(state)
        return done, produced

    def context(self) -> int:
        """The longest context among running sequences (tokens)."""
        return max((s.request.input_len + s.produced for s in self.slots if s is not None), default=1)


class ContinuousBatchingEngine(TorchCudaGraphEngine):
    """The torch backend with continuous batching (see the module docstring)."""

    batching: Literal["static", "continuous"] = "continuous"
    spare_rows = 1  # a scratch KV row for the padding rows of a graphed prefill

    def load(self, run: RunConfig) -> None:
        """Weights, a KV row per slot, the block pool, the scheduler, the decode graph and the prefill graphs."""
        super().load(run)
        opts, smax = run.spec.torch, self._state["smax"]
        pool = BlockPool(run.max_num_seqs * math.ceil(smax / opts.kv_block_tokens), opts.kv_block_tokens)
        self._state["sched"] = Scheduler(run.max_num_seqs, pool, opts.prefill_chunk_tokens)
        self._state["timer"] = Timer(self._state["device"])
        self._state["marks"] = []
        self._state["prefill_graphs"] = {}
        if self._state["graphs"]:
            self._capture_prefill_graphs()

    def prefill_buckets(self) -> list[tuple[int, int]]:
        """(rows, prompt length) shapes a prefill graph is captured for: rows 1..64 and lengths 32..input_len_max
        in powers of two, within the prefill token budget. Joiners are padded up to the nearest bucket."""
        run = self._run
        lengths, length = [], 32
        while True:
            lengths.append(length)
            if length >= run.spec.workload.input_len_max:
                break
            length *= 2
        rows = [r for r in (1, 2, 4, 8, 16, 32, 64) if r <= run.max_num_seqs]
        budget = run.spec.torch.prefill_chunk_tokens
        return [(r, n) for r in rows for n in lengths if r * n <= max(budget, n)]

    def _capture_prefill_graphs(self) -> None:
        """One CUDA graph per prefill bucket: without them a joiner's prefill is ~600 eager launches per
        iteration, and the host, not the GPU, sets the pace (seen on the H200: 60-68% GPU utilisation)."""
        import torch

        from measure.backends.torch_dense import prefill

        s = self._state
        scratch = self._run.max_num_seqs
        pool = torch.cuda.graph_pool_handle()
        for rows, length in self.prefill_buckets():
            buf = {"tokens": torch.zeros(rows, length, dtype=torch.long, device=s["device"]),
                   "lens": torch.full((rows,), length, dtype=torch.long, device=s["device"]),
                   "rows": torch.full((rows,), scratch, dtype=torch.long, device=s["device"]),
                   "out": torch.zeros(rows, dtype=torch.long, device=s["device"])}

            def step(b: dict = buf) -> None:
                b["out"].copy_(prefill(self._w, self._shape, s["cache"], s["rope"], b["tokens"], b["lens"],
                                       b["rows"], self.comm))

            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                step()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                step()
            buf["graph"] = graph
            s["prefill_graphs"][(rows, length)] = buf
        torch.cuda.synchronize()

    def _prefill(self, reqs: list[Request], slots: list[int]) -> Any:
        """First tokens of ``reqs`` prefilled into ``slots``: a padded graph replay when a bucket fits."""
        import torch

        s = self._state
        n, longest = len(reqs), max(r.input_len for r in reqs)
        fits = [key for key in s["prefill_graphs"] if key[0] >= n and key[1] >= longest]
        if not fits:
            return self.prefill_rows(reqs, torch.tensor(slots, device=s["device"]))
        buf = s["prefill_graphs"][min(fits, key=lambda key: key[0] * key[1])]
        rows = len(buf["lens"])
        torch.randint(0, self._shape.vocab_size, buf["tokens"].shape, out=buf["tokens"], generator=s["gen"],
                      device=s["device"])
        buf["lens"].copy_(torch.tensor([r.input_len for r in reqs] + [1] * (rows - n)), non_blocking=True)
        buf["rows"].copy_(torch.tensor(slots + [self._run.max_num_seqs] * (rows - n)), non_blocking=True)
        buf["graph"].replay()
        return buf["out"][:n]

    def graph_buckets(self) -> list[int]:
        """Ragged attention needs one graph (the kernel reads lengths on the device); SDPA one per bucket."""
        s = self._state
        if self._run.spec.torch.attention == "ragged":
            return [s["smax"]]
        return super().graph_buckets()

    def _iteration(self, requests: Iterator[Request]) -> tuple[Step | None, list[tuple[Running, int]]]:
        """Admit, prefill, decode once. Returns the step (times as mark indices) and finished sequences."""
        import torch

        s = self._state
        sched, timer, marks = s["sched"], s["timer"], s["marks"]
        start = len(marks)
        marks.append(timer.mark())
        admitted = sched.admit(requests, start)
        if admitted:
            slots, reqs = [slot for slot, _ in admitted], [req for _, req in admitted]
            rows = torch.tensor(slots, device=s["device"])
            s["tok"].index_copy_(0, rows, self._prefill(reqs, slots))
            s["pos"].index_copy_(0, rows, torch.tensor([r.input_len for r in reqs], device=s["device"]))
        marks.append(timer.mark())
        for slot, _ in admitted:
            sched.slots[slot].first_mark = start + 1
        running = sched.running
        self.replay(sched.context() + 1)
        marks.append(timer.mark())
        done, produced = sched.after_step({slot for slot, _ in admitted})
        return Step(start, start + 2, running, produced, "decode"), [(d, start + 2) for d in done]

    def _run_loop(self, requests: Iterator[Request], seconds: float) -> tuple[list[Step], list[tuple[Running, int]]]:
        """Iterate until ``seconds`` of GPU time have passed, keeping the host at most 16 iterations ahead."""
        s = self._state
        steps, finished = [], []
        t0 = None
        while True:
            step, done = self._iteration(requests)
            steps.append(step)
            finished += done
            if len(steps) % 16 == 0:
                lag = s["marks"][steps[-16].end_s]
                elapsed = s["timer"].resolve([lag])[0]
                t0 = t0 if t0 is not None else s["timer"].resolve([s["marks"][steps[0].start_s]])[0]
                if not self.agree(elapsed - t0 < seconds):
                    break
        return steps, finished

    def warm_up(self, requests: Iterator[Request], seconds: float) -> None:
        """Run the scheduler for about ``seconds`` so the batch reaches its steady mix of lengths."""
        if seconds > 0:
            self._run_loop(requests, seconds)
            self.sync()

    def generate(self, requests: Iterator[Request], min_seconds: float) -> EngineTrace:
        """Continuous batching for at least ``min_seconds``; requests admitted during warm-up carry on."""
        s = self._state
        s["stats"].zero_()
        first = len(s["marks"])
        steps, finished = self._run_loop(requests, min_seconds)
        times = s["timer"].resolve(s["marks"])
        trace_steps = [Step(times[st.start_s], times[st.end_s], st.batch_size, st.new_tokens, st.kind) for st in steps]
        timings = []
        for run_state, end_mark in finished:
            r = run_state.request
            seen = run_state.admitted_mark >= first
            admitted = times[run_state.admitted_mark] if seen else float("nan")
            first_token = times[run_state.first_mark] if seen else float("nan")
            timings.append(RequestTiming(r.request_id, r.input_len, r.output_len, admitted, first_token,
                                         times[end_mark]))
        graphs = len(s["prefill_graphs"])
        notes = f"{self.describe()}; prefill graphs for {graphs} (rows, length) buckets; KV blocks of " \
                f"{s['sched'].pool.block_tokens} tokens, peak " \
                f"{s['sched'].pool.peak_used}/{s['sched'].pool.total} used"
        return EngineTrace(requests=timings, steps=trace_steps, notes=notes, extras=self.extras(trace_steps))
