"""Stateless featurizer: configurations + catalogs -> feature frame.

Features come only from the configuration and the catalogs (no learned state). Each feature belongs to one
layer of the paper's diagnosis (algorithm / software / hardware) or is a latent metric derived from them, and
each latent metric names the latent factor it stands for (memory, compute volume, batch, utilization,
communication). :data:`LLM_FEATURES` / :data:`DIFFUSION_FEATURES` are the single source of that grouping
(reach them through :mod:`estimator.learn.family`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from estimator.catalog.catalog import ArchitectureSpec, Catalog, GPUSpec
from estimator.physics import memory, serving, step

#: the "_ref" roofline features and offsets are computed on this GPU, so that the boosters of those ensemble members
#: carry the hardware effect themselves (see the module docstring of estimator/learn/predictor.py)
REFERENCE_GPU = "H100-SXM"
ENGINE_CODES = {"vllm": 0, "xdit": 0, "torch-cudagraph": 1, "transformers": 2}


@dataclass(frozen=True)
class Feature:
    """One model input: its column name, diagnosis layer, and latent factor (for attribution)."""

    name: str
    layer: str  # algorithm | software | hardware | latent
    factor: str  # model | workload | batch | parallelism | precision | engine | gpu | memory | compute |
    #              communication | utilization


def _f(name: str, layer: str, factor: str) -> Feature:
    return Feature(name, layer, factor)


HARDWARE = [
    _f("gpu_memory_gb", "hardware", "gpu"), _f("gpu_bandwidth_tb_per_sec", "hardware", "gpu"),
    _f("gpu_peak_tflops", "hardware", "gpu"), _f("gpu_tdp_watts", "hardware", "gpu"),
    _f("gpu_generation", "hardware", "gpu"), _f("gpu_interconnect_gb_per_sec", "hardware", "gpu"),
    _f("num_gpus", "hardware", "gpu_count"),
]
LLM_FEATURES = [
    _f("log_total_params_billions", "algorithm", "model"), _f("log_active_params_billions", "algorithm", "model"),
    _f("is_multimodal", "algorithm", "workload"),
    _f("is_video", "algorithm", "workload"), _f("log_output_tokens", "algorithm", "workload"),
    _f("log_input_tokens", "algorithm", "workload"), _f("is_reasoning", "algorithm", "workload"),
    _f("log2_max_num_seqs", "software", "batch"), _f("tensor_parallel", "software", "parallelism"),
    _f("expert_parallel", "software", "parallelism"), _f("attention_data_parallel", "software", "parallelism"),
    _f("precision_bytes", "software", "precision"), _f("engine_code", "software", "engine"),
    *HARDWARE,
    _f("weight_gb_per_gpu", "latent", "memory"), _f("headroom_gb_per_gpu", "latent", "memory"),
    _f("kv_kb_per_token", "latent", "memory"), _f("log2_max_feasible_batch", "latent", "memory"),
    _f("batch_fill", "latent", "batch"), _f("log2_expected_batch", "latent", "batch"),
    _f("log_flops_per_token", "latent", "compute"), _f("log_bytes_per_token", "latent", "compute"),
    _f("kv_read_share", "latent", "compute"), _f("log_arithmetic_intensity", "latent", "utilization"),
    _f("compute_bound_share", "latent", "utilization"), _f("log_roofline_step_ms", "latent", "compute"),
    _f("log_roofline_step_ms_ref", "latent", "compute"),
    _f("log_prefill_flops_per_output_token", "latent", "compute"),
    _f("log_comm_bytes_per_token", "latent", "communication"),
    _f("touched_expert_share", "latent", "compute"), _f("tp_comm_share", "latent", "communication"),
]
DIFFUSION_FEATURES = [
    _f("log_denoiser_params_billions", "algorithm", "model"), _f("denoiser_hidden_size", "algorithm", "model"),
    _f("denoiser_num_layers", "algorithm", "model"), _f("uses_cfg", "algorithm", "model"),
    _f("log_text_encoder_params_billions", "algorithm", "model"), _f("is_video", "algorithm", "workload"),
    _f("log_latent_tokens", "algorithm", "workload"), _f("log_pixels", "algorithm", "workload"),
    _f("num_frames", "algorithm", "workload"), _f("inference_steps", "algorithm", "workload"),
    _f("log2_batch_size", "software", "batch"), _f("ulysses_degree", "software", "parallelism"),
    _f("ring_degree", "software", "parallelism"), _f("engine_code", "software", "engine"),
    *HARDWARE,
    _f("weight_gb_per_gpu", "latent", "memory"), _f("log_flops_per_step", "latent", "compute"),
    _f("attention_flops_share", "latent", "compute"), _f("log_tokens_per_gpu", "latent", "compute"),
    _f("log_roofline_latency_s", "latent", "compute"), _f("log_roofline_latency_s_ref", "latent", "compute"),
    _f("log_comm_bytes_per_step", "latent", "communication"),
]


def _hardware(gpu: GPUSpec, precision: str, num_gpus: int) -> dict:
    return {
        "gpu_memory_gb": gpu.memory_gb, "gpu_bandwidth_tb_per_sec": gpu.hbm_bandwidth_tb_per_sec,
        "gpu_peak_tflops": step.peak_flops(gpu, precision) / 1e12, "gpu_tdp_watts": gpu.tdp_watts,
        "gpu_generation": gpu.generation, "gpu_interconnect_gb_per_sec": gpu.interconnect_bandwidth_gb_per_sec,
        "num_gpus": num_gpus,
    }


def _llm_static(arch: ArchitectureSpec, precision: str, num_gpus: int, attention_dp: bool,
                gpu: GPUSpec) -> dict:
    weight_per_gpu = memory.weight_bytes_per_gpu(arch, precision, num_gpus, 2 if attention_dp else 1)
    return {
        "log_total_params_billions": math.log(arch.total_params_billions),
        "log_active_params_billions": math.log(arch.active_params_billions),
        "precision_bytes": memory.bytes_per_param(precision),
        "weight_gb_per_gpu": weight_per_gpu / memory.BILLION,
        "_weight_per_gpu": weight_per_gpu,
        "kv_kb_per_token": memory.kv_bytes_per_token(arch) / 1e3,
        "_linear_flops": step.linear_flops_per_token(arch),
    }


def llm_features_row(arch: ArchitectureSpec, gpu: GPUSpec, ref_gpu: GPUSpec, *, precision: str, num_gpus: int,
                     max_num_seqs: float, tensor_parallel: int, expert_parallel: int, data_parallel: int,
                     input_tokens: float, output_tokens: float, is_reasoning: bool, modality: str,
                     engine: str, kv_cache_dtype: str = "auto", static_cache: dict | None = None,
                     visual_tokens: float = 0.0) -> dict:
    """All LLM/MLLM features for one configuration (see :data:`LLM_FEATURES`); the decode-step physics is
    :func:`estimator.physics.step.decode_step`, the KV pool vLLM's rule
    (:func:`estimator.physics.memory.llm_kv_pool_bytes_per_gpu`).

    ``static_cache`` (optional, per call) memoises the parts that depend only on model, GPU and layout;
    ``visual_tokens`` (the request's image or video tokens, :meth:`Catalog.visual_tokens`) sets the vision
    encoder's share of prefill.
    """
    attention_dp = data_parallel > 1
    key = (arch.display_name, gpu.display_name, precision, num_gpus, attention_dp)
    if static_cache is None or key not in static_cache:
        static = _llm_static(arch, precision, num_gpus, attention_dp, gpu), _hardware(gpu, precision, num_gpus)
        if static_cache is not None:
            static_cache[key] = static
    else:
        static = static_cache[key]
    row, hardware = dict(static[0]), static[1]
    pool = memory.llm_kv_pool_bytes_per_gpu(arch, gpu, row.pop("_weight_per_gpu"), tensor_parallel, max_num_seqs)
    s = step.decode_step(arch, gpu, ref_gpu, precision=precision, num_gpus=num_gpus, max_num_seqs=max_num_seqs,
                         kv_pool_per_gpu_bytes=pool, data_parallel=data_parallel,
                         tensor_parallel=tensor_parallel, expert_parallel=expert_parallel,
                         input_tokens=input_tokens, output_tokens=output_tokens, kv_cache_dtype=kv_cache_dtype,
                         linear_flops=row.pop("_linear_flops"),
                         vision_flops_per_request=serving.vision_encoder_flops(arch, min(visual_tokens, input_tokens)))
    row.update(
        is_multimodal=float(modality in ("vision-text", "omni")), is_video=float(modality == "omni"),
        log_output_tokens=math.log(max(output_tokens, 1.0)), log_input_tokens=math.log(max(input_tokens, 1.0)),
        is_reasoning=float(is_reasoning), log2_max_num_seqs=math.log2(max_num_seqs),
        tensor_parallel=tensor_parallel, expert_parallel=expert_parallel, attention_data_parallel=float(attention_dp),
        engine_code=ENGINE_CODES.get(engine, 3), **hardware,
        headroom_gb_per_gpu=pool / memory.BILLION,
        log2_max_feasible_batch=math.log2(max(s.max_feasible_batch, 1.0)),
        batch_fill=max_num_seqs / max(s.max_feasible_batch, 1.0),
        log2_expected_batch=math.log2(s.batch),
        log_flops_per_token=math.log(s.flops / s.batch), log_bytes_per_token=math.log(s.bytes_moved / s.batch),
        kv_read_share=s.kv_bytes_read / s.bytes_moved, log_arithmetic_intensity=math.log(s.flops / s.bytes_moved),
        compute_bound_share=s.compute_s / (s.compute_s + s.memory_s),
        log_roofline_step_ms=math.log(1e3 * s.roofline_step_s),
        log_roofline_step_ms_ref=math.log(1e3 * s.ref_roofline_step_s),
        log_prefill_flops_per_output_token=math.log(s.prefill_flops_per_output_token),
        log_comm_bytes_per_token=math.log1p(s.comm_bytes_per_token), touched_expert_share=s.touched_expert_share,
        tp_comm_share=s.comm_s / s.roofline_step_s,
        # not a model input: TTFT from prefill physics alone, output as "physics only" (learn/prediction.py)
        ttft_physics_s=s.ttft_s,
        fits_in_memory=float(s.max_feasible_batch >= 1.0), max_feasible_batch=s.max_feasible_batch,
        # not a model input; bounds throughput predictions (estimator/learn/predictor.py TARGETS)
        log_throughput_ceiling=math.log(s.throughput_ceiling_tokens_per_sec),
    )
    return row


def diffusion_features_row(arch: ArchitectureSpec, gpu: GPUSpec, ref_gpu: GPUSpec, *, num_gpus: int,
                           batch_size: int, steps: int, height: int, width: int, frames: int, ulysses: int,
                           ring: int, engine: str, precision: str = "bfloat16") -> dict:
    """All diffusion features for one configuration (see :data:`DIFFUSION_FEATURES`); the physics is
    :func:`estimator.physics.step.diffusion_step`."""
    s = step.diffusion_step(arch, gpu, ref_gpu, num_gpus=num_gpus, batch_size=batch_size, steps=steps,
                            height=height, width=width, frames=frames, ulysses=ulysses, ring=ring,
                            precision=precision)
    return {
        "log_denoiser_params_billions": math.log(arch.denoiser_params_billions),
        "denoiser_hidden_size": arch.denoiser_hidden_size, "denoiser_num_layers": arch.denoiser_num_layers,
        "uses_cfg": float(arch.uses_cfg),
        "log_text_encoder_params_billions": math.log1p(arch.text_encoder_params_billions),
        "is_video": float(arch.modality == "text-to-video"), "log_latent_tokens": math.log(s.latent_tokens),
        "log_pixels": math.log(height * width), "num_frames": frames, "inference_steps": steps,
        "log2_batch_size": math.log2(batch_size), "ulysses_degree": ulysses, "ring_degree": ring,
        "engine_code": ENGINE_CODES.get(engine, 3), **_hardware(gpu, precision, num_gpus),
        "weight_gb_per_gpu": s.weight_bytes / memory.BILLION,
        "log_flops_per_step": math.log(s.flops_per_step),
        "attention_flops_share": 1 - s.linear_flops_per_step / s.flops_per_step,
        "log_tokens_per_gpu": math.log(s.latent_tokens * batch_size / num_gpus),
        "log_roofline_latency_s": math.log(s.compute_s + s.memory_s),
        "log_roofline_latency_s_ref": math.log(s.ref_compute_s + s.ref_memory_s),
        "log_comm_bytes_per_step": math.log1p(s.comm_bytes_per_step),
        "fits_in_memory": float(memory.diffusion_fit(arch, gpu, precision).fits),
    }


def is_blank(value) -> bool:
    """None, NaN or an empty string: a cell that means 'as the engine would' / 'the task profile'."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _value(row: dict, name: str, default):
    value = row.get(name, default)
    return default if is_blank(value) else value


def featurize(configs: pd.DataFrame, catalog: Catalog,
              extra_models: dict[str, ArchitectureSpec] | None = None) -> pd.DataFrame:
    """Features for a frame of configurations (canonical column names), index preserved.

    Required columns: ``model_id, task, gpu_model, num_gpus``; LLM rows also ``max_num_seqs`` (tensor/expert/
    data parallel default to the engine's choice, output/input tokens to the task profile), diffusion rows
    ``batch_size`` (steps, resolution, frames and Ulysses/Ring degrees default to the model's defaults).
    Keys must already be catalog keys (see :meth:`Catalog.resolve`).
    """
    return pd.DataFrame(feature_rows(configs.to_dict("records"), catalog, extra_models), index=configs.index)


def feature_rows(configs: list[dict], catalog: Catalog,
                 extra_models: dict[str, ArchitectureSpec] | None = None) -> list[dict]:
    """:func:`featurize` on configurations given as dicts (a missing key, None or NaN: the default), one dict of
    features per configuration."""
    extra_models = extra_models or {}
    ref_gpu = catalog.gpus[REFERENCE_GPU]
    rows = []
    static_cache: dict = {}
    for config in configs:
        model_id = config["model_id"]
        arch = extra_models.get(model_id) or catalog.models[model_id]
        gpu = catalog.gpus[config["gpu_model"]]
        task = catalog.tasks[config["task"]]
        num_gpus = int(config["num_gpus"])
        engine = _value(config, "engine", "xdit" if arch.kind == "diffusion" else "vllm")
        if arch.kind == "diffusion":
            ulysses, ring = default_sequence_parallel(num_gpus, _value(config, "ulysses_degree", None),
                                                      _value(config, "ring_degree", None))
            rows.append(diffusion_features_row(
                arch, gpu, ref_gpu, num_gpus=num_gpus, batch_size=int(config["batch_size"]),
                steps=int(_value(config, "inference_steps", arch.default_steps)),
                height=int(_value(config, "video_height", _value(config, "image_height", arch.default_height))),
                width=int(_value(config, "video_width", _value(config, "image_width", arch.default_width))),
                frames=int(_value(config, "num_frames", arch.default_frames or 1)),
                ulysses=int(ulysses), ring=int(ring), engine=engine))
            continue
        precision = _value(config, "weight_precision", arch.native_precision)
        tp, ep, dp = default_parallelism(arch, num_gpus)
        input_tokens = _value(config, "avg_input_len", None)
        if input_tokens is None:
            input_tokens = catalog.profile_input_tokens(config["task"], arch)[0]
        output_tokens = _value(config, "avg_output_len", None)
        if output_tokens is None:  # looked up only when the row gives none (featurize runs per row)
            output_tokens = catalog.profile_output_tokens(model_id, config["task"])[0]
        rows.append(llm_features_row(
            arch, gpu, ref_gpu, precision=precision, num_gpus=num_gpus,
            max_num_seqs=float(config["max_num_seqs"]),
            tensor_parallel=int(_value(config, "tensor_parallel", tp)),
            expert_parallel=int(_value(config, "expert_parallel", ep)),
            data_parallel=int(_value(config, "data_parallel", dp)),
            input_tokens=float(input_tokens),
            output_tokens=float(output_tokens),
            is_reasoning=task.reasoning, modality=task.modality if arch.kind == "mllm" else "text",
            engine=engine, kv_cache_dtype=str(_value(config, "kv_cache_dtype", "auto")),
            static_cache=static_cache, visual_tokens=catalog.visual_tokens(config["task"], arch)))
    return rows


#: vLLM's default max_num_seqs (https://docs.vllm.ai/en/v0.11.1/configuration/engine_args.html), used when a single
#: LLM configuration names no batch
DEFAULT_MAX_NUM_SEQS = 128


def default_sequence_parallel(num_gpus: int, ulysses: float | None = None, ring: float | None = None) -> tuple:
    """(Ulysses, Ring) degrees of an xDiT configuration as ML.ENERGY ran them: neither given -> Ulysses over every
    GPU and Ring 1; one given -> the other fills the GPU count (integer division); both given -> as given.
    The caller checks that Ulysses x Ring equals the GPU count."""
    if ulysses is None and ring is None:
        return num_gpus, 1
    if ulysses is None:
        return num_gpus // int(ring), ring
    if ring is None:
        return ulysses, num_gpus // int(ulysses)
    return ulysses, ring


def default_parallelism(arch: ArchitectureSpec, num_gpus: int) -> tuple[int, int, int]:
    """(tensor, expert, data) parallel degrees vLLM 0.11 setups in ML.ENERGY use: MoE -> expert parallel
    over all GPUs, dense -> tensor parallel over all GPUs."""
    if arch.architecture == "moe":
        return 1, num_gpus, 1
    return num_gpus, 1, 1
