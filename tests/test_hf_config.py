"""Tests for estimator.catalog.hf_config: describing uncatalogued models from their Hugging Face config.json."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import pytest

from estimator.catalog.catalog import ArchitectureSpec, load_catalog
from estimator.catalog.hf_config import architecture_from_hf_config, load_model_description

FIXTURES_DIR = Path(__file__).parent / "fixtures" / "hf_configs"
PART_FILE = Path(__file__).resolve().parent.parent / "models" / "catalog" / "parts" / "arch_extra.toml"

# fixture file -> catalog key of the same model (sources of each file: tests/fixtures/hf_configs/SOURCES.md)
REAL_CONFIGS: dict[str, str] = {
    "meta-llama__Llama-3.2-1B-Instruct.json": "meta-llama/Llama-3.2-1B-Instruct",
    "mistralai__Mistral-7B-Instruct-v0.3.json": "mistralai/Mistral-7B-Instruct-v0.3",
    "mistralai__Mixtral-8x7B-Instruct-v0.1.json": "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "deepseek-ai__DeepSeek-V2-Lite-Chat.json": "deepseek-ai/DeepSeek-V2-Lite-Chat",
    "google__gemma-2-9b-it.json": "google/gemma-2-9b-it",
    "microsoft__Phi-3.5-mini-instruct.json": "microsoft/Phi-3.5-mini-instruct",
    "Qwen__Qwen2.5-14B-Instruct.json": "Qwen/Qwen2.5-14B-Instruct",
}


def _config(name: str) -> dict:
    return json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))


def _derive(name: str) -> ArchitectureSpec:
    return architecture_from_hf_config(_config(name), model_id=REAL_CONFIGS[name], source=f"fixture:{name}")


def _catalog_entry(key: str) -> ArchitectureSpec:
    """The reviewed catalog entry: from the part file while it exists, else from the merged catalog."""
    if PART_FILE.exists():
        with PART_FILE.open("rb") as handle:
            models = tomllib.load(handle)["models"]
        if key in models:
            return ArchitectureSpec.model_validate(models[key])
    catalog = load_catalog()
    if key not in catalog.models:
        pytest.skip(f"{key} is in neither {PART_FILE.name} nor the catalog")
    return catalog.models[key]


@pytest.mark.parametrize("fixture_name", sorted(REAL_CONFIGS))
def test_real_config_matches_catalog_entry(fixture_name: str) -> None:
    """A real config.json must give the same shape and (within 2%) size as the reviewed catalog entry.

    This is the guarantee that a user's unseen model is described as faithfully as a catalogued one.
    """
    derived = _derive(fixture_name)
    entry = _catalog_entry(REAL_CONFIGS[fixture_name])
    assert derived.num_layers == entry.num_layers
    assert derived.hidden_size == entry.hidden_size
    assert derived.num_kv_heads == entry.num_kv_heads
    assert derived.head_dim == entry.head_dim
    assert derived.num_experts == entry.num_experts
    assert derived.num_experts_per_token == entry.num_experts_per_token
    assert derived.architecture == entry.architecture
    assert derived.attention == entry.attention
    assert derived.total_params_billions == pytest.approx(entry.total_params_billions, rel=0.02)


def test_identity_fields_mark_the_spec_as_custom() -> None:
    """Derived specs must be recognisable as user-supplied (family custom:<id>) and cite their source."""
    spec = _derive("meta-llama__Llama-3.2-1B-Instruct.json")
    assert spec.family == "custom:meta-llama/Llama-3.2-1B-Instruct"
    assert spec.display_name == "meta-llama/Llama-3.2-1B-Instruct"
    assert spec.sources == ["fixture:meta-llama__Llama-3.2-1B-Instruct.json"]
    assert spec.kind == "llm" and spec.native_precision == "bfloat16"
    assert spec.tie_word_embeddings is True


def test_mixtral_experts_use_intermediate_size() -> None:
    """Mixtral-style configs give the per-expert width as intermediate_size; it must reach the MoE fields."""
    spec = _derive("mistralai__Mixtral-8x7B-Instruct-v0.1.json")
    assert (spec.num_experts, spec.num_experts_per_token, spec.moe_intermediate_size) == (8, 2, 14336)
    assert spec.active_params_billions == pytest.approx(12.9, rel=0.02)
    assert spec.sliding_window == 0  # sliding_window is null in the config


def test_deepseek_mla_and_dense_layers() -> None:
    """DeepSeek V2/V3 configs need MLA ranks, shared experts and first_k_dense_replace mapped correctly."""
    spec = _derive("deepseek-ai__DeepSeek-V2-Lite-Chat.json")
    assert spec.attention == "mla"
    assert (spec.kv_lora_rank, spec.q_lora_rank, spec.qk_rope_head_dim, spec.v_head_dim) == (512, 0, 64, 128)
    assert (spec.num_shared_experts, spec.num_dense_layers, spec.moe_intermediate_size) == (2, 1, 1408)
    assert spec.intermediate_size == 10944


def test_gemma2_alternating_sliding_window() -> None:
    """Gemma 2 alternates local and global layers without saying so; half the layers must be sliding."""
    spec = _derive("google__gemma-2-9b-it.json")
    assert (spec.sliding_window, spec.num_sliding_window_layers) == (4096, 21)
    assert spec.tie_word_embeddings is True  # key absent: Gemma's config default
    assert spec.head_dim == 256


def test_disabled_or_oversized_windows_are_ignored() -> None:
    """Qwen2 (use_sliding_window false) and Phi-3.5 (window > context) must not be modelled as sliding."""
    assert _derive("Qwen__Qwen2.5-14B-Instruct.json").num_sliding_window_layers == 0
    assert _derive("microsoft__Phi-3.5-mini-instruct.json").sliding_window == 0


def test_qwen2_max_window_layers_counts_sliding_layers() -> None:
    """With use_sliding_window on, Qwen2 slides only on layers at or above max_window_layers."""
    config = _config("Qwen__Qwen2.5-14B-Instruct.json") | {
        "use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 28}
    spec = architecture_from_hf_config(config, model_id="qwen-swa", source="test")
    assert (spec.sliding_window, spec.num_sliding_window_layers) == (4096, 20)


def test_layer_types_and_mxfp4() -> None:
    """gpt-oss style configs list layer_types and quantize experts to MXFP4; both must be picked up."""
    config = {
        "model_type": "gpt_oss", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 8,
        "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 1000, "intermediate_size": 128,
        "num_local_experts": 8, "num_experts_per_tok": 2, "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"] * 2,
        "quantization_config": {"quant_method": "mxfp4"}, "torch_dtype": "bfloat16",
    }
    spec = architecture_from_hf_config(config, model_id="tiny-oss", source="test")
    assert (spec.sliding_window, spec.num_sliding_window_layers) == (128, 2)
    assert spec.native_precision == "mxfp4"
    assert spec.architecture == "moe" and spec.moe_intermediate_size == 128


def test_fp8_quantization_config() -> None:
    """DeepSeek-V3-style FP8 checkpoints carry quantization_config; native precision must be fp8."""
    config = _config("deepseek-ai__DeepSeek-V2-Lite-Chat.json")
    config["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                     "weight_block_size": [128, 128]}
    spec = architecture_from_hf_config(config, model_id="v2-lite-fp8", source="test")
    assert spec.native_precision == "fp8"


def test_nested_text_config_makes_an_mllm() -> None:
    """Gemma 3 / Llama 4 style configs nest the LM under text_config next to a vision_config."""
    text = _config("google__gemma-2-9b-it.json")
    config = {"model_type": "gemma3", "torch_dtype": "bfloat16", "text_config": text,
              "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                                "patch_size": 14}}
    spec = architecture_from_hf_config(config, model_id="nested", source="test")
    flat = _derive("google__gemma-2-9b-it.json")
    assert (spec.kind, spec.modality) == ("mllm", "vision-text")
    assert (spec.num_layers, spec.hidden_size, spec.vocab_size) == (42, 3584, 256000)
    assert 0.35 < spec.vision_params_billions < 0.45  # a SigLIP-400M-sized tower
    expected_billions = flat.total_params_billions + spec.vision_params_billions
    assert spec.total_params_billions == pytest.approx(expected_billions, abs=1e-3)


def test_unknown_model_type_with_standard_fields() -> None:
    """An architecture this module has never heard of must still work when the standard fields exist."""
    config = copy.deepcopy(_config("mistralai__Mistral-7B-Instruct-v0.3.json"))
    config["model_type"] = "brand_new_arch"
    config["architectures"] = ["BrandNewForCausalLM"]
    spec = architecture_from_hf_config(config, model_id="new/arch", source="test")
    assert spec.total_params_billions == pytest.approx(7.25, rel=0.01)


def test_missing_fields_error_names_every_key_in_one_line() -> None:
    """A broken config must fail with one readable line that names all the missing keys."""
    config = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008}
    with pytest.raises(ValueError) as excinfo:
        architecture_from_hf_config(config, model_id="broken/model", source="test")
    message = str(excinfo.value)
    assert "\n" not in message
    for key in ("num_hidden_layers", "num_attention_heads", "vocab_size"):
        assert key in message
    assert "hidden_size" not in message.split(":", 1)[1]


def test_toml_description_route(tmp_path: Path) -> None:
    """A small TOML written with ArchitectureSpec's own fields must load as-is, filling identity defaults."""
    path = tmp_path / "my-model.toml"
    path.write_text(
        'kind = "llm"\narchitecture = "dense"\nmodality = "text"\nnative_precision = "bfloat16"\n'
        "total_params_billions = 7.25\nactive_params_billions = 7.25\nnum_layers = 32\nhidden_size = 4096\n"
        "num_attention_heads = 32\nnum_kv_heads = 8\nhead_dim = 128\nintermediate_size = 14336\n"
        "vocab_size = 32768\n",
        encoding="utf-8",
    )
    spec = load_model_description(path)
    assert spec.display_name == "my-model" and spec.family == "custom:my-model"
    assert spec.sources == [str(path)]
    assert spec.total_params_billions == 7.25


