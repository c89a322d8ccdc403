"""Describe an uncatalogued model from its Hugging Face ``config.json`` (or a small spec file).

A user with a model that is not in ``models/catalog`` should not have to edit the catalog: this module
maps the standard ``config.json`` fields of decoder LLMs (Llama, Mistral/Mixtral, Qwen2/Qwen3/Qwen3-MoE,
Gemma 2/3 with a nested ``text_config``, DeepSeek V2/V3 with MLA, Phi-3/Phi-MoE, gpt-oss, OLMoE, Granite, ...)
onto :class:`~estimator.catalog.catalog.ArchitectureSpec`. Unknown ``model_type`` values work as long as the standard
fields are present. Total and active parameter counts are never read from the config: they are derived with
:mod:`estimator.catalog.params` from the fields, exactly as catalog entries are checked.

Nothing here does I/O at import time.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from estimator.catalog.catalog import ArchitectureSpec, Precision
from estimator.catalog.params import active_params_billions_derived, param_breakdown
from estimator.safe_io import read_text_checked
from estimator.validation import InputError, check_hf_config, refuse_json_constant

# Fields every LLM config must provide (after alias resolution), named as in Hugging Face configs.
REQUIRED_KEYS: tuple[str, ...] = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")

# Alternative spellings used by some configs (GPT-2 / Falcon / MPT style), tried in order.
_KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "vocab_size": ("vocab_size", "padded_vocab_size"),
}

# Sub-configs that hold the language model of a multimodal checkpoint.
_TEXT_SUBCONFIG_KEYS: tuple[str, ...] = ("text_config", "llm_config", "language_config")
_VISION_SUBCONFIG_KEYS: tuple[str, ...] = ("vision_config", "vision_tower_config")

# model_type values whose config class defaults ``tie_word_embeddings`` to True when the key is absent.
_TIED_BY_DEFAULT: frozenset[str] = frozenset({"gemma", "gemma2", "gemma3", "gemma3_text", "paligemma"})

# model_type values whose MLP is a plain two-matrix MLP rather than SwiGLU/GeGLU.
_UNGATED_MLP: frozenset[str] = frozenset(
    {"gpt2", "gpt_neox", "gptj", "opt", "falcon", "phi", "starcoder2", "gpt_bigcode", "bloom", "mpt"})

_DTYPE_TO_PRECISION: dict[str, Precision] = {
    "bfloat16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "float32": "bfloat16",  # fp32 checkpoints are served in bf16; noted in the spec's notes
    "float": "bfloat16",
}


def architecture_from_hf_config(config: dict[str, Any], *, model_id: str, source: str) -> ArchitectureSpec:
    """Build an :class:`ArchitectureSpec` from a Hugging Face ``config.json`` mapping.

    The spec is built in two steps: first with placeholder parameter totals, then with the totals derived by
    :func:`estimator.catalog.params.param_breakdown` and
    :func:`estimator.catalog.params.active_params_billions_derived`.

    Args:
        config: the parsed ``config.json`` (a multimodal config may nest its language model under
            ``text_config``; a ``vision_config`` makes the result an ``mllm`` whose vision tower is
            estimated).
        model_id: the model's name, used for ``display_name`` and ``family = "custom:<model_id>"``.
        source: where the config came from (URL or path), recorded in ``sources``.

    Returns:
        A validated spec whose ``total_params_billions`` / ``active_params_billions`` are derived.

    Raises:
        ValueError: the config lacks required fields (the message names every missing key in one line) or
            has inconsistent values.
    """
    if not isinstance(config, dict):
        raise ValueError(f"config for {model_id!r} is not a JSON object")
    check_hf_config(config, source)
    text, vision = _split_text_and_vision(config)
    model_type = str(text.get("model_type") or config.get("model_type") or "")
    notes: list[str] = [f"derived from config.json (model_type={model_type or 'unknown'})"]

    values = {key: _first(text, aliases) for key, aliases in _KEY_ALIASES.items()}
    missing = [key for key in REQUIRED_KEYS if not values[key]]
    if missing:
        where = " (looked in the top level and text_config)" if text is not config else ""
        raise ValueError(f"config.json for {model_id!r} lacks required keys: {', '.join(missing)}{where}")
    num_layers = int(values["num_hidden_layers"])
    hidden_size_dim = int(values["hidden_size"])
    num_heads = int(values["num_attention_heads"])
    vocab_size = int(values["vocab_size"])
    num_kv_heads = int(text.get("num_key_value_heads") or text.get("num_kv_heads") or num_heads)

    fields: dict[str, Any] = {
        "num_layers": num_layers,
        "hidden_size": hidden_size_dim,
        "num_attention_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "vocab_size": vocab_size,
        "intermediate_size": int(text.get("intermediate_size") or text.get("ffn_hidden_size") or 0),
        "max_position_embeddings": int(text.get("max_position_embeddings") or 0),
        "tie_word_embeddings": _tie_word_embeddings(config, text, model_type),
        "mlp_gated": model_type not in _UNGATED_MLP,
    }
    if not fields["intermediate_size"] and text.get("n_inner"):
        fields["intermediate_size"] = int(text["n_inner"])

    fields.update(_attention_fields(text, hidden_size_dim, num_heads, num_kv_heads, notes))
    fields.update(_moe_fields(text, fields["intermediate_size"], num_layers))
    fields.update(_sliding_window_fields(text, model_type, num_layers, fields["max_position_embeddings"]))
    if not fields["intermediate_size"] and not fields.get("num_experts"):
        raise ValueError(f"config.json for {model_id!r} lacks required keys: intermediate_size")

    kind, modality, vision_billions = "llm", "text", 0.0
    if vision is not None:
        kind, modality = "mllm", "vision-text"
        vision_billions = _vision_tower_billions(vision)
        notes.append(f"vision tower estimated from vision_config as a ViT: {vision_billions:.3f}B")
        if config.get("mm_tokens_per_image"):  # a fixed count per image (Gemma 3's config.json: 256)
            fields["image_tokens_per_image"] = int(config["mm_tokens_per_image"])
            notes.append(f"{fields['image_tokens_per_image']} prompt tokens per image (mm_tokens_per_image)")
        patches = _vision_patches_per_token(vision, fields.get("image_tokens_per_image", 0))
        if patches:
            fields["vision_patches_per_token"] = patches
            notes.append(f"{patches:g} vision-encoder patches per visual prompt token")

    precision, precision_note = _native_precision(config, text)
    if precision_note:
        notes.append(precision_note)
    block = _weight_block_size(config, text) if precision == "fp8" else None
    if block:
        fields["weight_block_scaled"] = True
        notes.append(f"FP8 weights with {' x '.join(map(str, block))} block scales (weight_block_size)")

    placeholder = ArchitectureSpec(
        display_name=model_id,
        kind=kind,
        family=f"custom:{model_id}",
        architecture="moe" if fields.get("num_experts") else "dense",
        modality=modality,
        total_params_billions=1.0,
        active_params_billions=1.0,
        native_precision=precision,
        vision_params_billions=vision_billions,
        sources=[source],
        notes="; ".join(notes),
        **fields,
    )
    total_billions = param_breakdown(placeholder).total_billions
    active_billions = active_params_billions_derived(placeholder)
    return placeholder.model_copy(update={
        "total_params_billions": round(total_billions, 4),
        "active_params_billions": round(min(active_billions, total_billions), 4),
    })


def load_model_description(path: Path, *, model_id: str | None = None) -> ArchitectureSpec:
    """Read a model description file: a Hugging Face ``config.json`` or a small ArchitectureSpec file.

    A file is taken as an ArchitectureSpec description (TOML or JSON, flat or as a one-entry
    ``[models."<id>"]`` table) when it has a ``kind`` or ``total_params_billions`` field; otherwise it is read
    as a Hugging Face config. Missing ``display_name`` / ``family`` / ``sources`` are filled in, and missing
    parameter totals are derived from the fields.

    Args:
        path: a ``.json`` or ``.toml`` file.
        model_id: the model's name; defaults to the spec table's key, the config's ``_name_or_path``, the
            folder holding a ``config.json``, or the file's stem.

    Returns:
        A validated spec.

    Raises:
        ValueError: the file is not JSON/TOML, or its content is not a usable description.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    raw_text = read_text_checked(path)  # refuses directories and FIFOs; a decode error names the file
    try:
        data = (tomllib.loads(raw_text) if path.suffix.lower() == ".toml"
                else json.loads(raw_text, parse_constant=refuse_json_constant))
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise ValueError(f"{path}: not valid {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object or TOML table")

    table_key = None
    if set(data) == {"models"} and isinstance(data["models"], dict) and len(data["models"]) == 1:
        table_key, data = next(iter(data["models"].items()))
    if "kind" in data or "total_params_billions" in data:
        name = model_id or table_key or _default_model_id(path, data)
        return _spec_from_own_fields(dict(data), model_id=name, source=str(path))
    name = model_id or _default_model_id(path, data)
    return architecture_from_hf_config(data, model_id=name, source=str(path))


