"""What a diffusion sweep runs (:class:`DiffusionSweepSpec`) and what one measured batch size gives
(:class:`DiffusionRecord`, ML.ENERGY's text-to-image column names and units).

The denoiser shape (:class:`DiTShape` for an MMDiT, :class:`UNetShape` for a UNet) uses diffusers' config names
where they exist; values come from each model's published ``transformer/config.json`` or ``unet/config.json`` and
the catalog (``models/catalog/architectures.toml``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from measure.schema import HarnessSection, Provenance


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiTShape(_Strict):
    """An MMDiT denoiser: SD3-style joint blocks (optionally with a second, image-only attention: SD3.5's
    "dual attention") followed by FLUX-style single-stream blocks."""

    hidden_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_joint_layers: int = Field(gt=0, description="double-stream (MMDiT) blocks")
    num_single_layers: int = Field(default=0, ge=0, description="single-stream blocks (FLUX)")
    dual_attention_layers: int = Field(default=0, ge=0, description="joint blocks with an extra image self-attention")
    mlp_ratio: float = Field(default=4.0, gt=0)
    in_channels: int = Field(default=16, gt=0, description="latent channels")
    patch_size: int = Field(default=2, gt=0)
    vae_spatial_compression: int = Field(default=8, gt=0)
    text_tokens: int = Field(gt=0, description="text-encoder tokens the denoiser attends to")
    joint_attention_dim: int = Field(default=4096, gt=0, description="text embedding width (T5-XXL)")
    pooled_projection_dim: int = Field(default=2048, gt=0)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def image_tokens(self, height: int, width: int) -> int:
        """Image tokens of one latent at ``height x width`` pixels."""
        f = self.vae_spatial_compression * self.patch_size
        return (height // f) * (width // f)


class UNetShape(_Strict):
    """A ``UNet2DConditionModel`` (SD 1.x/2.x, SDXL): stages of ResNets and optional transformer stacks.

    ``transformer_layers_per_block`` is the catalog's convention: 0 for a stage without attention (DownBlock2D /
    UpBlock2D), even where diffusers' config lists a depth for it. ``num_attention_heads`` per stage is what
    SDXL's and SD 1.x/2.x configs name ``attention_head_dim`` (SDXL [5, 10, 20], SD 2.1 [5, 10, 20, 20], SD 1.5 a
single 8; diffusers reads it as the head count).
    ``pooled_projection_dim`` > 0 adds SDXL's ``text_time`` embedding (pooled text + ``num_time_ids`` size/crop
    numbers, each a ``addition_time_embed_dim`` sinusoid).
    """

    block_out_channels: list[int] = Field(min_length=1)
    transformer_layers_per_block: list[int] = Field(min_length=1)
    num_attention_heads: list[int] = Field(min_length=1)
    layers_per_block: int = Field(default=2, gt=0)
    mid_transformer_layers: int = Field(default=1, ge=0)
    cross_attention_dim: int = Field(gt=0, description="text context width")
    in_channels: int = Field(default=4, gt=0, description="latent channels")
    vae_spatial_compression: int = Field(default=8, gt=0)
    text_tokens: int = Field(default=77, gt=0)
    pooled_projection_dim: int = Field(default=0, ge=0, description="SDXL text_embeds width; 0 = no add-embedding")
    addition_time_embed_dim: int = Field(default=256, gt=0)
    num_time_ids: int = Field(default=6, gt=0)
    norm_num_groups: int = Field(default=32, gt=0)
    use_linear_projection: bool = Field(default=True, description="Transformer2DModel proj_in/out: linear (SD 2.x, "
                                        "SDXL) or 1x1 conv (SD 1.x)")

    @model_validator(mode="after")
    def _check(self) -> UNetShape:
        n = len(self.block_out_channels)
        if len(self.transformer_layers_per_block) != n or len(self.num_attention_heads) != n:
            raise ValueError("block_out_channels, transformer_layers_per_block and num_attention_heads need one "
                             "entry per stage")
        for c, heads in zip(self.block_out_channels, self.num_attention_heads, strict=True):
            if c % self.norm_num_groups or c % heads:
                raise ValueError(f"{c} channels: not divisible by norm_num_groups and the stage's heads")
        return self


class DiffusionSweepSpec(_Strict):
    """One diffusion sweep: a denoiser shape at the catalog's steps and resolution over several batch sizes."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    kind: Literal["diffusion"] = "diffusion"
    engine: Literal["torch-dit", "torch-unet"] = "torch-dit"
    model_id: str
    task: Literal["text-to-image"] = "text-to-image"
    gpu_indices: list[int] = Field(default=[0], min_length=1, max_length=1)
    batch_sizes: list[int] = Field(min_length=1)
    inference_steps: int = Field(gt=0)
    image_height: int = Field(gt=0)
    image_width: int = Field(gt=0)
    uses_cfg: bool = Field(description="classifier-free guidance: the denoiser runs on 2x batch (uncond + cond)")
    guidance_scale: float | None = Field(default=None, gt=1.0, description="the pipeline's default guidance; "
                                         "None = the engine's (measure.diffusion_sweep.GUIDANCE)")
    shape: DiTShape | UNetShape = Field(description="DiTShape for engine torch-dit, UNetShape for torch-unet")
    seed: int = 0
    device: str = "cuda"
    harness: HarnessSection = HarnessSection()

    @model_validator(mode="after")
    def _check(self) -> DiffusionSweepSpec:
        if any(b <= 0 for b in self.batch_sizes):
            raise ValueError("batch sizes must be positive")
        wanted = UNetShape if self.engine == "torch-unet" else DiTShape
        if not isinstance(self.shape, wanted):
            raise ValueError(f"engine {self.engine} needs a [shape] of {wanted.__name__}'s fields")
        return self

    @classmethod
    def from_toml(cls, path: str | Path) -> DiffusionSweepSpec:
        with open(path, "rb") as f:
            return cls.model_validate(tomllib.load(f))


class DiffusionRecord(BaseModel):
    """One measured batch size of a diffusion sweep (ML.ENERGY text-to-image columns, plus verdict and provenance).

    ``energy_per_image_joules = avg_power_watts x batch_latency_s / batch_size`` (the loader checks it).
    """

    model_config = ConfigDict(extra="forbid")

    model_id: str
    task: str
    gpu_model: str
    num_gpus: int = 1
    batch_size: int
    inference_steps: int
    image_height: int
    image_width: int
    ulysses_degree: int = 1
    ring_degree: int = 1
    weight_precision: str = "bfloat16"
    batch_latency_s: float
    avg_power_watts: float
    energy_per_image_joules: float
    throughput_images_per_sec: float
    uses_cfg: bool
    engine: str
    engine_version: str
    weights: Literal["random", "pretrained"] = "random"
    is_stable: bool
    unstable_reason: str = ""
    steady_state_duration_s: float
    gpu_utilization_pct: float | None
    sm_clock_mhz: float | None
    idle_power_watts: float
    window_energy_joules: float
    images_in_window: int
    sampled_energy_joules: float | None = None
    notes: str = ""
    provenance: Provenance
