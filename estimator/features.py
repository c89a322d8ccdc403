"""Stateless featurizer: configurations + catalogs -> feature frame.

Features come only from the configuration and the catalogs (no learned state). Each feature belongs to one
layer of the paper's diagnosis (algorithm / software / hardware) or is a latent metric derived from them, and
each latent metric names the latent factor it stands for (memory, compute volume, batch, utilization,
communication). :data:`LLM_FEATURES` / :data:`DIFFUSION_FEATURES` are the single source of that grouping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from estimator import physics, physics_unet
from estimator import physics_serving as serving
from estimator.catalog import ArchitectureSpec, Catalog, GPUSpec

#: roofline offsets are computed on this GPU so the learned part carries the hardware effect (see DESIGN §4)
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


def feature_names(family: str) -> list[str]:
    """Model input columns for a task family ('llm', 'mllm' -> the LLM set, or 'diffusion')."""
    return [f.name for f in (DIFFUSION_FEATURES if family == "diffusion" else LLM_FEATURES)]


def feature_table(family: str) -> list[Feature]:
    return DIFFUSION_FEATURES if family == "diffusion" else LLM_FEATURES


def _hardware(gpu: GPUSpec, precision: str, num_gpus: int) -> dict:
    return {
        "gpu_memory_gb": gpu.memory_gb, "gpu_bandwidth_tb_per_sec": gpu.hbm_bandwidth_tb_per_sec,
        "gpu_peak_tflops": physics.peak_flops(gpu, precision) / 1e12, "gpu_tdp_watts": gpu.tdp_watts,
        "gpu_generation": gpu.generation, "gpu_interconnect_gb_per_sec": gpu.interconnect_bandwidth_gb_per_sec,
        "num_gpus": num_gpus,
    }


def _llm_static(arch: ArchitectureSpec, precision: str, num_gpus: int, attention_dp: bool,
                gpu: GPUSpec) -> dict:
    weight_per_gpu = physics.weight_bytes_per_gpu(arch, precision, num_gpus, 2 if attention_dp else 1)
    return {
        "log_total_params_billions": math.log(arch.total_params_billions),
        "log_active_params_billions": math.log(arch.active_params_billions),
        "precision_bytes": physics.bytes_per_param(precision),
        "weight_gb_per_gpu": weight_per_gpu / physics.BILLION,
        "kv_kb_per_token": physics.kv_bytes_per_token(arch) / 1e3,
        "_weight_per_gpu": weight_per_gpu,
        "_linear_flops": physics.linear_flops_per_token(arch),
    }


def kv_pool_and_feasible_batch(arch: ArchitectureSpec, gpu: GPUSpec, *, weight_bytes_per_gpu: float,
                               num_gpus: int, tensor_parallel: int, attention_dp: bool, max_num_seqs: float,
                               context_tokens: float, kv_cache_dtype: str = "auto") -> tuple[float, float]:
    """(KV pool per GPU in bytes, sequences whose cache fits): vLLM's capacity rule, the one "does it fit" test
    (:func:`estimator.physics_serving.kv_pool_bytes_per_gpu`), used by features and by prediction alike.

    Paged KV: a running batch holds sequences at every stage, ``context_tokens`` each on average. The pool is
    summed over GPUs; MLA's latent cache is replicated on every tensor-parallel rank.
    """
    activation = serving.activation_peak_bytes(arch, tensor_parallel, max_num_seqs,
                                               serving.profile_batched_tokens(gpu))
    pool = serving.kv_pool_bytes_per_gpu(gpu, weight_bytes_per_gpu, activation)
    per_seq = serving.kv_bytes_per_sequence_at(arch, context_tokens, kv_cache_dtype)
    copies = num_gpus if (arch.attention == "mla" and not attention_dp) else 1
    feasible = physics.max_batch_that_fits(pool / physics.BILLION, num_gpus, per_seq, copies)
    return pool, feasible


def llm_features_row(arch: ArchitectureSpec, gpu: GPUSpec, ref_gpu: GPUSpec, *, precision: str, num_gpus: int,
                     max_num_seqs: float, tensor_parallel: int, expert_parallel: int, data_parallel: int,
                     input_tokens: float, output_tokens: float, is_reasoning: bool, modality: str,
                     engine: str, kv_cache_dtype: str = "auto", static_cache: dict | None = None) -> dict:
    """All LLM/MLLM features for one configuration (see :data:`LLM_FEATURES`).

    ``static_cache`` (optional, per call) memoises the parts that depend only on model, GPU and layout.
    """
    attention_dp = data_parallel > 1
    key = (arch.display_name, gpu.display_name, precision, num_gpus, attention_dp)
    if static_cache is None or key not in static_cache:
        static = _llm_static(arch, precision, num_gpus, attention_dp, gpu)
        if static_cache is not None:
            static_cache[key] = static
    else:
        static = static_cache[key]
    row = dict(static)
    linear_flops = row.pop("_linear_flops")
    context = input_tokens + output_tokens / 2.0  # mean context seen by a decode step
    pool, feasible = kv_pool_and_feasible_batch(
        arch, gpu, weight_bytes_per_gpu=row.pop("_weight_per_gpu"), num_gpus=num_gpus,
        tensor_parallel=tensor_parallel, attention_dp=attention_dp, max_num_seqs=max_num_seqs,
        context_tokens=context, kv_cache_dtype=kv_cache_dtype)
    batch = max(min(max_num_seqs, feasible), 1.0)
    weights_read, touched_share = _weights_read(arch, precision, batch, data_parallel)
    kv_read = batch * serving.kv_bytes_per_sequence_at(arch, context, kv_cache_dtype)
    flops_step = batch * (linear_flops + physics.attention_flops_per_token(arch, context))
    bytes_step = weights_read + kv_read
    comm_s = serving.tensor_parallel_step_time_s(arch, gpu, tensor_parallel, batch)
    step_s = _step_s(flops_step, bytes_step, gpu, precision, num_gpus) + comm_s
    ref_step_s = (_step_s(flops_step, bytes_step, ref_gpu, precision, num_gpus)
                  + serving.tensor_parallel_step_time_s(arch, ref_gpu, tensor_parallel, batch))
    compute_s, memory_s = physics.roofline_step_time_s(flops_step, bytes_step, gpu, precision, num_gpus)
    # the throughput ceiling also counts prefill: each output token carries input/output prompt tokens of
    # compute (not a model input; used only to bound predictions, see predictor.TARGETS)
    prefill_per_seq = serving.prefill_flops(arch, linear_flops, input_tokens)
    ceiling_compute_s, _ = physics.roofline_step_time_s(
        flops_step + batch * prefill_per_seq / max(output_tokens, 1.0), bytes_step, gpu, precision, num_gpus)
    comm = (physics.tensor_parallel_comm_bytes_per_token(arch, tensor_parallel)
            + physics.expert_parallel_comm_bytes_per_token(arch, expert_parallel))
    row.update(
        is_multimodal=float(modality in ("vision-text", "omni")), is_video=float(modality == "omni"),
        log_output_tokens=math.log(max(output_tokens, 1.0)), log_input_tokens=math.log(max(input_tokens, 1.0)),
        is_reasoning=float(is_reasoning), log2_max_num_seqs=math.log2(max_num_seqs),
        tensor_parallel=tensor_parallel, expert_parallel=expert_parallel, attention_data_parallel=float(attention_dp),
        engine_code=ENGINE_CODES.get(engine, 3), **_hardware(gpu, precision, num_gpus),
        headroom_gb_per_gpu=pool / physics.BILLION,
        log2_max_feasible_batch=math.log2(max(feasible, 1.0)), batch_fill=max_num_seqs / max(feasible, 1.0),
        log2_expected_batch=math.log2(batch),
        log_flops_per_token=math.log(flops_step / batch), log_bytes_per_token=math.log(bytes_step / batch),
        kv_read_share=kv_read / bytes_step, log_arithmetic_intensity=math.log(flops_step / bytes_step),
        compute_bound_share=compute_s / (compute_s + memory_s),
        log_roofline_step_ms=math.log(1e3 * step_s), log_roofline_step_ms_ref=math.log(1e3 * ref_step_s),
        log_prefill_flops_per_output_token=math.log(max(prefill_per_seq, 1.0) / max(output_tokens, 1.0)),
        log_comm_bytes_per_token=math.log1p(comm), touched_expert_share=touched_share,
        tp_comm_share=comm_s / step_s,
        fits_in_memory=float(feasible >= 1.0), max_feasible_batch=feasible,
        log_throughput_ceiling=math.log(batch / (ceiling_compute_s + memory_s + comm_s)),
        ttft_physics_s=serving.ttft_physics_s(prefill_per_seq + flops_step, weights_read + kv_read, 1.0,
                                              physics.peak_flops(gpu, precision),
                                              gpu.hbm_bandwidth_tb_per_sec * 1e12, num_gpus) + comm_s,
    )
    return row


def _step_s(flops: float, bytes_moved: float, gpu: GPUSpec, precision: str, num_gpus: int) -> float:
    """Decode step time at peak rates (see :func:`estimator.physics_serving.decode_step_time_s`)."""
    return serving.decode_step_time_s(*physics.roofline_step_time_s(flops, bytes_moved, gpu, precision, num_gpus))


def _weights_read(arch: ArchitectureSpec, precision: str, batch: float, data_parallel: int) -> tuple[float, float]:
    """(weight bytes one decode step reads over all GPUs, share of routed experts touched)."""
    weights_read = physics.weight_bytes_read_per_step(arch, precision, batch)
    if arch.architecture != "moe":
        return weights_read, 1.0
    touched = physics.expected_distinct_experts(arch.num_experts, arch.num_experts_per_token, batch)
    if data_parallel > 1:
        touched_bytes = physics.moe_layer_count(arch) * touched * physics.expert_bytes(arch, precision)
        weights_read = serving.attention_dp_weight_bytes_read(arch, weights_read - touched_bytes, touched_bytes,
                                                              data_parallel)
    return weights_read, touched / arch.num_experts


def diffusion_features_row(arch: ArchitectureSpec, gpu: GPUSpec, ref_gpu: GPUSpec, *, num_gpus: int,
                           batch_size: int, steps: int, height: int, width: int, frames: int, ulysses: int,
                           ring: int, engine: str, precision: str = "bfloat16") -> dict:
    """All diffusion features for one configuration (see :data:`DIFFUSION_FEATURES`)."""
    tokens = physics.latent_tokens(arch, height, width, frames)
    if arch.denoiser_type == "unet":  # stage by stage: attention only in the transformer blocks
        flops_step, attention_flops = physics_unet.unet_flops_per_step(arch, height, width, batch_size)
        linear_only = flops_step - attention_flops
    else:
        flops_step = physics.diffusion_flops_per_step(arch, tokens, batch_size)
        linear_only = 2.0 * arch.denoiser_params_billions * physics.BILLION * tokens * batch_size * (
            2 if arch.uses_cfg else 1)
    total_flops = flops_step * steps
    weight_bytes = physics.weight_bytes_total(arch, precision)
    compute_s, memory_s = physics.roofline_step_time_s(total_flops, weight_bytes * steps, gpu, precision, num_gpus)
    ref_c, ref_m = physics.roofline_step_time_s(total_flops, weight_bytes * steps, ref_gpu, precision, num_gpus)
    comm = physics.sequence_parallel_comm_bytes_per_step(arch, tokens, batch_size, ulysses, ring)
    return {
        "log_denoiser_params_billions": math.log(arch.denoiser_params_billions),
        "denoiser_hidden_size": arch.denoiser_hidden_size, "denoiser_num_layers": arch.denoiser_num_layers,
        "uses_cfg": float(arch.uses_cfg),
        "log_text_encoder_params_billions": math.log1p(arch.text_encoder_params_billions),
        "is_video": float(arch.modality == "text-to-video"), "log_latent_tokens": math.log(tokens),
        "log_pixels": math.log(height * width), "num_frames": frames, "inference_steps": steps,
        "log2_batch_size": math.log2(batch_size), "ulysses_degree": ulysses, "ring_degree": ring,
        "engine_code": ENGINE_CODES.get(engine, 3), **_hardware(gpu, precision, num_gpus),
        "weight_gb_per_gpu": weight_bytes / physics.BILLION,
        "log_flops_per_step": math.log(flops_step), "attention_flops_share": 1 - linear_only / flops_step,
        "log_tokens_per_gpu": math.log(tokens * batch_size / num_gpus),
        "log_roofline_latency_s": math.log(compute_s + memory_s),
        "log_roofline_latency_s_ref": math.log(ref_c + ref_m),
        "log_comm_bytes_per_step": math.log1p(comm),
        "fits_in_memory": float(weight_bytes < serving.GPU_MEMORY_UTILIZATION * serving.usable_memory_bytes(gpu)),
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
    extra_models = extra_models or {}
    ref_gpu = catalog.gpus[REFERENCE_GPU]
    rows = []
    static_cache: dict = {}
    for config in configs.to_dict("records"):
        model_id = config["model_id"]
        arch = extra_models.get(model_id) or catalog.models[model_id]
        gpu = catalog.gpus[config["gpu_model"]]
        task = catalog.tasks[config["task"]]
        num_gpus = int(config["num_gpus"])
        engine = _value(config, "engine", "xdit" if arch.kind == "diffusion" else "vllm")
        if arch.kind == "diffusion":
            rows.append(diffusion_features_row(
                arch, gpu, ref_gpu, num_gpus=num_gpus, batch_size=int(config["batch_size"]),
                steps=int(_value(config, "inference_steps", arch.default_steps)),
                height=int(_value(config, "video_height", _value(config, "image_height", arch.default_height))),
                width=int(_value(config, "video_width", _value(config, "image_width", arch.default_width))),
                frames=int(_value(config, "num_frames", arch.default_frames or 1)),
                ulysses=int(_value(config, "ulysses_degree", num_gpus)),
                ring=int(_value(config, "ring_degree", 1)), engine=engine))
            continue
        precision = _value(config, "weight_precision", arch.native_precision)
        tp, ep, dp = default_parallelism(arch, num_gpus)
        rows.append(llm_features_row(
            arch, gpu, ref_gpu, precision=precision, num_gpus=num_gpus,
            max_num_seqs=float(config["max_num_seqs"]),
            tensor_parallel=int(_value(config, "tensor_parallel", tp)),
            expert_parallel=int(_value(config, "expert_parallel", ep)),
            data_parallel=int(_value(config, "data_parallel", dp)),
            input_tokens=float(_value(config, "avg_input_len", task.mean_input_tokens)),
            output_tokens=float(_value(config, "avg_output_len", task.mean_output_tokens)),
            is_reasoning=task.reasoning, modality=task.modality if arch.kind == "mllm" else "text",
            engine=engine, kv_cache_dtype=str(_value(config, "kv_cache_dtype", "auto")),
            static_cache=static_cache))
    return pd.DataFrame(rows, index=configs.index)


def default_parallelism(arch: ArchitectureSpec, num_gpus: int) -> tuple[int, int, int]:
    """(tensor, expert, data) parallel degrees vLLM 0.11 setups in ML.ENERGY use: MoE -> expert parallel
    over all GPUs, dense -> tensor parallel over all GPUs."""
    if arch.architecture == "moe":
        return 1, num_gpus, 1
    return num_gpus, 1, 1
