"""Reviewed catalogs of GPUs, model architectures and tasks.

The catalogs are data (``models/catalog/*.toml``), validated here with pydantic ``extra="forbid"`` so that a
misspelt field fails loudly instead of being dropped. Every entry carries ``sources``. Keys are exact; the only
other way to name an entry is an explicit alias listed in ``aliases.toml``. Unknown names raise
:class:`UnknownKeyError` with close matches.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from estimator.catalog.output_lengths import OUTPUT_LENGTHS_FILE, OutputLengthProfile, read_output_lengths
from estimator.paths import catalog_dir

ModelKind = Literal["llm", "mllm", "diffusion"]
Precision = Literal["bfloat16", "fp8", "mxfp4", "int4", "int8", "float16"]


class CatalogError(ValueError):
    """A catalog file is malformed (the message names the file and the entry)."""


class UnknownKeyError(KeyError):
    """A name that resolves to no catalog entry; carries close matches for the message."""

    def __init__(self, kind: str, name: str, matches: list[str]):
        self.kind, self.name, self.matches = kind, name, matches
        hint = f" Did you mean: {', '.join(matches)}?" if matches else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} (see `joules-estimate catalog list {kind}s`)")

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return self.args[0]


class AmbiguousNameError(UnknownKeyError):
    """A name that could mean several entries (``models/catalog/names.toml``); the message lists them."""

    def __init__(self, kind: str, name: str, candidates: list[str]):
        self.kind, self.name, self.matches = kind, name, candidates
        KeyError.__init__(self, f"ambiguous {kind} {name!r}: it could mean {' or '.join(candidates)}; give one of "
                                f"them (see `joules-estimate catalog list {kind}s`)")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[str] = Field(min_length=1, description="URLs or citations for every value in the entry")
    notes: str = ""

    @field_validator("sources")
    @classmethod
    def _sources_not_blank(cls, value: list[str]) -> list[str]:
        if any(not s.strip() for s in value):
            raise ValueError("a source is blank")
        return value


class GPUSpec(_Entry):
    """One accelerator, values from the vendor datasheet (dense peak, no sparsity)."""

    display_name: str
    vendor: Literal["nvidia", "amd"]
    architecture: str = Field(description="e.g. ampere, ada, hopper, blackwell, cdna3")
    generation: int = Field(ge=1, description="ordinal within vendor: ampere 8, ada 8.9->8, hopper 9, blackwell 10")
    form_factor: str = Field(description="sxm, pcie, oam, superchip")
    memory_gb: float = Field(gt=0, description="HBM/GDDR capacity in GB (10^9 bytes) as the datasheet states")
    memory_mib: float | None = Field(default=None, gt=0, description="total memory as nvidia-smi reports it (MiB); "
                                     "None -> memory_gb x 10^9 bytes is used")
    hbm_bandwidth_tb_per_sec: float = Field(gt=0)
    peak_tflops_bf16: float = Field(gt=0, description="dense")
    peak_tflops_fp8: float | None = Field(default=None, gt=0, description="dense; None when unsupported")
    peak_tflops_fp4: float | None = Field(default=None, gt=0, description="dense; None when unsupported")
    tdp_watts: float = Field(gt=0, description="max board/module power")
    interconnect: str = Field(description="e.g. 'NVLink 4', 'PCIe Gen5', 'Infinity Fabric'")
    interconnect_bandwidth_gb_per_sec: float = Field(gt=0, description="per GPU, bidirectional")


class ArchitectureSpec(_Entry):
    """One generative model: the config values the physics needs, from its published config.

    LLM/MLLM fields follow Hugging Face ``config.json`` names where they exist. Diffusion entries fill the
    ``denoiser_*`` / ``latent_*`` / ``default_*`` fields instead of the transformer ones.
    """

    display_name: str
    kind: ModelKind
    family: str = Field(description="architecture shape shared by siblings (FP8/BF16, Instruct/Thinking/VL)")
    architecture: Literal["dense", "moe", "hybrid", "diffusion"]
    modality: Literal["text", "vision-text", "omni", "text-to-image", "text-to-video"]
    total_params_billions: float = Field(gt=0)
    active_params_billions: float = Field(gt=0)
    native_precision: Precision
    weight_block_scaled: bool = Field(default=False, description=(
        "the FP8 checkpoint stores 128 x 128 block scales (config.json quantization_config.weight_block_size, "
        "the DeepSeek-V3 and Qwen3 FP8 format); per-tensor and per-channel FP8 checkpoints leave it False"))
    # transformer LLM body (zero for diffusion)
    num_layers: int = Field(default=0, ge=0)
    hidden_size: int = Field(default=0, ge=0)
    num_attention_heads: int = Field(default=0, ge=0)
    num_kv_heads: int = Field(default=0, ge=0)
    head_dim: int = Field(default=0, ge=0)
    intermediate_size: int = Field(default=0, ge=0, description="dense MLP width (dense layers)")
    mlp_gated: bool = Field(default=True, description="SwiGLU/GeGLU MLP (3 matrices) vs plain (2)")
    num_mlp_layers: int = Field(default=0, ge=0, description="layers with an MLP/MoE block; 0 = num_layers")
    vocab_size: int = Field(default=0, ge=0)
    tie_word_embeddings: bool = False
    max_position_embeddings: int = Field(default=0, ge=0)
    # mixture of experts
    num_experts: int = Field(default=0, ge=0, description="routed experts per MoE layer")
    num_experts_per_token: int = Field(default=0, ge=0)
    moe_intermediate_size: int = Field(default=0, ge=0)
    num_shared_experts: int = Field(default=0, ge=0)
    shared_expert_intermediate_size: int = Field(default=0, ge=0, description="0 = moe_intermediate_size")
    num_dense_layers: int = Field(default=0, ge=0, description="layers with a dense MLP in an MoE model")
    # attention variants
    attention: Literal["mha", "gqa", "mla", "none"] = "gqa"
    qk_norm: bool = Field(default=False, description="per-head RMSNorm on queries and keys (Qwen3)")
    q_lora_rank: int = Field(default=0, ge=0, description="MLA query compression width; 0 = none")
    kv_lora_rank: int = Field(default=0, ge=0, description="MLA compressed KV width")
    v_head_dim: int = Field(default=0, ge=0, description="MLA value head width; 0 = head_dim")
    qk_rope_head_dim: int = Field(default=0, ge=0, description="MLA decoupled RoPE key width")
    sliding_window: int = Field(default=0, ge=0, description="tokens; 0 = none")
    num_sliding_window_layers: int = Field(default=0, ge=0)
    # hybrid state-space layers
    num_mamba_layers: int = Field(default=0, ge=0, description="Mamba2 mixer layers (hybrids count these apart)")
    mamba_num_heads: int = Field(default=0, ge=0)
    mamba_head_dim: int = Field(default=0, ge=0)
    mamba_d_state: int = Field(default=0, ge=0)
    mamba_n_groups: int = Field(default=0, ge=0)
    mamba_conv_kernel: int = Field(default=0, ge=0)
    # multimodal
    vision_params_billions: float = Field(default=0.0, ge=0)
    vision_patches_per_token: float = Field(
        default=0.0, ge=0, description="vision-encoder patches behind each visual prompt token (Qwen3-VL: 2x2 "
        "spatial merge = 4; Gemma 3: 4096 patches pooled to 256 tokens = 16); 0 = encoder compute not counted")
    image_tokens_per_image: int = Field(
        default=0, ge=0, description="prompt tokens one image becomes where the model's processor fixes the count "
        "(Gemma 3: 256); 0 = resolution-dependent, the task's image-token estimate applies")
    other_params_billions: float = Field(
        default=0.0, ge=0, description="params outside the formula (audio encoder, talker, MTP head); say which")
    # diffusion
    denoiser_params_billions: float = Field(default=0.0, ge=0)
    text_encoder_params_billions: float = Field(default=0.0, ge=0)
    vae_params_billions: float = Field(default=0.0, ge=0)
    denoiser_hidden_size: int = Field(default=0, ge=0)
    denoiser_num_layers: int = Field(default=0, ge=0)
    latent_channels: int = Field(default=0, ge=0)
    patch_size: int = Field(default=0, ge=0)
    vae_spatial_compression: int = Field(default=0, ge=0)
    vae_temporal_compression: int = Field(default=0, ge=0)
    temporal_patch_size: int = Field(default=1, ge=1, description="latent frames per token frame (CogVideoX1.5: 2)")
    default_steps: int = Field(default=0, ge=0)
    default_height: int = Field(default=0, ge=0)
    default_width: int = Field(default=0, ge=0)
    default_frames: int = Field(default=0, ge=0)
    uses_cfg: bool = Field(default=False, description="classifier-free guidance doubles the denoiser batch")
    # UNet denoisers (diffusers UNet2DConditionModel config names); empty for DiTs
    denoiser_type: Literal["dit", "unet"] = "dit"
    unet_block_out_channels: list[int] = Field(default_factory=list, description="width of each stage")
    unet_transformer_layers_per_block: list[int] = Field(
        default_factory=list, description="transformer depth per down stage (0 = a stage without attention)")
    unet_mid_transformer_layers: int = Field(default=0, ge=0)
    unet_layers_per_block: int = Field(default=2, ge=1, description="ResNets per down stage (up stages: one more)")
    unet_cross_attention_dim: int = Field(default=0, ge=0, description="text-embedding width of cross-attention")

    @model_validator(mode="after")
    def _consistent(self) -> ArchitectureSpec:
        if self.active_params_billions > self.total_params_billions * 1.001:
            raise ValueError("active_params_billions exceeds total_params_billions")
        if self.kind == "diffusion":
            needed = ("denoiser_params_billions", "latent_channels", "patch_size", "vae_spatial_compression",
                      "default_steps", "default_height", "default_width")
        else:
            needed = ("num_layers", "hidden_size", "num_attention_heads", "vocab_size")
        missing = [name for name in needed if not getattr(self, name)]
        if missing:
            raise ValueError(f"{self.kind} entry lacks {', '.join(missing)}")
        if self.denoiser_type == "unet" and (len(self.unet_transformer_layers_per_block)
                                             != len(self.unet_block_out_channels) or not self.unet_block_out_channels):
            raise ValueError("unet entry needs unet_block_out_channels and a transformer depth per stage")
        if self.architecture == "moe" and not (self.num_experts and self.num_experts_per_token):
            raise ValueError("moe entry lacks num_experts / num_experts_per_token")
        return self


class TaskSpec(_Entry):
    """One workload: what requests look like, from the data and the datasets' published statistics."""

    display_name: str
    kind: ModelKind
    modality: Literal["text", "vision-text", "omni", "text-to-image", "text-to-video"]
    dataset: str
    mean_input_tokens: float = Field(default=0.0, ge=0, description="prompt tokens incl. image/video tokens")
    image_tokens_estimate: float = Field(
        default=0.0, ge=0, description="the part of mean_input_tokens that is the request's one image, as estimated "
        "for a resolution-dependent processor; replaced by a model's fixed count (ArchitectureSpec."
        "image_tokens_per_image)")
    video_tokens_estimate: float = Field(
        default=0.0, ge=0, description="the part of mean_input_tokens that is the request's one video, as estimated")
    mean_output_tokens: float = Field(default=0.0, ge=0, description="mean over the data's runs")
    p90_output_tokens: float = Field(default=0.0, ge=0)
    max_output_tokens: int = Field(default=0, ge=0, description="benchmark's generation cap")
    num_requests: int = Field(default=0, ge=0)
    reasoning: bool = False


