"""The real vLLM engine (offline ``vllm.LLM``), for GPU hosts that have vLLM installed.

vLLM is imported lazily, inside :meth:`VllmEngine.load`. Requests go in as token ids with
``SamplingParams(max_tokens=n, min_tokens=n, ignore_eos=True)`` so every request produces exactly its drawn
output length; vLLM batches them continuously up to ``max_num_seqs``. Per-request timings come from
``RequestOutput.metrics`` (wall-clock seconds: arrival, first scheduled, first token, finished); the offline
engine reports no per-step times, so ITL percentiles are over per-request mean ITLs and the achieved batch
is the time-weighted count of running requests. Tested in CI through a fake with the same interface.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

from measure.harness import EngineTrace, RequestTiming
from measure.schema import RunConfig
from measure.workloads import Request


class VllmEngine:
    """Engine ``vllm``: continuous batching in the offline ``LLM`` engine.

    Args:
        llm_factory: builds the engine from keyword arguments (default ``vllm.LLM``); tests pass a fake.
        sampling_params: builds one request's sampling parameters (default ``vllm.SamplingParams``).
        version_string: the engine version (default ``vllm.__version__``).
    """

    name = "vllm"
    batching: Literal["static", "continuous"] = "continuous"

    def __init__(
        self,
        llm_factory: Callable[..., Any] | None = None,
        sampling_params: Callable[..., Any] | None = None,
        version_string: str | None = None,
    ):
        self._factory = llm_factory
        self._sampling = sampling_params
        self._version = version_string
        self._llm: Any | None = None
        self._run: RunConfig | None = None
        self.weights: Literal["random", "pretrained"] = "pretrained"

    def version(self) -> str:
        if self._version is None:
            import vllm

            self._version = vllm.__version__
        return f"vllm {self._version}"

    def versions(self) -> dict[str, str]:
        try:
            import torch

            return {"torch_version": torch.__version__, "cuda_version": torch.version.cuda or ""}
        except ImportError:
            return {}

    def load(self, run: RunConfig) -> None:
        """Start ``LLM`` for the run's model and batch (random weights use ``load_format="dummy"``)."""
        if self._factory is None or self._sampling is None:
            import vllm

            self._factory = self._factory or vllm.LLM
            self._sampling = self._sampling or vllm.SamplingParams
        spec = run.spec
        self.weights = spec.model.weights
        kwargs: dict[str, Any] = {
            "model": spec.model.model_id,
            "tensor_parallel_size": spec.tensor_parallel,
            "max_num_seqs": run.max_num_seqs,
            "dtype": spec.model.weight_precision,
            "gpu_memory_utilization": spec.vllm.gpu_memory_utilization,
            "enforce_eager": spec.vllm.enforce_eager,
            "enable_chunked_prefill": spec.vllm.enable_chunked_prefill,
            "seed": spec.workload.seed,
        }
        if spec.vllm.max_model_len:
            kwargs["max_model_len"] = spec.vllm.max_model_len
        if spec.model.weights == "random":
            kwargs["load_format"] = "dummy"
        self._llm = self._factory(**kwargs)
        self._run = run

    def _submit(self, batch: list[Request]) -> list[Any]:
        prompts = [
            {"prompt_token_ids": [(7 * r.request_id + k) % 1000 + 10 for k in range(r.input_len)]}
            for r in batch
        ]
        params = [
            self._sampling(max_tokens=r.output_len, min_tokens=r.output_len, ignore_eos=True, temperature=0.0)
            for r in batch
        ]
        return self._llm.generate(prompts, params, use_tqdm=False)

    def warm_up(self, requests: Iterator[Request], seconds: float) -> None:
        """One short batch (16 output tokens per request) to compile and fill caches."""
        if seconds > 0:
            batch = [next(requests) for _ in range(self._run.max_num_seqs)]
            self._submit([Request(r.request_id, r.input_len, min(16, r.output_len)) for r in batch])

    def generate(self, requests: Iterator[Request], min_seconds: float) -> EngineTrace:
        """Submit ``workload.num_requests`` (default 4 x max_num_seqs) requests at once; return timings."""
        spec = self._run.spec
        n = spec.workload.num_requests or 4 * self._run.max_num_seqs
        batch = [next(requests) for _ in range(n)]
        outputs = self._submit(batch)
        timings = []
        for request, out in zip(batch, outputs, strict=True):
            m = getattr(out, "metrics", None)
            if m is None:
                raise RuntimeError(
                    "vLLM returned no per-request metrics (RequestOutput.metrics is None); "
                    "use an engine version that reports them"
                )
            admitted = getattr(m, "first_scheduled_time", None) or m.arrival_time
            timings.append(
                RequestTiming(
                    request.request_id,
                    len(out.prompt_token_ids),
                    len(out.outputs[0].token_ids),
                    admitted,
                    m.first_token_time,
                    m.finished_time,
                )
            )
        return EngineTrace(
            requests=timings, notes="ITL percentiles over per-request mean ITLs (offline engine)"
        )

    def release(self) -> None:
        self._llm = None
