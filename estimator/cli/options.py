"""Options and error plumbing shared by the ``joules-estimate`` commands (typer only; nothing heavy imported).

Every user error ends in one ``error: ...`` line and exit status 2 (3 when the configuration cannot run); no
traceback reaches the user (set ``JOULES_ESTIMATE_DEBUG=1`` to see one). The library names its inputs by their
Python names; :func:`flag` turns them into this CLI's flags.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

USER_ERROR = 2  # estimator.validation.EXIT_BAD_INPUT; 3 (EXIT_IMPOSSIBLE) for configurations that cannot run

# ------------------------------------------------------------------------------------------------ options
Model = Annotated[str | None, typer.Option(
    metavar="NAME", help="Model: catalog key or alias, e.g. llama-70b, Qwen/Qwen3-8B, flux-dev (see `catalog list "
    "models`).")]
Task = Annotated[str | None, typer.Option(
    metavar="NAME", help="Task (workload): chat, reasoning, code, image, video, text-to-image, text-to-video (see "
    "`catalog list tasks`).")]
NumGpus = Annotated[list[int] | None, typer.Option(
    "--num-gpus", min=1, metavar="N", help="GPUs per replica; repeat to compare (default 1, 2, 4, 8).")]
MaxNumSeqs = Annotated[list[int] | None, typer.Option(
    "--max-num-seqs", min=1, metavar="N", help="LLM batch cap (vLLM max_num_seqs); repeat to compare (default "
    "8..4096).")]
Batch = Annotated[list[int] | None, typer.Option(
    "--batch", min=1, metavar="N", help="Batch size: diffusion images/videos per batch (default 1..32), or "
    "max_num_seqs for LLMs.")]
Precision = Annotated[str | None, typer.Option(
    metavar="NAME", help="LLM weight precision: bfloat16, fp8, mxfp4, int8, int4 (default: the model's native "
    "precision).")]
OutputTokens = Annotated[float | None, typer.Option(
    metavar="TOKENS", help="Mean output tokens per request (default: the model's measured mean on the task, else "
    "its publisher's models', else the task's; e.g. ~390 for Llama-3.1-8B on chat).")]
InputTokens = Annotated[float | None, typer.Option(
    metavar="TOKENS", help="Mean prompt tokens per request (default: the task profile).")]
MaxItl = Annotated[float | None, typer.Option(
    metavar="MS", help="Latency limit for LLMs: median inter-token latency in ms, e.g. 50.")]
MaxLatency = Annotated[float | None, typer.Option(
    metavar="S", help="Latency limit for diffusion: batch latency in seconds.")]
Steps = Annotated[int | None, typer.Option(
    min=1, metavar="N", help="Diffusion denoising steps (default: the catalog's benchmark setting for the model, "
    "e.g. 50 for FLUX.1-dev; see `catalog show models NAME`).")]
Resolution = Annotated[str | None, typer.Option(
    metavar="HxW", help="Diffusion output size HEIGHTxWIDTH in pixels, e.g. 1024x1024 (default: the model's "
    "benchmark setting).")]
Frames = Annotated[int | None, typer.Option(
    min=1, metavar="N", help="Video frames (text-to-video; default: the model's benchmark setting, e.g. 81 for "
    "Wan 2.1).")]
Seconds = Annotated[float | None, typer.Option(
    min=0.01, metavar="S", help="Video length in seconds instead of --frames, at the model's fps "
    "(models/catalog/video_fps.toml, e.g. 16 fps for Wan 2.1).")]
Ulysses = Annotated[int | None, typer.Option(
    min=1, metavar="N", help="Diffusion Ulysses sequence-parallel degree (default: the GPU count).")]
Ring = Annotated[int | None, typer.Option(
    min=1, metavar="N", help="Diffusion Ring sequence-parallel degree (default 1).")]
ModelConfig = Annotated[Path | None, typer.Option(
    metavar="FILE", exists=True, dir_okay=False, help="A model not in the catalog: its Hugging Face config.json or "
    "a TOML description; --model then names it (optional).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (the estimator.schema models) instead of tables.")]
Plot = Annotated[Path | None, typer.Option(
    metavar="FILE", dir_okay=False, help="Also draw a figure (.png or .svg; needs matplotlib, checked first).")]


# ------------------------------------------------------------------------------------------------ plumbing

def flag(field: str) -> str:
    """The CLI flag of a library input name: ``max_itl_ms`` -> ``--max-itl-ms``."""
    return "--" + field.replace("_", "-")


def fail(message: str, code: int = USER_ERROR):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors():
    """Turn exceptions into one ``error:`` line with the exit codes of :mod:`estimator.validation`: 2 for bad
    input (unknown or ambiguous name, malformed number or file, missing package), 3 for a configuration that
    cannot run, 1 for anything unexpected."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # the CLI boundary: nothing below may print a traceback
        if os.environ.get("JOULES_ESTIMATE_DEBUG"):
            raise
        from estimator.catalog.catalog import CatalogError, UnknownKeyError
        from estimator.schema import OptionError
        from estimator.validation import EXIT_INTERNAL

        message = exc.render(flag) if isinstance(exc, OptionError) else (str(exc).strip() or type(exc).__name__)
        code = getattr(exc, "exit_code", None)
        if code is None and isinstance(exc, UnknownKeyError | CatalogError | ValueError | OSError):
            code = USER_ERROR
        if code is not None and code != EXIT_INTERNAL:
            fail(" ".join(message.split()) if "\n" not in message else message.splitlines()[0], code)
        fail(f"internal error ({type(exc).__name__}: {message}); JOULES_ESTIMATE_DEBUG=1 shows the traceback",
             code=1)