class Catalog(BaseModel):
    """All catalogs plus aliases; use :func:`load_catalog` to build one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: dict[str, GPUSpec]
    models: dict[str, ArchitectureSpec]
    tasks: dict[str, TaskSpec]
    aliases: dict[str, dict[str, str]] = Field(description="kind -> alias -> exact key")
    ambiguous: dict[str, dict[str, list[str]]] = Field(default_factory=dict,
                                                       description="kind -> name -> candidate keys (refused)")
    taken: dict[str, dict[str, str]] = Field(default_factory=dict,
                                             description="kind -> alias -> why its entry is the default")
    output_lengths: OutputLengthProfile = Field(default_factory=OutputLengthProfile,
                                                description="measured mean output tokens by task, model, publisher")
    content_hash: str = ""

    def profile_output_tokens(self, model_id: str, task_key: str) -> tuple[float, str]:
        """(mean output tokens per response, level) when the user gives none: the model's own measured mean on
        the task, else its publisher's, else ``tasks.toml``'s (:mod:`estimator.catalog.output_lengths`)."""
        task_mean = self.tasks[task_key].mean_output_tokens
        return self.output_lengths.tokens(model_id, task_key, task_mean) or (task_mean, "task")

    def visual_tokens(self, task_key: str, arch: ArchitectureSpec) -> float:
        """Prompt tokens of the request's image or video for this model on this task (0 for a text task or a
        text-only model): the model's fixed count per image where its processor fixes one, else the task's
        estimate."""
        task = self.tasks[task_key]
        if arch.kind != "mllm":
            return 0.0
        if task.image_tokens_estimate:
            return float(_fixed_image_tokens(task, arch) or task.image_tokens_estimate)
        return task.video_tokens_estimate

    def profile_input_tokens(self, task_key: str, arch: ArchitectureSpec | None = None) -> tuple[float, str]:
        """(mean prompt tokens per request, level) when the user gives none: ``tasks.toml``'s estimate, with the
        image's share replaced by the model's own count where its processor fixes one (level "model"; Gemma 3 turns
        every image into 256 tokens whatever its resolution), else the task's (level "task")."""
        task = self.tasks[task_key]
        own = _fixed_image_tokens(task, arch)
        if own:
            return task.mean_input_tokens - task.image_tokens_estimate + own, "model"
        return task.mean_input_tokens, "task"

    def known_input_tokens(self, model_id: str) -> dict[str, float]:
        """task -> mean prompt tokens for the tasks where this model's own count replaces the task's estimate
        (:meth:`profile_input_tokens` at level "model"): what a form should show as the default."""
        arch = self.models[model_id]
        found = {}
        for task_key, task in self.tasks.items():
            if task.kind != "diffusion" and arch.kind != "diffusion":
                tokens, level = self.profile_input_tokens(task_key, arch)
                if level == "model":
                    found[task_key] = tokens
        return found

    def known_output_tokens(self, model_id: str) -> dict[str, dict]:
        """task -> {"tokens", "level"} for the LLM/MLLM tasks where the output-length profile knows more about this
        model than the task's mean (its own measured mean, or its publisher's): what a form should show as the
        default. Empty for diffusion models."""
        if self.models[model_id].kind == "diffusion":
            return {}
        found = {}
        for task_key, task in self.tasks.items():
            if task.kind == "diffusion":
                continue
            tokens, level = self.profile_output_tokens(model_id, task_key)
            if level != "task":
                found[task_key] = {"tokens": tokens, "level": level}
        return found

    def _table(self, kind: str) -> dict:
        return {"gpu": self.gpus, "model": self.models, "task": self.tasks}[kind]

    def resolve(self, kind: Literal["gpu", "model", "task"], name: str) -> str:
        """Return the exact catalog key for ``name`` (a key or an explicit alias).

        Matching is exact after lower-casing aliases; never by substring. Raises UnknownKeyError with close
        matches otherwise.
        """
        table = self._table(kind)
        if name in table:
            return name
        alias_table = self.aliases.get(kind, {})
        lowered = name.strip().lower()
        if lowered in self.ambiguous.get(kind, {}):
            raise AmbiguousNameError(kind, name, self.ambiguous[kind][lowered])
        if lowered in alias_table:
            return alias_table[lowered]
        for key in table:
            if key.lower() == lowered:
                return key
        candidates = list(table) + list(alias_table)
        lower_map = {c.lower(): c for c in candidates}
        close = difflib.get_close_matches(lowered, list(lower_map), n=5, cutoff=0.5)
        raise UnknownKeyError(kind, name, [lower_map[c] for c in close])

    def note(self, kind: Literal["gpu", "model", "task"], name: str) -> str:
        """'<name> taken as <key> (why)' when ``name`` is a documented default (``names.toml``), else ''."""
        why = self.taken.get(kind, {}).get(str(name).strip().lower())
        return f"{kind} {name} taken as {self.resolve(kind, name)} ({why})" if why else ""

    def resolve_model(self, name: str, extra_models: dict[str, ArchitectureSpec] | None = None
                      ) -> tuple[str, ArchitectureSpec]:
        """(model id, spec) for a name: a key of ``extra_models`` (descriptions not in the catalog) as given,
        otherwise a catalog key or alias (raises UnknownKeyError with close matches)."""
        if extra_models and name in extra_models:
            return name, extra_models[name]
        key = self.resolve("model", name)
        return key, self.models[key]

    def table(self, kind: Literal["gpu", "model", "task"]) -> dict:
        """The entries of one catalog (key -> spec), in file order."""
        return self._table(kind)

    def gpu(self, name: str) -> GPUSpec:
        return self.gpus[self.resolve("gpu", name)]

    def model(self, name: str) -> ArchitectureSpec:
        return self.models[self.resolve("model", name)]

    def task(self, name: str) -> TaskSpec:
        return self.tasks[self.resolve("task", name)]


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise CatalogError(f"{path}: catalog file missing") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: not valid TOML: {exc}") from exc