def _spec_from_own_fields(data: dict[str, Any], *, model_id: str, source: str) -> ArchitectureSpec:
    """Validate a description written with ArchitectureSpec's own field names, filling in what is missing."""
    data.setdefault("display_name", model_id)
    data.setdefault("family", f"custom:{model_id}")
    data.setdefault("sources", [source])
    derive = "total_params_billions" not in data
    if derive:
        data["total_params_billions"] = data["active_params_billions"] = 1.0
    try:
        spec = ArchitectureSpec.model_validate(data)
    except Exception as exc:  # pydantic.ValidationError; re-raised as ValueError naming the file
        raise ValueError(f"{source}: not a valid model description: {exc}") from exc
    if not derive:
        return spec
    if spec.kind == "diffusion":
        raise ValueError(f"{source}: a diffusion description must state total_params_billions")
    total_billions = param_breakdown(spec).total_billions
    return spec.model_copy(update={
        "total_params_billions": round(total_billions, 4),
        "active_params_billions": round(min(active_params_billions_derived(spec), total_billions), 4),
    })


def _default_model_id(path: Path, data: dict[str, Any]) -> str:
    name = data.get("_name_or_path")
    if isinstance(name, str) and name.strip():
        return name.strip()
    if path.name == "config.json" and path.parent.name:
        return path.parent.name
    return path.stem