def extra_models_from(model: str | None, model_config: Path | None) -> tuple[str | None, dict | None]:
    if model_config is None:
        return model, None
    from estimator.catalog.hf_config import load_model_description

    spec = load_model_description(model_config, model_id=model)
    name = model or spec.display_name
    return name, {name: spec}


def frames_from_seconds(model: str | None, frames: int | None, seconds: float | None, extra_models) -> int | None:
    """``--seconds`` as a frame count at the model's fps (catalog), on the model's 4k + 1 grid."""
    if seconds is None:
        return frames
    if frames is not None:
        fail("give --frames or --seconds, not both")
    from estimator.catalog.catalog import load_catalog
    from estimator.catalog.facility import frames_for_seconds, load_video_catalog

    model_id = model if extra_models and model in extra_models else load_catalog().resolve("model", model)
    video = load_video_catalog().models.get(model_id)
    if video is None:
        fail(f"no fps in models/catalog/video_fps.toml for {model_id}; give --frames")
    count = frames_for_seconds(seconds, video)
    typer.echo(f"note: {seconds:g} s at {video.fps:g} fps -> {count} frames ({count / video.fps:.2f} s)", err=True)
    return count


def require(**values) -> None:
    missing = [f"--{name.replace('_', '-')}" for name, value in values.items() if value is None]
    if missing:
        fail(f"missing {', '.join(missing)} (see joules-estimate --help)")


# one configuration (what-if base, explain): options shared by those commands
OneGpu = Annotated[str | None, typer.Option(metavar="GPU", help="GPU type, e.g. b200 (the base side of a "
                                            "what-if).")]
OneNumGpus = Annotated[int | None, typer.Option(min=1, metavar="N", help="GPUs per replica (default: the fewest "
                                                "of 1, 2, 4, 8 that fit).")]
OneMaxNumSeqs = Annotated[int | None, typer.Option(min=1, metavar="N", help="LLM batch cap, max_num_seqs "
                                                   "(default 128).")]
OneBatch = Annotated[int | None, typer.Option(min=1, metavar="N", help="Diffusion batch size (default 1).")]


def one_configuration(model, task, gpu, num_gpus, max_num_seqs, batch, precision, output_tokens, input_tokens,
                       steps, resolution, frames) -> dict:
    """Friendly-key configuration dict for estimator.serve.api.what_if / explain_configuration."""
    return {"model": model, "task": task, "gpu": gpu, "num_gpus": num_gpus, "max_num_seqs": max_num_seqs,
            "batch_size": batch, "precision": precision, "output_tokens": output_tokens,
            "input_tokens": input_tokens, "steps": steps, "resolution": resolution, "frames": frames}
