"""One validation layer for every numeric input: CLI options, ``--set`` values, CSV cells, API arguments and
Hugging Face config fields all pass through :func:`check_number`, against one table of bounds (:data:`BOUNDS`).

A bound says what a value may physically or practically be (its ``reason``); it is not the predictor's training
range. Values inside the bounds but outside what the predictor was trained on are predicted with a warning
(:func:`out_of_training_range`). Parallelism follows the rules vLLM applies when it builds a model
(:func:`check_parallelism`). Errors are one line naming the field and the value.

Exit codes shared by every command (``joules-estimate`` and ``joules-estimate measure``):
``0`` done; ``1`` internal error (a bug: please report; ``--debug`` / ``JOULES_ESTIMATE_DEBUG=1`` shows the
traceback); ``2`` bad input or usage (unknown name, malformed number or file, missing optional package);
``3`` the configuration is well-formed but cannot run (does not fit in memory, a parallel layout the engine
refuses, fewer GPUs on this machine than the spec needs).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_IMPOSSIBLE = 3


class InputError(ValueError):
    """A malformed or out-of-bounds input (exit 2); the message names the field and the value."""

    exit_code = EXIT_BAD_INPUT


class ImpossibleConfigurationError(ValueError):
    """A well-formed configuration that cannot run (exit 3); the message carries the arithmetic or the rule.

    ``result`` holds what was computed anyway (an ``Estimate`` or ``WhatIf`` with the reasons), when there is one.
    """

    exit_code = EXIT_IMPOSSIBLE

    def __init__(self, message: str, result: Any = None):
        super().__init__(message)
        self.result = result


class MissingExtraError(ImportError):
    """An optional package is not installed (exit 2); the message names the extra and its install command."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, package: str, extra: str, purpose: str, install: str = ""):
        install = install or f"pip install -e '.[{extra}]'"
        super().__init__(f"{purpose} needs {package} (the {extra} extra), which is not installed: {install}")


@dataclass(frozen=True)
class Bound:
    """What one numeric input may be: whole or real, inclusive limits, and why."""

    integral: bool
    minimum: float
    maximum: float
    reason: str


_GPUS = "1-64 GPUs per replica (eight 8-GPU nodes; ML.ENERGY measured 1-8)"
_DEGREE = "a parallel degree is at most the 64 GPUs a replica may have"
_PIXELS = "64-8,192 px per side (8,192 px is 8K; the catalog's models default to at most 1,360 px)"
_TOKENS = "1-10,000,000 tokens per request (10M is the longest context window of any published model)"

#: every numeric input, stated once (CLI and API names map onto these columns in :data:`ALIASES`)
BOUNDS: dict[str, Bound] = {
    "num_gpus": Bound(True, 1, 64, _GPUS),
    "max_num_seqs": Bound(True, 1, 65_536, "batch 1-65,536 sequences (vLLM max_num_seqs; ML.ENERGY swept 8-4,096)"),
    "batch_size": Bound(True, 1, 65_536, "batch 1-65,536 images or videos"),
    "tensor_parallel": Bound(True, 1, 64, _DEGREE),
    "expert_parallel": Bound(True, 1, 64, _DEGREE),
    "data_parallel": Bound(True, 1, 64, _DEGREE),
    "ulysses_degree": Bound(True, 1, 64, _DEGREE),
    "ring_degree": Bound(True, 1, 64, _DEGREE),
    "avg_input_len": Bound(False, 1, 1e7, _TOKENS),
    "avg_output_len": Bound(False, 1, 1e7, _TOKENS),
    "inference_steps": Bound(True, 1, 1_000, "1-1,000 denoising steps (1,000 is DDPM's full schedule)"),
    "image_height": Bound(True, 64, 8_192, _PIXELS),
    "image_width": Bound(True, 64, 8_192, _PIXELS),
    "video_height": Bound(True, 64, 8_192, _PIXELS),
    "video_width": Bound(True, 64, 8_192, _PIXELS),
    "num_frames": Bound(True, 1, 1_024, "1-1,024 frames per video (catalog models generate 49-129)"),
    "max_itl_ms": Bound(False, 1e-3, 3.6e6, "a latency limit of 1 us to 1 hour per token"),
    "max_latency_s": Bound(False, 1e-3, 86_400, "a batch latency limit of 1 ms to 1 day"),
    "max_p90_itl_ms": Bound(False, 1e-3, 3.6e6, "a tail latency limit of 1 us to 1 hour per token"),
    "demand_rps": Bound(False, 1e-6, 1e9, "1e-6 to 1e9 requests per second"),
    "demand_tokens_per_sec": Bound(False, 1e-6, 1e12, "1e-6 to 1e12 output tokens per second"),
    "power_budget_kw": Bound(False, 1e-3, 1e7, "1 W to 10 GW of GPU power"),
    "gpu_budget": Bound(True, 1, 10_000_000, "1 to 10 million GPUs"),
    # Hugging Face config.json fields (decoder shapes)
    "num_hidden_layers": Bound(True, 1, 1_000, "1-1,000 layers"),
    "hidden_size": Bound(True, 1, 1_000_000, "a hidden width of 1 to 10^6"),
    "num_attention_heads": Bound(True, 1, 10_000, "1-10,000 attention heads"),
    "num_key_value_heads": Bound(True, 1, 10_000, "1-10,000 key/value heads"),
    "head_dim": Bound(True, 1, 100_000, "a head width of 1 to 10^5"),
    "intermediate_size": Bound(True, 1, 10_000_000, "an MLP width of 1 to 10^7"),
    "moe_intermediate_size": Bound(True, 1, 10_000_000, "an expert MLP width of 1 to 10^7"),
    "vocab_size": Bound(True, 1, 100_000_000, "a vocabulary of 1 to 10^8 tokens"),
    "num_experts": Bound(True, 1, 100_000, "1-100,000 experts"),
    "num_experts_per_tok": Bound(True, 1, 100_000, "1-100,000 experts per token"),
    "max_position_embeddings": Bound(True, 1, 1e9, "a context of 1 to 10^9 positions"),
}

