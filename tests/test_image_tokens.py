"""Prompt length of an image request follows the model's processor where it fixes the count.

Gemma 3 turns every image into 256 tokens whatever its resolution (config.json ``mm_tokens_per_image``); the
image-chat task's 1,050-token estimate assumes a resolution-dependent processor (Qwen3-VL: one token per 32x32 px of
a ~1 MP upload). Before this, a Gemma 3 image request was featurized with ~1,000 image tokens it never has, so its
prefill and KV context were ~3x too large. These tests fail if any default path (catalog, featurizer, prediction,
planning rows, hf_config) stops applying the model's own count, or applies it where the user gave a length, and
if the vision encoder's compute (2 x encoder params x patches, estimator.physics.serving.vision_encoder_flops) drops
out of an image or video request's prefill.
"""

import pandas as pd
import pytest

from estimator.catalog.catalog import load_catalog
from estimator.catalog.hf_config import architecture_from_hf_config
from estimator.learn.features import featurize
from estimator.serve import planning

GEMMA, QWEN_VL = "google/gemma-3-12b-it", "Qwen/Qwen3-VL-8B-Instruct"


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_hand_count_for_gemma_image_chat(catalog):
    """1,050 estimated prompt tokens - 1,000 of them the image's + Gemma's 256 = 306 (hand arithmetic)."""
    task = catalog.tasks["image-chat"]
    assert (task.mean_input_tokens, task.image_tokens_estimate) == (1050.0, 1000.0)
    assert catalog.profile_input_tokens("image-chat", catalog.models[GEMMA]) == (306.0, "model")
    assert catalog.known_input_tokens(GEMMA) == {"image-chat": 306.0}


def test_resolution_dependent_processors_and_text_tasks_keep_the_task_estimate(catalog):
    """Qwen3-VL's count depends on the image, so the task's estimate stands; a text task has no image share."""
    assert catalog.profile_input_tokens("image-chat", catalog.models[QWEN_VL]) == (1050.0, "task")
    assert catalog.profile_input_tokens("lm-arena-chat", catalog.models[GEMMA]) == (90.0, "task")
    assert catalog.known_input_tokens(QWEN_VL) == {}


def _features(catalog, **extra) -> pd.DataFrame:
    row = {"model_id": GEMMA, "task": "image-chat", "gpu_model": "H100-SXM", "num_gpus": 1, "max_num_seqs": 64,
           "avg_output_len": 695.0, **extra}
    return featurize(pd.DataFrame([row]), catalog)


def test_featurizer_uses_the_model_count_only_when_no_length_is_given(catalog):
    """No avg_input_len -> the 306-token prompt; an explicit 1,050 -> the task's (the user's number wins)."""
    default, given_306, given_1050 = (_features(catalog), _features(catalog, avg_input_len=306.0),
                                      _features(catalog, avg_input_len=1050.0))
    pd.testing.assert_frame_equal(default, given_306)
    assert not default.equals(given_1050)


def test_planning_rows_default_to_the_model_count(catalog):
    """What-if and plan rows (planning.llm_row) carry the same default; a given prompt length overrides it."""
    target = planning.resolve_target("gemma-3-12b", "image-chat", catalog)
    assert target.profile_input_tokens == 306.0
    assert planning.llm_row(target, "H100-SXM", 1, 64)["avg_input_len"] == 306.0
    assert planning.llm_row(target, "H100-SXM", 1, 64, input_tokens=2000)["avg_input_len"] == 2000.0


def test_hf_config_reads_the_fixed_image_token_count():
    """A config.json with mm_tokens_per_image (Gemma 3's) describes a model with that fixed count."""
    text = {"model_type": "gemma3_text", "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34,
            "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 262208}
    config = {"model_type": "gemma3", "mm_tokens_per_image": 256, "text_config": text,
              "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                                "patch_size": 14, "image_size": 896}}
    spec = architecture_from_hf_config(config, model_id="custom-gemma", source="test")
    assert spec.image_tokens_per_image == 256
    assert spec.vision_patches_per_token == 16.0  # (896 / 14)^2 = 4096 patches pooled to 256 tokens
    assert load_catalog().profile_input_tokens("image-chat", spec) == (306.0, "model")


def test_vision_encoder_flops_hand_count(catalog):
    """2 x encoder params x patches: Gemma 3 12B, 256 tokens x 16 patches (4096 SigLIP patches of an 896-px
    image) x 0.42e9 x 2 = 3.44e12 FLOP; Qwen3-VL-8B, 1,000 tokens x 4 (2x2 merge) x 0.576e9 x 2 = 4.61e12."""
    from estimator.physics.serving import vision_encoder_flops

    gemma, qwen = catalog.models[GEMMA], catalog.models[QWEN_VL]
    assert vision_encoder_flops(gemma, catalog.visual_tokens("image-chat", gemma)) == pytest.approx(3.44064e12)
    assert vision_encoder_flops(qwen, catalog.visual_tokens("image-chat", qwen)) == pytest.approx(4.608e12)
    assert catalog.visual_tokens("video-chat", qwen) == 900.0
    assert catalog.visual_tokens("lm-arena-chat", gemma) == 0.0
    llama = catalog.models["meta-llama/Llama-3.1-8B-Instruct"]
    assert vision_encoder_flops(llama, 1000.0) == 0.0  # no encoder fields: nothing counted


def test_vision_encoder_compute_enters_prefill_features(catalog):
    """An image request's prefill FLOPs per output token include the encoder: the feature rises by exactly
    log((prefill + encoder) / prefill) against the same row with the encoder taken out."""
    import math

    from estimator.physics.serving import prefill_flops
    from estimator.physics.step import linear_flops_per_token

    qwen = catalog.models[QWEN_VL]
    row = {"model_id": QWEN_VL, "task": "image-chat", "gpu_model": "H100-SXM", "num_gpus": 1, "max_num_seqs": 64,
           "avg_output_len": 695.0, "avg_input_len": 1050.0}
    with_encoder = featurize(pd.DataFrame([row]), catalog)["log_prefill_flops_per_output_token"].iloc[0]
    prefill = prefill_flops(qwen, linear_flops_per_token(qwen), 1050.0)
    expected = math.log((prefill + 4.608e12) / 695.0)
    assert with_encoder == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("vision", "patches"), [({"spatial_merge_size": 2}, 4.0), ({"pixel_shuffle_ratio": 0.5}, 4.0),
                                                ({}, 0.0)])
def test_hf_config_reads_patches_per_token(vision, patches):
    """Qwen-VL's 2x2 spatial merge and Llama 4's 0.5 pixel shuffle both put 4 patches behind a token; a vision
    config that says neither counts no encoder compute."""
    text = {"model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 4,
            "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 32000}
    config = {"model_type": "qwen3_vl", "text_config": text,
              "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "depth": 27, "patch_size": 16,
                                **vision}}
    assert architecture_from_hf_config(config, model_id="vl", source="test").vision_patches_per_token == patches


def test_assumptions_say_where_the_prompt_length_comes_from(catalog):
    """A Gemma 3 image request's printed workload names the model's 256 tokens per image; a text task says the
    task's mean (so a user can see why the default prompt is 306 tokens, not the task's 1,050)."""
    gemma = planning.resolve_target("gemma-3-12b", "image-chat", catalog)
    text = planning.resolve_target("gemma-3-12b", "chat", catalog)
    assert planning.input_tokens_note(gemma) == "the task's mean with this model's 256 tokens per image"
    assert planning.input_tokens_note(text) == "the task's mean"
