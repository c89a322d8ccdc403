"""Pydantic models of what the estimator takes and returns (the CLI's ``--json`` is these, serialised).

Units live in field names, spelled as ML.ENERGY spells its columns (``energy_per_token_joules``,
``median_itl_ms``, ``avg_power_watts``). Every predicted quantity is a :class:`Metric`: the point estimate and
its p10-p90 interval: an 80%-coverage interval from leave-one-model-out log residuals, with tails calibrated
so that 80% of each held-out model's rows fall inside (see ``interval_source`` in the predictor card).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["ok", "error"]
"""``ok``: predicted; ``error``: not predictable (unknown name, impossible configuration, does not fit)."""
Family = Literal["llm", "mllm", "diffusion"]

#: metric column -> (short label, unit) for LLM/MLLM configurations
LLM_METRICS: dict[str, tuple[str, str]] = {
    "energy_per_token_joules": ("J/token", "J"),
    "energy_per_request_joules": ("J/response", "J"),
    "output_throughput_tokens_per_sec": ("tokens/s", "tokens/s"),
    "median_itl_ms": ("median ITL ms", "ms"),
    "avg_power_watts": ("power W", "W"),
    "tokens_per_sec_per_watt": ("tokens/s/W", "tokens/s/W"),
}
#: metric column -> (short label, unit) for diffusion configurations (an item is one image or one video)
DIFFUSION_METRICS: dict[str, tuple[str, str]] = {
    "energy_per_item_joules": ("J/item", "J"),
    "batch_latency_s": ("batch latency s", "s"),
    "items_per_sec": ("items/s", "items/s"),
    "avg_power_watts": ("power W", "W"),
}


class OptionError(ValueError):
    """Options that do not go together. The message names the inputs by their Python names (``max_itl_ms``);
    a front end renders them in its own words with :meth:`render` (the CLI as ``--max-itl-ms``)."""

    def __init__(self, template: str, *fields: str):
        self.template = template
        self.fields = fields
        super().__init__(self.render(lambda name: name))

    def render(self, name_of) -> str:
        """The message with each input named by ``name_of(field name)``."""
        return self.template.format(**{field: name_of(field) for field in self.fields})


def metrics_for(family: str) -> dict[str, tuple[str, str]]:
    """The metric table of a family ('llm' and 'mllm' share one)."""
    return DIFFUSION_METRICS if family == "diffusion" else LLM_METRICS


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metric(_Model):
    """One predicted quantity with its interval, in the unit its name carries. ``p10``/``p90`` bound the
    calibrated 80%-coverage interval (the names say "10% below, 10% above", not raw residual quantiles)."""

    value: float
    p10: float
    p90: float


class Configuration(_Model):
    """One what-if input, ML.ENERGY column names; ``None`` means "as the engine would" / "the task profile"."""

    model_id: str
    task: str
    gpu_model: str
    num_gpus: int = Field(gt=0)
    weight_precision: str | None = None
    max_num_seqs: int | None = Field(default=None, gt=0, description="vLLM max_num_seqs (LLM/MLLM batch cap)")
    tensor_parallel: int | None = Field(default=None, gt=0)
    expert_parallel: int | None = Field(default=None, gt=0)
    data_parallel: int | None = Field(default=None, gt=0)
    avg_input_len: float | None = Field(default=None, gt=0, description="prompt tokens per request")
    avg_output_len: float | None = Field(default=None, gt=0, description="output tokens per request")
    batch_size: int | None = Field(default=None, gt=0, description="diffusion batch (images/videos per batch)")
    inference_steps: int | None = Field(default=None, gt=0)
    image_height: int | None = Field(default=None, gt=0, description="pixels")
    image_width: int | None = Field(default=None, gt=0, description="pixels")
    video_height: int | None = Field(default=None, gt=0, description="pixels")
    video_width: int | None = Field(default=None, gt=0, description="pixels")
    num_frames: int | None = Field(default=None, gt=0)
    ulysses_degree: int | None = Field(default=None, gt=0)
    ring_degree: int | None = Field(default=None, gt=0)

    def as_row(self) -> dict:
        """The configuration as a ``predict_frame`` input row (unset fields left out)."""
        return self.model_dump(exclude_none=True)


class Workload(_Model):
    """What the requests look like: the task profile, or what the user set."""

    task: str
    family: Family
    input_tokens: float | None = Field(default=None, description="mean prompt tokens per request (LLM/MLLM)")
    output_tokens: float | None = Field(default=None, description="mean output tokens per request (LLM/MLLM)")
    inference_steps: int | None = None
    height: int | None = Field(default=None, description="pixels (diffusion)")
    width: int | None = Field(default=None, description="pixels (diffusion)")
    num_frames: int | None = Field(default=None, description="frames per video (text-to-video)")


class Prediction(_Model):
    """A configuration and what it is predicted to cost; ``metrics`` is empty when ``status`` is 'error'."""

    configuration: Configuration
    status: Status
    reason: str = ""
    warnings: list[str] = Field(default_factory=list)
    metrics: dict[str, Metric] = Field(default_factory=dict)
    physics_only: dict[str, float] = Field(default_factory=dict, description="outputs from the physics alone, "
                                           "no learned part and no interval (ttft_physics_ms: a lower bound)")
    calibration: str = Field(default="", description="when a calibration is applied: the levels (with their "
                             "runs) that moved this prediction")

    def value(self, metric: str) -> float:
        """Point estimate of one metric (KeyError when the row was not predicted)."""
        return self.metrics[metric].value


class Estimate(_Model):
    """The time-energy frontier of one model x task x GPU type over GPU counts and batch sizes."""

    model_id: str
    task: str
    gpu_model: str
    family: Family
    workload: Workload
    energy_metric: str = Field(description="the energy axis: energy_per_token_joules or energy_per_item_joules")
    latency_metric: str = Field(description="the latency axis: median_itl_ms or batch_latency_s")
    latency_limit: float | None = Field(default=None, description="in the latency metric's unit")
    configurations: list[Prediction] = Field(description="every feasible configuration that was predicted")
    frontier: list[Prediction] = Field(description="Pareto-optimal in (energy, latency), lowest latency first")
    min_energy: Prediction | None = None
    min_energy_within_limit: Prediction | None = None
    infeasible: list[Prediction] = Field(default_factory=list,
                                         description="configurations that do not fit, with the arithmetic")
    assumptions: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class Delta(_Model):
    """Change of one metric from the base to the changed configuration."""

    base: float | None
    changed: float | None
    absolute: float | None = Field(description="changed - base, in the metric's unit")
    percent: float | None = Field(description="100 x (changed - base) / base")


class WhatIf(_Model):
    """A base configuration and a changed one, side by side."""

    family: Family
    changes: dict[str, str | int | float]
    base: Prediction
    changed: Prediction
    deltas: dict[str, Delta]
    assumptions: list[str] = Field(default_factory=list)


class CostCarbon(_Model):
    """Energy, cost and carbon of one deployment over a day and a month (:mod:`estimator.serve.costs`);
    intervals are p10-p90, facility energy = (GPU at the load profile + host) x PUE."""

    average_load_share_of_peak: float
    gpu_power_kw: Metric = Field(description="GPUs, averaged over the day at the load profile")
    host_power_kw: float = Field(description="CPUs, DRAM, NICs beside the GPUs (constant)")
    facility_power_kw: Metric = Field(description="(GPU + host) x PUE, averaged over the day")
    energy_per_day_kwh: Metric
    energy_per_month_kwh: Metric
    energy_per_response_joules: Metric = Field(description="facility energy per response (or image/video), "
                                                           "idle time included")
    responses_per_day: float
    electricity_usd_per_day: Metric | None = None
    electricity_usd_per_month: Metric | None = None
    gpu_usd_per_day: float | None = None
    total_usd_per_day: Metric | None = Field(default=None, description="electricity + GPU hours")
    usd_per_million_tokens: Metric | None = None
    carbon_kg_per_day: Metric | None = None
    carbon_kg_per_month: Metric | None = None
    carbon_g_per_response: Metric | None = None
    pue: float
    host_watts_per_gpu: float
    idle_watts_per_gpu: float
    electricity_usd_per_kwh: float | None = None
    grid_gco2_per_kwh: float | None = None
    grid_source: str = ""
    assumptions: list[str] = Field(default_factory=list)


class Deployment(_Model):
    """Replicas of one configuration serving a demand; GPU energy only."""

    prediction: Prediction
    replicas: int = Field(ge=1)
    total_gpus: int = Field(ge=1)
    capacity_per_replica: float = Field(description="tokens/s (LLM) or items/s (diffusion) at the chosen batch")
    capacity_total: float
    demand_served: float = Field(description="tokens/s or items/s the fleet serves (<= capacity_total)")
    power_kw: float = Field(description="fleet GPU power at the predicted operating point, kW")
    power_kw_p10: float
    power_kw_p90: float
    energy_per_day_kwh: float = Field(description="power_kw x 24 h")
    throughput_per_watt: float = Field(description="demand_served / fleet power: tokens/s/W or items/s/W")
    extrapolated: bool = Field(default=False, description="the GPU has no training data for this engine")
    latency_checked: float | None = Field(default=None, description="the latency the limit was checked on "
                                                                     "(its p90 at confidence p90)")
    capacity_checked_per_replica: float | None = Field(default=None, description="the capacity replicas were "
                                                                                  "sized on (its p10 at p90)")
    latency_margin_pct: float | None = Field(default=None, description="100 x (limit - checked latency) / limit")
    capacity_margin_pct: float | None = Field(default=None, description="100 x (fleet capacity - demand) / demand")
    risk_latency: float | None = Field(default=None, description="chance the latency exceeds the limit (0..1)")
    risk_capacity: float | None = Field(default=None, description="chance the fleet falls short of demand (0..1)")
    risk: float | None = Field(default=None, description="chance of either miss (independent), 0..1")
    distinguishable_from_next: bool | None = Field(default=None, description="False when this deployment's "
                                                   "power lies inside the next one's p10-p90 interval (or back)")
    costs: CostCarbon | None = None


class Plan(_Model):
    """Capacity plan: the lowest-energy feasible deployment for a demand, or the demand a budget serves."""

    model_id: str
    task: str
    family: Family
    workload: Workload
    demand_unit: str = Field(description="'tokens/s' (LLM/MLLM) or 'items/s' (diffusion)")
    demand: float | None = Field(default=None, description="in demand_unit; None when only a budget is given")
    demand_requests_per_sec: float | None = None
    latency_metric: str
    latency_limit: float | None = None
    power_budget_kw: float | None = None
    gpu_budget: int | None = None
    gpus_considered: list[str]
    chosen: Deployment | None = None
    alternatives: list[Deployment] = Field(default_factory=list, description="distinct from the chosen: the best "
                                           "per GPU type and the chosen type's runner-up, best first")
    confidence: str = Field(default="p90", description="'p90': limit checked on the latency's p90 and replicas "
                                                       "sized on capacity's p10; 'median': point values")
    excluded_gpus: list[str] = Field(default_factory=list, description="left out: no training data for the engine")
    closest_latency: float | None = Field(default=None, description="when no configuration meets the limit: the "
                                                                    "lowest checked latency, in the limit's unit")
    reason: str = Field(default="", description="why nothing was chosen, when nothing was")
    assumptions: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