def _validate_table(path: Path, table: dict, spec_type: type[_Entry]) -> dict:
    entries = {}
    for key, raw in table.items():
        try:
            entries[key] = spec_type.model_validate(raw)
        except Exception as exc:  # pydantic.ValidationError; re-raised with the file and key named
            raise CatalogError(f"{path}: entry [{key}] is invalid:\n{exc}") from exc
    return entries


def load_catalog(directory: Path | None = None) -> Catalog:
    """Load and validate ``gpus.toml``, ``architectures.toml``, ``tasks.toml`` and ``aliases.toml``.

    Args:
        directory: catalog folder; defaults to the project's ``models/catalog``.

    Raises:
        CatalogError: a file is missing, not TOML, an entry fails validation, or an alias points nowhere.
    """
    directory = Path(directory) if directory else catalog_dir()
    return _load_catalog_cached(str(directory.resolve()))


def _fixed_image_tokens(task: TaskSpec, arch: ArchitectureSpec | None) -> int:
    """The model's own prompt tokens per image where they replace the task's image estimate (a multimodal model
    whose processor fixes the count, on a task with an image); 0 otherwise."""
    if arch is None or arch.kind != "mllm" or not task.image_tokens_estimate:
        return 0
    return arch.image_tokens_per_image


def forget_loaded_catalogs() -> None:
    """Drop the per-process catalog cache (after a catalog file was rewritten, e.g. by training)."""
    _load_catalog_cached.cache_clear()