#: friendly names (CLI options, API arguments, --set keys) -> the column whose bound applies
ALIASES = {"batch": "max_num_seqs", "input_tokens": "avg_input_len", "output_tokens": "avg_output_len",
           "gpus": "num_gpus", "tp": "tensor_parallel", "ep": "expert_parallel", "dp": "data_parallel",
           "ulysses": "ulysses_degree", "ring": "ring_degree",
           "steps": "inference_steps", "frames": "num_frames", "height": "image_height", "width": "image_width",
           "n_layer": "num_hidden_layers", "num_kv_heads": "num_key_value_heads",
           "num_local_experts": "num_experts", "n_routed_experts": "num_experts"}


def bound_of(field: str) -> Bound | None:
    """The bound of a column or friendly name (None for a name that is not numeric)."""
    return BOUNDS.get(field) or BOUNDS.get(ALIASES.get(field, ""))


def _number(field: str, value: Any) -> float | int:
    """``value`` as a Python number: refuses booleans and text that is not a plain decimal number."""
    if type(value).__name__ in ("bool", "bool_"):
        raise InputError(f"{field}={value!r} is a boolean, not a number")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            raise InputError(f"{field}={value!r} is not a number") from None
    raise InputError(f"{field}={value!r} is a {type(value).__name__}, not a number")


def _short(value: Any) -> str:
    """A value as the user would read it back: long numbers in scientific notation, never 300 digits."""
    if isinstance(value, int) and abs(value) >= 10**9:
        return f"{float(value):.3g}"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 10**9:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.6g}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_number(field: str, value: Any, *, bound: Bound | None = None) -> int | float:
    """Validate one numeric input and return it as ``int`` (integral fields) or ``float``.

    Args:
        field: the column, option or argument name; named in the error.
        value: a number, or text as read from a CSV cell or ``--set``.
        bound: overrides the table's bound (default: ``BOUNDS[field]`` or its alias).

    Raises:
        InputError: not a number, a boolean, not finite, fractional where whole, or outside the bound
            (the message names the field, the value, the range and its reason).
    """
    bound = bound or bound_of(field)
    kind = type(value)
    if bound is not None and (kind is float or kind is int) and bound.minimum <= value <= bound.maximum and (
            not bound.integral or kind is int or value.is_integer()):  # fast path: a plain number in range
        return int(value) if bound.integral else float(value)
    number = _number(field, value)
    if isinstance(number, float) and not math.isfinite(number):
        raise InputError(f"{field}={_short(value)} is not a finite number")
    if bound is None:
        return number
    if bound.integral:
        if isinstance(number, float) and not number.is_integer():
            raise InputError(f"{field}={_short(value)} must be a whole number")
        number = int(number)
    else:
        number = float(number)
    if not bound.minimum <= number <= bound.maximum:
        raise InputError(f"{field}={_short(number)} is outside {_short(bound.minimum)}-{_short(bound.maximum)} "
                         f"({bound.reason})")
    return number


