"""Checks before a sweep starts, and the CLI boundary that turns failures into one ``error:`` line.

Everything a user can get wrong (the spec file, the output folder, the machine, a missing optional package)
is found here, before any GPU work, and reported as one line with the exit codes of
:mod:`estimator.validation` (2 bad input or missing package, 3 configuration impossible on this machine,
1 internal error). Tracebacks are shown only with ``--debug`` or ``JOULES_ESTIMATE_DEBUG=1``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import typer

from estimator.validation import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    ImpossibleConfigurationError,
    InputError,
    MissingExtraError,
)
from measure.schema import SweepSpec


def fail(message: str, code: int) -> None:
    """Print one ``error:`` line on stderr and exit with ``code``."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors(debug: bool = False) -> Iterator[None]:
    """The measure CLI boundary: typed errors -> their exit code, anything else -> exit 1, one line each."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # noqa: BLE001 - the boundary: nothing below may print a traceback
        if debug or os.environ.get("JOULES_ESTIMATE_DEBUG"):
            raise
        code = getattr(exc, "exit_code", None)
        if code is None:
            code = EXIT_BAD_INPUT if isinstance(exc, ValueError | OSError) else EXIT_INTERNAL
        message = str(exc).strip() or type(exc).__name__
        if code == EXIT_INTERNAL:
            message = f"internal error ({type(exc).__name__}: {message}); --debug shows the traceback"
        fail(message, code)


def _pydantic_summary(err: Exception) -> str:
    errors = err.errors() if hasattr(err, "errors") else []
    if not errors:
        return str(err).splitlines()[0]
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "spec"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {str(first.get('msg', '')).removeprefix('Value error, ')}{more}"


def load_spec(path: Path):
    """Read and validate a sweep spec; every problem becomes one :class:`InputError` naming the file.

    Raises:
        InputError: missing, not a regular file, not UTF-8, not TOML, empty, unknown keys, bad values,
            unknown model or a shape the chosen backend cannot build.
    """
    from estimator.safe_io import UnsafeFileError, read_text_checked

    try:
        text = read_text_checked(path, encoding="utf-8")
    except UnsafeFileError as exc:
        raise InputError(str(exc)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    if not data:
        raise InputError(f"{path}: empty spec (needs name, batch_sizes and [model] model_id)")
    try:
        if data.get("kind") == "diffusion":
            from measure.diffusion_schema import DiffusionSweepSpec

            return DiffusionSweepSpec.model_validate(data)
        return SweepSpec.model_validate(data)
    except KeyError as exc:  # unknown model id (the catalog's message lists close matches)
        raise InputError(f"{path}: {str(exc).strip(chr(39))}") from None
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise InputError(f"{path}: {_pydantic_summary(exc)}") from None


def check_out_dir(out_dir: Path) -> None:
    """Refuse an output folder that cannot be created or written (before any measurement)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir}: exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise InputError(f"--out {out_dir}: not writable ({exc.strerror or exc})") from None


def check_machine(spec: SweepSpec) -> None:
    """The packages and GPUs the spec needs are here.

    Raises:
        MissingExtraError: torch (torch backend) or vllm (vllm backend) is not installed.
        ImpossibleConfigurationError: no CUDA GPU, or fewer GPUs than the spec's ``gpu_indices`` need.
    """
    engine = getattr(spec, "engine", "torch-cudagraph")
    if engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise MissingExtraError("vllm", "vllm", "the vllm backend", "pip install vllm (on a CUDA host)")
    try:
        import torch
    except ImportError:
        raise MissingExtraError("torch", "measure", "measure run") from None
    torch_options = getattr(spec, "torch", None)
    if engine == "torch-cudagraph" and getattr(torch_options, "device", "cuda") == "cpu":
        return
    if not torch.cuda.is_available():
        raise ImpossibleConfigurationError("no CUDA GPU is visible on this machine (torch.cuda.is_available() is "
                                           "False); measure run needs an NVIDIA GPU")
    count = torch.cuda.device_count()
    needed = max(getattr(spec, "gpu_indices", None) or [0]) + 1
    if needed > count:
        raise ImpossibleConfigurationError(f"the spec uses GPU indices up to {needed - 1} but this machine has "
                                           f"{count} GPU(s)")