@cache
def _load_catalog_cached(directory_str: str) -> Catalog:
    directory = Path(directory_str)
    files = {name: directory / f"{name}.toml" for name in ("gpus", "architectures", "tasks", "aliases")}
    raw = {name: _read_toml(path) for name, path in files.items()}
    gpus = _validate_table(files["gpus"], raw["gpus"].get("gpus", {}), GPUSpec)
    models = _validate_table(files["architectures"], raw["architectures"].get("models", {}), ArchitectureSpec)
    tasks = _validate_table(files["tasks"], raw["tasks"].get("tasks", {}), TaskSpec)
    aliases: dict[str, dict[str, str]] = {}
    tables = {"gpu": gpus, "model": models, "task": tasks}
    for kind, mapping in raw["aliases"].items():
        if kind not in tables:
            raise CatalogError(f"{files['aliases']}: unknown alias table [{kind}] (use gpu, model, task)")
        for alias, target in mapping.items():
            if target not in tables[kind]:
                raise CatalogError(f"{files['aliases']}: [{kind}] alias {alias!r} -> {target!r}, no such entry")
            if alias.lower() != alias:
                raise CatalogError(f"{files['aliases']}: [{kind}] alias {alias!r} must be lower-case")
        aliases[kind] = dict(mapping)
    lengths_path = directory / OUTPUT_LENGTHS_FILE
    digest = hashlib.sha256()
    for path in [*files.values(), *([lengths_path] if lengths_path.exists() else [])]:
        digest.update(path.read_bytes())
    ambiguous, taken = _read_names(directory / "names.toml", tables, aliases)
    return Catalog(gpus=gpus, models=models, tasks=tasks, aliases=aliases, ambiguous=ambiguous, taken=taken,
                   output_lengths=read_output_lengths(lengths_path), content_hash=digest.hexdigest()[:16])