def check_numbers(values: dict[str, Any], fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``values`` with every numeric field (those in :data:`BOUNDS` or :data:`ALIASES`) checked and converted;
    ``None`` values are left alone. Raises :class:`InputError` at the first bad one."""
    out = dict(values)
    for field, value in values.items():
        if value is None or (fields is not None and field not in fields) or bound_of(field) is None:
            continue
        if isinstance(value, list | tuple):
            out[field] = [check_number(field, item) for item in value]
        else:
            out[field] = check_number(field, value)
    return out


def check_parallelism(*, num_gpus: int, tensor_parallel: int, expert_parallel: int = 1, data_parallel: int = 1,
                      num_attention_heads: int = 0, num_kv_heads: int = 0, num_experts: int = 0,
                      model: str = "the model") -> None:
    """The layout checks vLLM applies when it builds a model (vLLM 0.11 ``ParallelConfig``/``ModelConfig``).

    Layouts are written as ML.ENERGY records them (``datasets/mlenergy-v3``): dense models run tensor x data
    parallel over the GPUs; a mixture-of-experts model with vLLM's ``--enable-expert-parallel`` has
    ``expert_parallel`` = the GPU count, and its attention runs data parallel ``data_parallel`` and tensor
    parallel over the rest (recorded as ``tensor_parallel=1``, ``data_parallel=1`` for attention TP = all GPUs).

    - without expert parallelism, GPUs = tensor parallel x data parallel (vLLM's world size, no pipeline);
    - with it, expert parallel = the GPU count, only for models with experts, at most one rank per expert;
    - attention heads divisible by the attention tensor-parallel degree (``ModelConfig.verify_with_parallel_config``);
    - KV heads divisible by it, or it a multiple of the KV heads (they then replicate; ``QKVParallelLinear``).

    Raises:
        ImpossibleConfigurationError: naming the rule and the numbers.
    """
    tp, ep, dp = tensor_parallel, expert_parallel, data_parallel
    if ep == 1 and tp * dp != num_gpus:
        raise ImpossibleConfigurationError(f"tensor_parallel x data_parallel = {tp} x {dp} must equal num_gpus = "
                                           f"{num_gpus}")
    attention_tp = tp
    if ep > 1:
        if not num_experts:
            raise ImpossibleConfigurationError(f"expert_parallel={ep} needs a mixture-of-experts model; {model} "
                                               f"has no experts")
        if ep != num_gpus or num_gpus % (tp * dp):
            raise ImpossibleConfigurationError(f"expert_parallel={ep} must span all {num_gpus} GPUs with "
                                               f"tensor x data parallel ({tp} x {dp}) dividing them")
        if ep > num_experts:
            raise ImpossibleConfigurationError(f"expert_parallel={ep} exceeds {model}'s {num_experts} experts")
        attention_tp = num_gpus // dp if tp == 1 else tp
    if num_attention_heads and num_attention_heads % attention_tp:
        raise ImpossibleConfigurationError(f"tensor parallel {attention_tp} does not divide {model}'s "
                                           f"{num_attention_heads} attention heads (vLLM requires it)")
    kv = num_kv_heads or num_attention_heads
    if kv and (kv % attention_tp if attention_tp < kv else attention_tp % kv):
        raise ImpossibleConfigurationError(f"{model}'s {kv} KV heads can neither be split nor replicated over "
                                           f"tensor parallel {attention_tp} (vLLM requires one to divide the other)")


_HF_INTEGRAL = ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "hidden_size", "n_embd", "d_model",
                "num_attention_heads", "n_head", "num_heads", "n_heads", "num_key_value_heads", "num_kv_heads",
                "head_dim", "intermediate_size", "moe_intermediate_size", "vocab_size", "num_local_experts",
                "num_experts", "n_routed_experts", "num_experts_per_tok", "max_position_embeddings")


def check_hf_config(config: dict[str, Any], source: str) -> None:
    """Field checks on a Hugging Face ``config.json`` (top level and ``text_config``) before it is used.

    Shape fields must be whole positive numbers in range (no booleans, no 2.5 layers, no NaN/Infinity),
    ``num_attention_heads`` a multiple of ``num_key_value_heads``, and ``num_experts_per_tok`` at most the
    expert count.

    Raises:
        InputError: naming the file, the field and the value.
    """
    for scope in (config, *(config.get(k) for k in ("text_config", "llm_config", "language_config"))):
        if not isinstance(scope, dict):
            continue
        values = {}
        for field in _HF_INTEGRAL:
            if scope.get(field) is None:
                continue
            bound = bound_of(field) or Bound(True, 1, 1e9, "a positive whole number")
            try:
                values[field] = check_number(field, scope[field], bound=bound)
            except InputError as exc:
                raise InputError(f"{source}: {exc}") from None
        heads = values.get("num_attention_heads")
        kv = values.get("num_key_value_heads") or values.get("num_kv_heads")
        if heads and kv and heads % kv:
            raise InputError(f"{source}: num_attention_heads={heads} is not a multiple of num_key_value_heads={kv}")
        experts = values.get("num_local_experts") or values.get("num_experts") or values.get("n_routed_experts")
        top_k = values.get("num_experts_per_tok")
        if experts and top_k and top_k > experts:
            raise InputError(f"{source}: num_experts_per_tok={top_k} exceeds the {experts} experts")


def refuse_json_constant(name: str) -> None:
    """``json.loads(..., parse_constant=refuse_json_constant)``: NaN and Infinity are not JSON numbers."""
    raise InputError(f"{name} is not a valid JSON number (NaN and Infinity are refused)")


#: inputs whose trained range a predictor card records (``domain[family].ranges``) for extrapolation warnings
TRAINED_INPUTS = ("num_gpus", "max_num_seqs", "batch_size", "avg_input_len", "avg_output_len", "inference_steps",
                  "image_height", "image_width", "video_height", "video_width", "num_frames")
#: of those, the ones only some rows of a family have (images vs videos); the others count only when every
#: training row has them (the published LLM data has no avg_input_len, so no range is claimed for it)
PARTIAL_INPUTS = ("image_height", "image_width", "video_height", "video_width", "num_frames")


def trained_input_ranges(frame: Any) -> dict[str, list[float]]:
    """Input column -> [min, max] over a family's training rows (a pandas frame), per the rules above."""
    ranges = {}
    for column in TRAINED_INPUTS:
        if column not in frame:
            continue
        present = frame[column].notna()
        if present.all() or (column in PARTIAL_INPUTS and present.any()):
            ranges[column] = [float(frame[column].min()), float(frame[column].max())]
    return ranges


def trained_ranges(domain: Any) -> dict[str, tuple[float, float]]:
    """Input -> (min, max) the predictor was trained on, from one family's card ``domain``.

    Uses ``domain["ranges"]`` (written by training since this module exists) and, for older cards, the batch and
    GPU-count ranges every card has.
    """
    cached = _RANGES.get(id(domain))
    if cached is not None and cached[0] is domain:
        return cached[1]
    ranges = _trained_ranges(domain.model_dump() if hasattr(domain, "model_dump") else domain)
    _RANGES[id(domain)] = (domain, ranges)
    return ranges


#: id(domain) -> (domain, ranges); cards are read once per process, so this stays tiny
_RANGES: dict[int, tuple[Any, dict[str, tuple[float, float]]]] = {}


def _trained_ranges(domain: dict[str, Any]) -> dict[str, tuple[float, float]]:
    ranges = {k: (float(lo), float(hi)) for k, (lo, hi) in (domain.get("ranges") or {}).items()}
    if "batch_min" in domain and "batch_max" in domain:
        for column in ("max_num_seqs", "batch_size"):
            ranges.setdefault(column, (float(domain["batch_min"]), float(domain["batch_max"])))
    if domain.get("num_gpus"):
        ranges.setdefault("num_gpus", (float(min(domain["num_gpus"])), float(max(domain["num_gpus"]))))
    return ranges


def out_of_training_range(values: dict[str, Any], domain: Any) -> list[str]:
    """One warning per input outside the range the predictor was trained on, naming the input and the range."""
    warnings = []
    for column, (lo, hi) in trained_ranges(domain).items():
        value = values.get(column)
        if value is None or isinstance(value, str):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number) and not lo <= number <= hi:
            warnings.append(f"{column} {_short(number)} outside the measured range {_short(lo)}-{_short(hi)} "
                            f"(extrapolating)")
    return warnings