def test_toml_description_without_totals_is_derived(tmp_path: Path) -> None:
    """A spec TOML inside a [models."id"] table may leave the totals out; they are derived from the fields."""
    path = tmp_path / "spec.toml"
    path.write_text(
        '[models."me/mistral-like"]\nkind = "llm"\narchitecture = "dense"\nmodality = "text"\n'
        'native_precision = "bfloat16"\nnum_layers = 32\nhidden_size = 4096\nnum_attention_heads = 32\n'
        "num_kv_heads = 8\nhead_dim = 128\nintermediate_size = 14336\nvocab_size = 32768\n",
        encoding="utf-8",
    )
    spec = load_model_description(path)
    assert spec.display_name == "me/mistral-like"
    assert spec.total_params_billions == pytest.approx(7.25, rel=0.01)


def test_config_json_route(tmp_path: Path) -> None:
    """load_model_description must read a plain HF config.json and name it after its folder."""
    folder = tmp_path / "Mistral-7B-Instruct-v0.3"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_config("mistralai__Mistral-7B-Instruct-v0.3.json")))
    spec = load_model_description(folder / "config.json")
    assert spec.display_name == "Mistral-7B-Instruct-v0.3"
    assert spec.num_layers == 32
    named = load_model_description(folder / "config.json", model_id="mistralai/Mistral-7B-Instruct-v0.3")
    assert named.family == "custom:mistralai/Mistral-7B-Instruct-v0.3"
