"""The vLLM backend through a fake ``LLM`` with vLLM's offline interface and scripted request timings."""

from __future__ import annotations

from types import SimpleNamespace

from measure_fakes import FakeClock, FakeMeter, fake_provenance, make_spec, run_first

from measure.backends.vllm_backend import VllmEngine


class FakeLLM:
    """``LLM.generate(prompts, sampling_params, use_tqdm)`` with continuous batching on a fake clock:
    up to ``max_num_seqs`` run at once, each decode step takes ``itl_s``."""

    def __init__(self, clock: FakeClock, itl_s: float = 0.01, **kwargs):
        self.clock, self.itl_s, self.kwargs = clock, itl_s, kwargs

    def generate(self, prompts, params, use_tqdm=True):
        cap = self.kwargs["max_num_seqs"]
        queue = list(range(len(prompts)))
        running: dict[int, list] = {}
        results = [None] * len(prompts)
        while queue or running:
            while queue and len(running) < cap:
                k = queue.pop(0)
                running[k] = [self.clock(), None, 0]
            self.clock.advance(self.itl_s)
            for k in list(running):
                state = running[k]
                state[2] += 1
                if state[1] is None:
                    state[1] = self.clock()
                if state[2] == params[k].max_tokens:
                    metrics = SimpleNamespace(
                        arrival_time=0.0,
                        first_scheduled_time=state[0],
                        first_token_time=state[1],
                        finished_time=self.clock(),
                    )
                    results[k] = SimpleNamespace(
                        prompt_token_ids=prompts[k]["prompt_token_ids"],
                        metrics=metrics,
                        outputs=[SimpleNamespace(token_ids=[1] * state[2])],
                    )
                    del running[k]
        return results


def test_vllm_engine_builds_llm_args_and_measures_continuous_batching():
    """The real engine's arguments (max_num_seqs, dummy weights) and the window from request intervals."""
    clock = FakeClock()
    made = {}

    def factory(**kwargs):
        made.update(kwargs)
        return FakeLLM(clock, **kwargs)

    engine = VllmEngine(llm_factory=factory, sampling_params=SimpleNamespace, version_string="0.11.0")
    spec = make_spec(
        engine="vllm",
        batch_sizes=[8],
        workload={"forced_output_len": 100, "num_requests": 64},
        harness={"min_steady_state_s": 1.0, "min_gpu_utilization_pct": 0.0},
    )
    prov = fake_provenance(spec, engine="vllm", engine_version="vllm 0.11.0")
    record = run_first(spec, engine, FakeMeter(clock, power_watts=400.0), clock, provenance=prov, sampler=None).record
    assert made["max_num_seqs"] == 8 and made["load_format"] == "dummy"
    assert record.engine == "vllm" and record.batching == "continuous"
    assert record.avg_batch_size >= 0.85 * 8
    assert record.median_itl_ms == __import__("pytest").approx(10.0)
    # 64 requests x 100 tokens in 8 waves of 1 s; all full: energy = 400 W x 8 s over 6400 tokens
    assert record.energy_per_token_joules == __import__("pytest").approx(400 * 8 / 6400, rel=1e-9)