def _first(mapping: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value not in (None, 0, ""):
            return value
    return None


def _split_text_and_vision(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Return (language-model fields, vision sub-config or None); nested text fields win."""
    text: dict[str, Any] = config
    for key in _TEXT_SUBCONFIG_KEYS:
        nested = config.get(key)
        if isinstance(nested, dict) and nested:
            top = {k: v for k, v in config.items() if k not in _TEXT_SUBCONFIG_KEYS + _VISION_SUBCONFIG_KEYS}
            text = {**top, **{k: v for k, v in nested.items() if v is not None}}
            break
    vision = next((config[key] for key in _VISION_SUBCONFIG_KEYS if isinstance(config.get(key), dict)), None)
    return text, vision


def _tie_word_embeddings(config: dict[str, Any], text: dict[str, Any], model_type: str) -> bool:
    for mapping in (text, config):
        if mapping.get("tie_word_embeddings") is not None:
            return bool(mapping["tie_word_embeddings"])
    return model_type in _TIED_BY_DEFAULT or str(config.get("model_type")) in _TIED_BY_DEFAULT


def _attention_fields(text: dict[str, Any], hidden_size_dim: int, num_heads: int, num_kv_heads: int,
                      notes: list[str]) -> dict[str, Any]:
    """Attention variant and head widths (MLA when the config has a compressed KV rank)."""
    if text.get("kv_lora_rank"):
        nope_dim = int(text.get("qk_nope_head_dim") or 0)
        return {
            "attention": "mla",
            "head_dim": nope_dim,
            "qk_rope_head_dim": int(text.get("qk_rope_head_dim") or 0),
            "v_head_dim": int(text.get("v_head_dim") or nope_dim),
            "q_lora_rank": int(text.get("q_lora_rank") or 0),
            "kv_lora_rank": int(text["kv_lora_rank"]),
        }
    head_dim = text.get("head_dim")
    if not head_dim:
        if hidden_size_dim % num_heads:
            raise ValueError(
                f"hidden_size {hidden_size_dim} is not divisible by {num_heads} heads and no head_dim given")
        head_dim = hidden_size_dim // num_heads
        notes.append("head_dim defaulted to hidden_size / num_attention_heads")
    return {"attention": "mha" if num_kv_heads == num_heads else "gqa", "head_dim": int(head_dim)}


def _moe_fields(text: dict[str, Any], intermediate_size: int, num_layers: int) -> dict[str, Any]:
    """Expert counts and widths; configs without experts return an empty dict."""
    expert_keys = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
    num_experts = int(_first(text, expert_keys) or 0)
    if num_experts <= 1:
        return {}
    top_k = int(_first(text, ("num_experts_per_tok", "experts_per_token", "moe_top_k", "top_k_experts")) or 0)
    if not top_k:
        raise ValueError("config.json lacks required keys: num_experts_per_tok")
    # Mixtral, Phi-MoE, OLMoE, gpt-oss and Granite-MoE give the expert width as intermediate_size.
    expert_width = int(text.get("moe_intermediate_size") or text.get("expert_intermediate_size")
                       or intermediate_size)
    shared_width = int(_first(text, ("shared_expert_intermediate_size", "shared_intermediate_size")) or 0)
    num_shared = int(_first(text, ("n_shared_experts", "num_shared_experts")) or (1 if shared_width else 0))
    dense_layers = int(text.get("first_k_dense_replace") or 0)
    mlp_only = text.get("mlp_only_layers")
    if isinstance(mlp_only, list) and mlp_only:
        dense_layers = max(dense_layers, len(set(mlp_only)))
    fields: dict[str, Any] = {
        "num_experts": num_experts,
        "num_experts_per_token": top_k,
        "moe_intermediate_size": expert_width,
        "num_shared_experts": num_shared,
        "num_dense_layers": min(dense_layers, num_layers),
    }
    if shared_width and num_shared:
        fields["shared_expert_intermediate_size"] = shared_width // num_shared
    return fields


def _sliding_window_fields(text: dict[str, Any], model_type: str, num_layers: int,
                           max_positions: int) -> dict[str, Any]:
    """Sliding-window width and how many layers use it, from whichever convention the config follows."""
    window = int(text.get("sliding_window") or text.get("attention_window_size") or 0)
    layer_types = text.get("layer_types")
    if isinstance(layer_types, list) and layer_types:
        sliding = sum(1 for kind in layer_types if "sliding" in str(kind))
        return {"sliding_window": window, "num_sliding_window_layers": sliding} if window and sliding else {}
    if not window or text.get("use_sliding_window") is False or (max_positions and window >= max_positions):
        return {}
    if text.get("use_sliding_window") is True and text.get("max_window_layers") is not None:
        sliding = max(num_layers - int(text["max_window_layers"]), 0)  # Qwen2: layers >= max_window_layers
    elif text.get("sliding_window_pattern"):
        pattern = int(text["sliding_window_pattern"])  # Gemma 3: every pattern-th layer is global
        sliding = num_layers - num_layers // pattern
    elif model_type == "gemma2":
        sliding = (num_layers + 1) // 2  # Gemma 2 alternates local and global layers, local first
    else:
        sliding = num_layers  # Mistral v0.1 style: every layer slides
    return {"sliding_window": window, "num_sliding_window_layers": sliding} if sliding else {}


def _weight_block_size(config: dict[str, Any], text: dict[str, Any]) -> list[int] | None:
    """``quantization_config.weight_block_size`` (e.g. [128, 128] in DeepSeek-V3 and Qwen3 FP8 checkpoints), or
    None when the checkpoint has per-tensor or per-channel scales."""
    quant = config.get("quantization_config") or text.get("quantization_config")
    block = quant.get("weight_block_size") if isinstance(quant, dict) else None
    return [int(v) for v in block] if isinstance(block, list) and block else None


def _native_precision(config: dict[str, Any], text: dict[str, Any]) -> tuple[Precision, str]:
    """Weight precision from ``quantization_config`` (fp8, mxfp4, 4/8-bit) or ``torch_dtype``."""
    quant = config.get("quantization_config") or text.get("quantization_config")
    if isinstance(quant, dict) and quant:
        method = str(quant.get("quant_method") or "").lower()
        fmt = str(quant.get("fmt") or "").lower()
        bits = quant.get("bits") or quant.get("w_bit") or quant.get("weight_bits")
        if method == "mxfp4":
            return "mxfp4", ""
        if method in ("fp8", "fbgemm_fp8") or fmt.startswith("e4m3") or fmt.startswith("e5m2"):
            return "fp8", ""
        if method == "compressed-tensors":
            groups = quant.get("config_groups") or {}
            weights = next((g.get("weights") for g in groups.values() if isinstance(g, dict)), None) or {}
            if weights.get("num_bits") == 8:
                return ("fp8" if weights.get("type") == "float" else "int8"), ""
            if weights.get("num_bits") == 4:
                return "int4", ""
        if quant.get("load_in_4bit") or quant.get("_load_in_4bit") or bits == 4:
            return "int4", ""
        if quant.get("load_in_8bit") or quant.get("_load_in_8bit") or bits == 8:
            return "int8", ""
    dtype = str(text.get("torch_dtype") or text.get("dtype") or config.get("torch_dtype")
                or config.get("dtype") or "").lower().removeprefix("torch.")
    if dtype in _DTYPE_TO_PRECISION:
        note = "float32 checkpoint taken as served in bfloat16" if dtype in ("float32", "float") else ""
        return _DTYPE_TO_PRECISION[dtype], note
    return "bfloat16", "torch_dtype absent: bfloat16 assumed"


def _vision_tower_billions(vision: dict[str, Any]) -> float:
    """Rough ViT parameter count (attention 4h^2 + two-matrix MLP per layer, plus patch embedding)."""
    layers = int(_first(vision, ("num_hidden_layers", "depth", "num_layers", "n_layers")) or 0)
    width = int(_first(vision, ("hidden_size", "embed_dim", "width", "d_model")) or 0)
    if not layers or not width:
        return 0.0
    mlp = int(vision.get("intermediate_size") or width * float(vision.get("mlp_ratio") or 4))
    layers += int(vision.get("num_global_layers") or 0)
    patch = int(vision.get("patch_size") or 14)
    channels = int(vision.get("num_channels") or vision.get("in_channels") or vision.get("in_chans") or 3)
    per_layer = 4 * width * width + 2 * width * mlp
    return (layers * per_layer + channels * patch * patch * width) / 1e9


def _vision_patches_per_token(vision: dict[str, Any], tokens_per_image: int) -> float:
    """Encoder patches behind each visual prompt token, from the vision config: a Qwen-VL style
    ``spatial_merge_size`` m gives m^2, a Llama 4 style ``pixel_shuffle_ratio`` r gives 1/r^2, a fixed token count
    per image (Gemma 3) gives (image_size / patch_size)^2 / tokens; 0 when the config says none of these."""
    if vision.get("spatial_merge_size"):
        return float(vision["spatial_merge_size"]) ** 2
    if vision.get("pixel_shuffle_ratio"):
        return 1.0 / float(vision["pixel_shuffle_ratio"]) ** 2
    if tokens_per_image and vision.get("image_size") and vision.get("patch_size"):
        return (int(vision["image_size"]) // int(vision["patch_size"])) ** 2 / tokens_per_image
    return 0.0
