"""What an attribution is: the result models and the tables that name its items (no algebra here).

See ``estimator/explain/attribution.py`` for how the numbers are computed and ``estimator/explain/render.py``
for how they are shown.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, PrivateAttr

LAYERS = ("algorithm", "software", "hardware", "latent")

#: quantity -> (unit, [(learned target, sign)], identity term or None), per family
QUANTITIES: dict[str, dict[str, tuple[str, list[tuple[str, int]], str | None]]] = {
    "llm": {
        "energy_per_token_joules": ("J/token", [("avg_power_watts", 1), ("output_throughput_tokens_per_sec", -1)],
                                    None),
        "energy_per_request_joules": ("J/request", [("avg_power_watts", 1),
                                                    ("output_throughput_tokens_per_sec", -1)], "output_tokens"),
        "avg_power_watts": ("W (all GPUs)", [("avg_power_watts", 1)], None),
        "output_throughput_tokens_per_sec": ("tokens/s", [("output_throughput_tokens_per_sec", 1)], None),
        "median_itl_ms": ("ms", [("median_itl_ms", 1)], None),
        "tokens_per_sec_per_watt": ("tokens/s/W", [("output_throughput_tokens_per_sec", 1),
                                                   ("avg_power_watts", -1)], None),
    },
    "diffusion": {
        "energy_per_item_joules": ("J/item", [("diffusion_avg_power_watts", 1), ("batch_latency_s", 1)],
                                   "per_item"),
        "batch_latency_s": ("s", [("batch_latency_s", 1)], None),
        "avg_power_watts": ("W (all GPUs)", [("diffusion_avg_power_watts", 1)], None),
        "items_per_sec": ("items/s", [("batch_latency_s", -1)], "batch_items"),
    },
}

#: physics offset name -> (label, layer, factor); an offset missing here is shown as latent/utilization. A target
#: that is an ensemble over several offsets gets one item, the members' mean offset, labelled with all of them.
PHYSICS_ITEMS = {
    "none": ("physics prior: none", "latent", "utilization"),
    "gpu_tdp": ("physics prior: GPU count x TDP", "hardware", "gpu_count"),
    "roofline_throughput_ref": ("physics prior: roofline throughput on the reference GPU", "latent", "utilization"),
    "roofline_latency_ref": ("physics prior: roofline batch latency on the reference GPU", "latent", "utilization"),
    "per_gpu": ("physics prior: power scales with GPU count", "hardware", "gpu_count"),
    "roofline_throughput": ("physics prior: roofline throughput (expected batch / roofline step)", "latent",
                            "utilization"),
    "roofline_step": ("physics prior: roofline decode step", "latent", "utilization"),
    "roofline_latency": ("physics prior: roofline batch latency", "latent", "utilization"),
}
#: identity terms of derived quantities: name -> (label, layer, factor, sign, column of the resolved config)
IDENTITIES = {
    "output_tokens": ("identity: x output tokens per request", "algorithm", "workload", 1, "avg_output_len"),
    "per_item": ("identity: / items per batch", "software", "batch", -1, "batch_size"),
    "batch_items": ("identity: x items per batch", "software", "batch", 1, "batch_size"),
}
#: for the one-line summary: which configuration knobs a factor speaks for
FACTOR_KNOBS = {
    "model": ("model_id",), "workload": ("task", "avg_output_len", "inference_steps", "num_frames"),
    "batch": ("max_num_seqs", "batch_size"),
    "parallelism": ("tensor_parallel", "expert_parallel", "data_parallel", "ulysses_degree", "ring_degree"),
    "precision": ("weight_precision",), "engine": ("engine",), "gpu": ("gpu_model",), "gpu_count": ("num_gpus",),
}


class FeatureValue(BaseModel):
    """One feature inside a group: its value for this configuration and its log-space contribution."""

    name: str
    value: float
    log_contribution: float


class FactorContribution(BaseModel):
    """One item of the waterfall: a feature group, a physics prior, or an identity term (log space, natural log)."""

    group: str = Field(description="'layer/factor', or a 'physics prior: ...' / 'identity: ...' label")
    layer: str
    factor: str
    kind: str = Field(description="'learned' (TreeSHAP), 'physics' (offset or bound), 'identity' (exact term), "
                                  "'neighbours' (nearest measured runs) or 'calibration'")
    log_contribution: float
    multiplier: float = Field(description="exp(log_contribution): the factor this item multiplies by")
    top_features: list[FeatureValue] = Field(default_factory=list, description="largest |log| first (3 at most)")
    inputs: dict[str, float] = Field(default_factory=dict, description="physics prior: the features it reads")
    _features: list[FeatureValue] = PrivateAttr(default_factory=list)


class PartAttribution(BaseModel):
    """One learned target inside a derived quantity (e.g. power, or throughput entering with sign -1)."""

    target: str
    sign: int = Field(description="+1 multiplies the quantity, -1 divides it")
    baseline: float = Field(description="exp(bias + mean physics offset), in the target's units")
    prediction: float = Field(description="the target's prediction, in its units")
    physics_offset: str = Field(description="'+'-joined offset names; an ensemble's prior is their mean")
    items: list[FactorContribution] = Field(description="unsigned: they sum to log(prediction / baseline)")


class Attribution(BaseModel):
    """Why one configuration is predicted to cost what it costs (see the module docstring for the algebra)."""

    configuration: dict[str, Any] = Field(description="resolved configuration (catalog keys, defaults filled)")
    family: str = ""
    quantity: str = ""
    unit: str = ""
    status: str = "ok"
    reason: str = ""
    warnings: list[str] = Field(default_factory=list)
    baseline: float | None = Field(default=None, description="the average configuration, see module docstring")
    baseline_definition: str = ""
    prediction: float | None = None
    log_ratio: float | None = Field(default=None, description="log(prediction / baseline) = sum of items")
    items: list[FactorContribution] = Field(default_factory=list, description="layer/factor groups + priors")
    by_layer: list[FactorContribution] = Field(default_factory=list)
    by_factor: list[FactorContribution] = Field(default_factory=list)
    parts: list[PartAttribution] = Field(default_factory=list)
    summary: str = ""
    _feature_row: dict[str, float] = PrivateAttr(default_factory=dict)


class FeatureDelta(BaseModel):
    """One feature's change between two configurations and the change of its signed contribution."""

    name: str
    base_value: float
    changed_value: float
    delta_log: float


class GroupDelta(BaseModel):
    """The change of one item between two attributions (log space and as a multiplier)."""

    group: str
    layer: str
    factor: str
    kind: str
    base_log: float
    changed_log: float
    delta_log: float
    multiplier: float
    top_features: list[FeatureDelta] = Field(default_factory=list)


class ChangeAttribution(BaseModel):
    """A what-if: which groups moved the prediction, summing exactly to log(changed / base)."""

    base: Attribution
    changed: Attribution
    changed_keys: dict[str, list[Any]] = Field(description="key -> [base value, changed value] (resolved)")
    quantity: str
    unit: str
    log_ratio: float = Field(description="log(changed prediction / base prediction) = sum of deltas")
    ratio: float
    deltas: list[GroupDelta]
    by_layer: list[GroupDelta]
    by_factor: list[GroupDelta]
    part_deltas: dict[str, float] = Field(description="target (or identity term) -> signed delta log")
    summary: str = ""