def _read_names(path: Path, tables: dict[str, dict], aliases: dict[str, dict[str, str]]) -> tuple[dict, dict]:
    """``names.toml`` (optional): ambiguous names and documented defaults, each checked against the catalog."""
    if not path.exists():
        return {}, {}
    raw = _read_toml(path)
    unknown = set(raw) - {"ambiguous", "taken"} or {k for part in raw.values() for k in part} - set(tables)
    if unknown:
        raise CatalogError(f"{path}: unknown table(s) {', '.join(sorted(unknown))} (use [ambiguous.<kind>], "
                           f"[taken.<kind>] with kind gpu, model or task)")
    ambiguous = raw.get("ambiguous", {})
    for kind, names in ambiguous.items():
        for name, candidates in names.items():
            missing = [c for c in candidates if c not in tables[kind]]
            if name != name.lower() or len(candidates) < 1 or missing:
                raise CatalogError(f"{path}: [ambiguous.{kind}] {name!r} must be lower-case with existing "
                                   f"candidates (unknown: {', '.join(missing) or '-'})")
    taken = raw.get("taken", {})
    for kind, names in taken.items():
        for name in names:
            if name not in aliases.get(kind, {}):
                raise CatalogError(f"{path}: [taken.{kind}] {name!r} is not an alias in aliases.toml")
    return ambiguous, taken


def catalog_as_json(catalog: Catalog, kind: Literal["gpu", "model", "task"]) -> str:
    """Serialise one catalog table as JSON (for ``catalog list --json``)."""
    table = catalog.table(kind)
    return json.dumps({key: value.model_dump() for key, value in table.items()}, indent=2)
