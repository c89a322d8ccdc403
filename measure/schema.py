"""What to run (:class:`SweepSpec`) and what one measured run produced (:class:`RunRecord`).

A SweepSpec is read from TOML and validated with pydantic ``extra="forbid"`` so a misspelt key fails loudly.
One spec expands to one :class:`RunConfig` per batch size. A RunRecord carries the canonical run columns,
spelt and in the units of the ML.ENERGY v3 data (``energy_per_token_joules``, ``avg_power_watts``, ...), plus
the stability verdict and the provenance of the measurement.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Engine = Literal["torch-cudagraph", "vllm"]
MeterName = Literal["auto", "zeus", "nvml"]

IDENTITY_REL_TOL = 1e-6


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelShape(_Strict):
    """The shape of a Llama/Qwen-style dense decoder, with HF ``config.json`` field names.

    Only the shape matters for time and energy with random weights; values are copied from each model's
    published ``config.json``. RoPE scaling variants are ignored (same cost).
    """

    hidden_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    head_dim: int | None = Field(default=None, gt=0)
    intermediate_size: int = Field(ge=0, description="dense MLP width (0 for an all-MoE model)")
    vocab_size: int = Field(gt=0)
    rope_theta: float = 500000.0
    rms_norm_eps: float = 1e-5
    qk_norm: bool = False
    tie_word_embeddings: bool = False
    num_experts: int = Field(default=0, ge=0, description="routed experts per layer (0: dense MLP)")
    num_experts_per_tok: int = Field(default=0, ge=0)
    moe_intermediate_size: int = Field(default=0, ge=0)
    num_shared_experts: int = Field(default=0, ge=0)
    norm_topk_prob: bool = True

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelShape:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.num_experts and not (0 < self.num_experts_per_tok <= self.num_experts and self.moe_intermediate_size):
            raise ValueError("an MoE shape needs 0 < num_experts_per_tok <= num_experts and moe_intermediate_size")
        return self

    @property
    def resolved_head_dim(self) -> int:
        """Per-head dimension (``hidden_size // num_attention_heads`` when not given)."""
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def num_params(self) -> int:
        """Parameter count (embeddings, attention, MLP, norms, LM head)."""
        h, d = self.hidden_size, self.resolved_head_dim
        q, kv = self.num_attention_heads * d, self.num_key_value_heads * d
        mlp = 3 * h * self.intermediate_size
        if self.num_experts:
            experts = self.num_experts + self.num_shared_experts
            mlp = 3 * h * self.moe_intermediate_size * experts + h * self.num_experts
        per_layer = h * (q + 2 * kv) + q * h + mlp + 2 * h
        if self.qk_norm:
            per_layer += 2 * d
        embed = self.vocab_size * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return embed + head + self.num_hidden_layers * per_layer + h

    def weight_bytes(self, bytes_per_param: int = 2) -> int:
        """Bytes of weights at ``bytes_per_param`` (2 for bfloat16)."""
        return self.num_params * bytes_per_param

    def kv_bytes_per_token(self, bytes_per_value: int = 2) -> int:
        """KV-cache bytes per token of context over all layers (keys and values)."""
        return (
            2 * self.num_hidden_layers * self.num_key_value_heads * self.resolved_head_dim * bytes_per_value
        )


def shape_from_catalog(model_id: str) -> ModelShape:
    """The decoder shape of a catalog model (values from its published config, with sources, in
    ``models/catalog/architectures.toml``). The torch backend runs dense GQA/MHA decoders only.

    Raises:
        KeyError: unknown model id (the catalog's message lists close matches).
        ValueError: the architecture is one the torch backend cannot build (MoE, MLA, hybrid, sliding window).
    """
    from estimator.catalog.catalog import load_catalog

    catalog = load_catalog()
    arch = catalog.models[catalog.resolve("model", model_id)]
    unsupported = [what for what, flag in (("MLA attention", arch.attention == "mla"),
                                           ("Mamba layers", arch.num_mamba_layers > 0),
                                           ("sliding-window layers", arch.num_sliding_window_layers > 0),
                                           ("not an LLM", arch.kind == "diffusion")) if flag]
    if unsupported:
        raise ValueError(f"the torch backend builds GQA/MHA decoders (dense or MoE) only; {model_id} has "
                         f"{', '.join(unsupported)}; "
                         f"give [model.config] in the spec or use the vllm backend")
    return ModelShape(hidden_size=arch.hidden_size, num_hidden_layers=arch.num_layers,
                      num_attention_heads=arch.num_attention_heads,
                      num_key_value_heads=arch.num_kv_heads or arch.num_attention_heads,
                      head_dim=arch.head_dim or None, intermediate_size=arch.intermediate_size,
                      vocab_size=arch.vocab_size, qk_norm=arch.qk_norm, tie_word_embeddings=arch.tie_word_embeddings,
                      **_moe_fields(arch))


def _moe_fields(arch: object) -> dict[str, int | bool]:
    """The MoE fields of a catalog architecture (empty for a dense one)."""
    if getattr(arch, "architecture", "") != "moe":
        return {}
    return {"num_experts": arch.num_experts, "num_experts_per_tok": arch.num_experts_per_token,
            "moe_intermediate_size": arch.moe_intermediate_size,
            "num_shared_experts": getattr(arch, "num_shared_experts", 0) or 0,
            "norm_topk_prob": bool(getattr(arch, "norm_topk_prob", True))}


def resolve_shape(model_id: str, config: ModelShape | None = None) -> ModelShape:
    """The shape for ``model_id``: the explicit ``config`` if given, else the catalog's entry (exact key or alias).

    Raises:
        KeyError: unknown model id and no config; the message lists close matches.
    """
    if config is not None:
        return config
    return shape_from_catalog(model_id)


class ModelSection(_Strict):
    """The model to run: a catalog key (HF id) and, optionally, its shape."""

    model_id: str
    config: ModelShape | None = None
    weights: Literal["random", "pretrained"] = "random"
    weight_precision: Literal["bfloat16"] = "bfloat16"


class WorkloadSection(_Strict):
    """Seeded request lengths. Input lengths are log-normal, clipped; outputs forced or log-normal.

    ``forced_output_len`` makes every request produce exactly that many tokens (static batches); without it
    output lengths are drawn from the output distribution (continuous-batching engines).
    """

    task: str = "lm-arena-chat"
    seed: int = 0
    input_len_median: int = Field(default=120, gt=0)
    input_len_sigma: float = Field(default=0.8, ge=0)
    input_len_min: int = Field(default=8, gt=0)
    input_len_max: int = Field(default=384, gt=0)
    output_len_median: int = Field(default=400, gt=0)
    output_len_sigma: float = Field(default=0.0, ge=0)
    output_len_min: int = Field(default=1, gt=0)
    output_len_max: int = Field(default=4096, gt=0)
    output_len_histogram: str | None = Field(
        default=None,
        description="draw output lengths from a published histogram: a datasets/mlenergy-v3/models/*.json file "
        "(its output_length_distribution), clipped to output_len_min..output_len_max",
    )
    forced_output_len: int | None = Field(default=None, gt=0)
    num_requests: int | None = Field(default=None, gt=0, description="continuous engines; default 4x batch")


class HarnessSection(_Strict):
    """Warm-up and stability criteria (ML.ENERGY drops runs under 20 s or below 0.85 batch occupancy)."""

    warmup_s: float = Field(default=2.0, ge=0)
    min_steady_state_s: float = Field(default=10.0, gt=0)
    min_batch_fraction: float = Field(default=0.85, gt=0, le=1)
    min_gpu_utilization_pct: float = Field(default=80.0, ge=0, le=100)
    max_power_drift_fraction: float = Field(default=0.05, gt=0)
    sample_period_s: float = Field(default=0.1, gt=0)
    meter: MeterName = "auto"


class TorchOptions(_Strict):
    """Options of the torch CUDA-graph backend."""

    context_bucket_tokens: int = Field(default=128, gt=0)
    prefill_chunk_tokens: int = Field(
        default=8192, gt=0, description="padded prompt tokens per prefill chunk"
    )
    use_cuda_graphs: bool = True
    batching: Literal["static", "continuous"] = Field(
        default="static", description="static rounds (forced output length) or continuous batching"
    )
    attention: Literal["bucket-sdpa", "ragged"] = Field(
        default="bucket-sdpa", description="decode attention: SDPA over a context bucket, or the ragged Triton kernel"
    )
    kv_block_tokens: int = Field(default=16, gt=0, description="continuous batching: KV block size (tokens)")
    device: str = Field(default="cuda", description='"cuda" (the spec\'s GPU) or "cpu" (smoke tests only)')


class VllmOptions(_Strict):
    """Options passed to ``vllm.LLM`` (offline engine)."""

    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    max_model_len: int | None = None
    enforce_eager: bool = False
    enable_chunked_prefill: bool = True


class SweepSpec(_Strict):
    """One sweep: a model x workload x GPUs x engine over several batch sizes."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    engine: Engine = "torch-cudagraph"
    gpu_indices: list[int] = Field(default=[0], min_length=1)
    tensor_parallel: int = Field(default=1, gt=0)
    batch_sizes: list[int] = Field(min_length=1)
    model: ModelSection
    workload: WorkloadSection = WorkloadSection()
    harness: HarnessSection = HarnessSection()
    torch: TorchOptions = TorchOptions()
    vllm: VllmOptions = VllmOptions()

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        if any(b <= 0 for b in self.batch_sizes):
            raise ValueError("batch sizes must be positive")
        if self.tensor_parallel != len(self.gpu_indices):
            raise ValueError("tensor_parallel must equal the number of gpu_indices")
        resolve_shape(self.model.model_id, self.model.config)
        return self

    @classmethod
    def from_toml(cls, path: str | Path) -> SweepSpec:
        """Read and validate a spec file (TOML)."""
        with open(path, "rb") as f:
            return cls.model_validate(tomllib.load(f))

    def spec_hash(self) -> str:
        """sha256 (first 16 hex digits) of the canonical JSON of the validated spec."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def shape(self) -> ModelShape:
        return resolve_shape(self.model.model_id, self.model.config)

    def expand(self) -> list[RunConfig]:
        """One RunConfig per batch size, in the order given."""
        return [RunConfig(spec=self, max_num_seqs=b) for b in self.batch_sizes]


class RunConfig(_Strict):
    """One configuration of a sweep: the spec at one configured batch size (``max_num_seqs``)."""

    spec: SweepSpec
    max_num_seqs: int = Field(gt=0)

    @property
    def key(self) -> str:
        return f"{self.spec.name}-bs{self.max_num_seqs}"


class Provenance(_Strict):
    """Where and how a record was measured."""

    gpu_name: str
    driver_version: str
    power_limit_watts: float
    engine: str
    engine_version: str
    torch_version: str = ""
    cuda_version: str = ""
    git_sha: str = ""
    spec_hash: str
    config_key: str = Field(default="", description="measure.config_key of this configuration ('' before keys)")
    started_at: str = Field(description="ISO 8601 time the run started")
    hostname: str = ""
    meter: Literal["zeus", "nvml", "fake"]


class RunRecord(BaseModel):
    """One measured run, canonical columns (ML.ENERGY spelling and units) plus verdict and provenance.

    Energy and power are sums over the run's GPUs over the steady-state window. ``idle_power_watts`` is
    the power with a CUDA context held and nothing running; it is recorded, never subtracted.
    """

    model_config = ConfigDict(extra="forbid")

    model_id: str
    task: str
    gpu_model: str
    num_gpus: int
    max_num_seqs: int
    tensor_parallel: int = 1
    expert_parallel: int = 1
    data_parallel: int = 1
    weight_precision: str = "bfloat16"
    avg_batch_size: float
    avg_input_len: float
    avg_output_len: float
    avg_power_watts: float
    energy_per_token_joules: float
    energy_per_request_joules: float
    output_throughput_tokens_per_sec: float
    median_itl_ms: float
    p90_itl_ms: float
    p95_itl_ms: float
    p99_itl_ms: float
    median_ttft_ms: float | None = Field(default=None, description="time to first token, median (ms)")
    p90_ttft_ms: float | None = None
    p99_ttft_ms: float | None = None
    power_per_gpu_watts: list[float] | None = Field(
        default=None, description="window mean power of each GPU, in gpu_indices order (W); sums to avg_power_watts"
    )
    avg_experts_touched_per_layer_step: float | None = Field(
        default=None, description="MoE: distinct experts a decode step reads per layer, averaged over the window"
    )
    engine: str
    engine_version: str
    batching: Literal["static", "continuous"]
    weights: Literal["random", "pretrained"]
    is_stable: bool
    unstable_reason: str = ""
    steady_state_duration_s: float
    gpu_utilization_pct: float | None = Field(description="mean NVML GPU utilisation in the window (%)")
    sm_clock_mhz: float | None
    idle_power_watts: float | None = Field(description="None when not measured (measure run --idle-s 0)")
    window_energy_joules: float
    output_tokens_in_window: int = 0
    sampled_energy_joules: float | None = Field(
        default=None, description="the same window by integrating power samples (meter self-check)"
    )
    harness_overhead_fraction: float | None = None
    notes: str = ""
    provenance: Provenance

    @field_validator("idle_power_watts", mode="before")
    @classmethod
    def _idle_not_measured(cls, value: object) -> object:
        """NaN (what ``--idle-s 0`` used to write) means 'not measured': stored as None, never as NaN."""
        return None if isinstance(value, float) and math.isnan(value) else value

    @model_validator(mode="after")
    def _identities(self) -> RunRecord:
        if self.is_stable == bool(self.unstable_reason):
            raise ValueError("is_stable must be True exactly when unstable_reason is empty")
        if self.output_tokens_in_window > 0 or self.energy_per_token_joules > 0:
            _close(
                self.energy_per_token_joules * self.output_throughput_tokens_per_sec,
                self.avg_power_watts,
                "energy_per_token_joules * output_throughput_tokens_per_sec != avg_power_watts",
            )
            _close(
                self.energy_per_token_joules * self.avg_output_len,
                self.energy_per_request_joules,
                "energy_per_token_joules * avg_output_len != energy_per_request_joules",
            )
        return self


def _close(a: float, b: float, message: str) -> None:
    if abs(a - b) > IDENTITY_REL_TOL * max(abs(a), abs(b), 1e-300):
        raise ValueError(f"{message} ({a!r} vs {b!r})")
