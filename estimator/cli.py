"""``joules-estimate``: the command line, a thin layer over :mod:`estimator.api`.

Only typer is imported at module import (``--help`` stays fast); pandas, LightGBM, pydantic models and matplotlib
are imported inside the commands that need them. Every user error (unknown name, bad number, malformed CSV, a
configuration that cannot fit) ends in one ``error: ...`` line and exit status 2; no traceback reaches the user
(set ``JOULES_ESTIMATE_DEBUG=1`` to see one).
"""

from __future__ import annotations

import importlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from estimator import cli_render as render

EXAMPLES = """
Examples:

  joules-estimate --model llama-70b --task chat --gpu b200

  joules-estimate --model flux-dev --task text-to-image --gpu h100 --steps 28 --resolution 1024x1024 --batch 4

  joules-estimate what-if --model llama-70b --task chat --gpu b200 --num-gpus 2 --set gpu=h100 --set num_gpus=4

  joules-estimate plan --model llama-70b --task chat --demand-tokens-per-sec 50000 --max-itl-ms 50
"""

app = typer.Typer(
    name="joules-estimate",
    help="Predict the time, energy and performance per watt of generative AI inference on GPUs "
         "(trained on ML.ENERGY v3 measurements). Without a command: the time-energy frontier of "
         "--model x --task on --gpu over GPU counts and batch sizes.",
    epilog=EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    rich_markup_mode=None,
)
catalog_app = typer.Typer(help="Browse the GPU, model and task catalogs (the names --gpu, --model, --task accept).",
                          context_settings={"help_option_names": ["-h", "--help"]}, no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")

USER_ERROR = 2

# ------------------------------------------------------------------------------------------------ options
Model = Annotated[str | None, typer.Option(help="Model: catalog key or alias, e.g. llama-70b, "
                                           "Qwen/Qwen3-8B, flux-dev (see `catalog list models`).")]
Task = Annotated[str | None, typer.Option(help="Task (workload): chat, reasoning, code, image, video, "
                                          "text-to-image, text-to-video (see `catalog list tasks`).")]
NumGpus = Annotated[list[int] | None, typer.Option("--num-gpus", min=1, help="GPUs per replica; repeat to "
                                                   "compare (default 1, 2, 4, 8).")]
MaxNumSeqs = Annotated[list[int] | None, typer.Option("--max-num-seqs", min=1, help="LLM batch cap (vLLM "
                                                      "max_num_seqs); repeat to compare (default 8..4096).")]
Batch = Annotated[list[int] | None, typer.Option("--batch", min=1, help="Batch size: diffusion images/videos per "
                                                 "batch (default 1..32), or max_num_seqs for LLMs.")]
Precision = Annotated[str | None, typer.Option(help="LLM weight precision: bfloat16, fp8, mxfp4, int8, int4 "
                                               "(default: the model's native precision).")]
OutputTokens = Annotated[float | None, typer.Option(min=1, help="Mean output tokens per request (default: the "
                                                    "task profile, e.g. ~600 for chat).")]
InputTokens = Annotated[float | None, typer.Option(min=1, help="Mean prompt tokens per request (default: the "
                                                   "task profile).")]
MaxItl = Annotated[float | None, typer.Option(min=0.001, help="Latency limit for LLMs: median inter-token "
                                              "latency in ms, e.g. 50.")]
MaxLatency = Annotated[float | None, typer.Option(min=0.001, help="Latency limit for diffusion: batch latency "
                                                  "in seconds.")]
Steps = Annotated[int | None, typer.Option(min=1, help="Diffusion denoising steps (default: the model's, e.g. 28 "
                                           "for FLUX.1-dev).")]
Resolution = Annotated[str | None, typer.Option(help="Diffusion output size HEIGHTxWIDTH in pixels, e.g. "
                                                "1024x1024 (default: the model's).")]
Frames = Annotated[int | None, typer.Option(min=1, help="Video frames (text-to-video; default: the model's).")]
Ulysses = Annotated[int | None, typer.Option(min=1, help="Diffusion Ulysses sequence-parallel degree "
                                             "(default: the GPU count).")]
Ring = Annotated[int | None, typer.Option(min=1, help="Diffusion Ring sequence-parallel degree (default 1).")]
ModelConfig = Annotated[Path | None, typer.Option(help="A model not in the catalog: its Hugging Face config.json "
                                                  "or a TOML description; --model then names it (optional).",
                                                  exists=True, dir_okay=False)]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (the estimator.schema models) instead of tables.")]
Html = Annotated[Path | None, typer.Option(help="Also write the result as one self-contained interactive HTML file "
                                           "(opens offline; needs the web extra).", dir_okay=False)]


# ------------------------------------------------------------------------------------------------ plumbing

def _fail(message: str, code: int = USER_ERROR):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _user_errors():
    """Turn exceptions into one ``error:`` line: exit 2 for bad input, 1 for anything unexpected."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # the CLI boundary: nothing below may print a traceback
        if os.environ.get("JOULES_ESTIMATE_DEBUG"):
            raise
        from estimator.catalog import CatalogError, UnknownKeyError

        message = str(exc).strip() or type(exc).__name__
        if isinstance(exc, UnknownKeyError | CatalogError | ValueError | OSError):
            _fail(" ".join(message.split()) if "\n" not in message else message.splitlines()[0])
        _fail(f"internal error ({type(exc).__name__}: {message}); JOULES_ESTIMATE_DEBUG=1 shows the traceback",
              code=1)


def _extra_models(model: str | None, model_config: Path | None) -> tuple[str | None, dict | None]:
    if model_config is None:
        return model, None
    from estimator.hf_config import load_model_description

    spec = load_model_description(model_config, model_id=model)
    name = model or spec.display_name
    return name, {name: spec}


def _check_html(html: Path | None) -> None:
    """Fail before any work when --html is asked for but the page's chart library is missing."""
    if html is None:
        return
    from estimator.serve.web import plotly_js_path

    try:
        plotly_js_path()
    except ImportError as exc:
        _fail(f"--html needs the web extra ({exc}); pip install -e '.[web]'")


def _write_html(kind: str, payload: dict, html: Path) -> None:
    import sys

    from estimator.serve.web_export import write_html

    write_html(kind, payload, html, command="joules-estimate " + " ".join(sys.argv[1:]))
    typer.echo(f"wrote {html}", err=True)


def _require(**values) -> None:
    missing = [f"--{name.replace('_', '-')}" for name, value in values.items() if value is None]
    if missing:
        _fail(f"missing {', '.join(missing)} (see joules-estimate --help)")


# ---------------------------------------------------------------------------------------- main: frontier


def _explain_chosen(est, extra_models) -> None:
    console = render.make_console()
    try:
        explain_module = importlib.import_module("estimator.explain")

        explain_frame, draw = explain_module.explain_frame, explain_module.render_attribution
    except (ImportError, AttributeError):
        console.print("[yellow]attribution not available: estimator.explain is not part of this installation "
                      "yet (the predictions above are unaffected)[/yellow]")
        return
    import pandas as pd

    from estimator.api import load_predictor
    from estimator.catalog import load_catalog

    chosen = list({id(p): p for p in (est.min_energy, est.min_energy_within_limit) if p}.values())
    frame = pd.DataFrame([p.configuration.as_row() for p in chosen])
    try:
        attributions = explain_frame(frame, predictor=load_predictor(), catalog=load_catalog(),
                                     extra_models=extra_models)
    except Exception as exc:  # attribution is an extra: the estimate above stands
        console.print(f"[yellow]attribution failed: {exc}[/yellow]")
        return
    for attribution in attributions:
        console.print(draw(attribution))


@app.callback(invoke_without_command=True)
def main_command(
    ctx: typer.Context,
    model: Model = None,
    task: Task = None,
    gpu: Annotated[str | None, typer.Option(help="GPU type: b200, h100, h200, a100, l40s, mi300x... "
                                           "(see `catalog list gpus`).")] = None,
    num_gpus: NumGpus = None,
    max_num_seqs: MaxNumSeqs = None,
    batch: Batch = None,
    precision: Precision = None,
    output_tokens: OutputTokens = None,
    input_tokens: InputTokens = None,
    max_itl_ms: MaxItl = None,
    max_latency_s: MaxLatency = None,
    steps: Steps = None,
    resolution: Resolution = None,
    frames: Frames = None,
    ulysses_degree: Ulysses = None,
    ring_degree: Ring = None,
    model_config: ModelConfig = None,
    json_output: Json = False,
    plot: Annotated[Path | None, typer.Option(help="Also write a PNG: J/token against latency, the frontier and "
                                              "the chosen point (needs matplotlib).", dir_okay=False)] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Attribute the chosen configurations' energy to "
                                          "model, workload, batch, parallelism, GPU... (estimator.explain).")] = False,
    html: Html = None,
) -> None:
    """Time-energy frontier of a model and task on one GPU type, over GPU counts and batch sizes."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None and model_config is None and task is None and gpu is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    with _user_errors():
        _check_html(html)
        model, extra_models = _extra_models(model, model_config)
        _require(model=model, task=task, gpu=gpu)
        from estimator.api import estimate

        est = estimate(model, task, gpu, num_gpus=num_gpus, max_num_seqs=max_num_seqs, batch=batch,
                       precision=precision, input_tokens=input_tokens, output_tokens=output_tokens,
                       max_itl_ms=max_itl_ms, max_latency_s=max_latency_s, steps=steps, resolution=resolution,
                       frames=frames, ulysses_degree=ulysses_degree, ring_degree=ring_degree,
                       extra_models=extra_models)
        if json_output:
            typer.echo(est.model_dump_json(indent=2))
        if not est.configurations:
            by_reason: dict[str, list[str]] = {}
            for p in est.infeasible:
                by_reason.setdefault(p.reason, []).append(str(p.configuration.num_gpus))
            reasons = "; ".join(f"{', '.join(counts)} x {est.gpu_model}: {reason}"
                                for reason, counts in by_reason.items())
            _fail(f"no configuration of {est.model_id} fits on {est.gpu_model}: {reasons}")
        if not json_output:
            render.print_estimate(est)
        if plot is not None:
            from estimator.frontier_plot import plot_frontier

            plot_frontier(est, plot)
            typer.echo(f"wrote {plot}", err=True)
        if html is not None:
            from estimator.serve.web import frontier_payload

            _write_html("frontier", frontier_payload([est], []), html)
        if explain:
            _explain_chosen(est, extra_models)


# ------------------------------------------------------------------------------------------------ predict

REQUIRED_COLUMNS = ("model_id", "task", "gpu_model", "num_gpus")


def _read_configs(path: Path):
    import pandas as pd

    try:
        frame = pd.read_csv(path, skipinitialspace=True, dtype={"model_id": str, "task": str, "gpu_model": str,
                                                               "weight_precision": str})
    except pd.errors.EmptyDataError:
        _fail(f"{path}: empty CSV (expected a header row with {', '.join(REQUIRED_COLUMNS)}, ...)")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        _fail(f"{path}: malformed CSV: {' '.join(str(exc).split())}")
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        _fail(f"{path}: missing required column(s) {', '.join(missing)} (have: {', '.join(frame.columns)})")
    import difflib

    from estimator.schema import Configuration

    known = [*Configuration.model_fields, "engine"]
    for column in frame.columns:
        if column not in known:  # kept in the output, but a misspelt knob would silently fall back to its default
            close = difflib.get_close_matches(column, known, n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]}?)" if close else ""
            typer.echo(f"warning: column {column!r} is not a configuration input; passed through{hint}", err=True)
    return frame


def _csv_output(configs, predictions):
    """Input rows + metrics of the families present (+ _p10/_p90), energy per item named per image/video."""
    import numpy as np

    from estimator.catalog import load_catalog
    from estimator.prediction import DIFFUSION_OUTPUTS, LLM_OUTPUTS

    catalog = load_catalog()
    modality = []
    for task in predictions["task"]:
        try:
            modality.append(catalog.tasks[catalog.resolve("task", str(task))].modality)
        except Exception:  # unknown task: the row's reason already says so
            modality.append("")
    modality = np.array(modality, dtype=object)
    out = configs.reset_index(drop=True).copy()
    llm = not np.isin(modality, ["text-to-image", "text-to-video"]).all()
    groups = []
    if llm or (modality == "").all():
        groups += [(m, m, None) for m in LLM_OUTPUTS]
    if (modality == "text-to-image").any():
        groups.append(("energy_per_item_joules", "energy_per_image_joules", "text-to-image"))
    if (modality == "text-to-video").any():
        groups.append(("energy_per_item_joules", "energy_per_video_joules", "text-to-video"))
    if np.isin(modality, ["text-to-image", "text-to-video"]).any():
        groups += [(m, m, None) for m in DIFFUSION_OUTPUTS if m not in ("energy_per_item_joules",)
                   and m not in LLM_OUTPUTS]
        if not llm:
            groups.append(("avg_power_watts", "avg_power_watts", None))
    for source, name, only in groups:
        for suffix in ("", "_p10", "_p90"):
            values = predictions[source + suffix].to_numpy(float).copy()
            if only is not None:
                values[modality != only] = np.nan
            out[name + suffix] = values
    for column in ("status", "reason", "warnings"):
        out[column] = predictions[column].to_numpy()
    for column in configs.columns:  # blanks make pandas read whole numbers as floats; give them back as written
        values = out[column]
        if values.dtype.kind == "f" and values.notna().any() and (values.dropna() % 1 == 0).all():
            out[column] = values.astype("Int64")
    return out


@app.command()
def predict(
    input_path: Annotated[Path, typer.Option("--input", "-i", help="CSV of configurations, ML.ENERGY column names: "
                                             "model_id, task, gpu_model, num_gpus (required), weight_precision, "
                                             "max_num_seqs, tensor_parallel, expert_parallel, data_parallel, "
                                             "avg_output_len (LLM) or batch_size, inference_steps, image_height, "
                                             "image_width, video_height, video_width, num_frames, ulysses_degree, "
                                             "ring_degree (diffusion). Empty cells: as the engine would.",
                                             exists=True, dir_okay=False)],
    output_path: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the predictions CSV "
                                                     "(default: standard output).", dir_okay=False)] = None,
    model_config: ModelConfig = None,
) -> None:
    """Batch prediction: every CSV row in, the same rows plus predictions (value, _p10, _p90), status, reason
    and warnings out. A row that cannot be predicted gets empty metrics and a reason; it never aborts the file."""
    with _user_errors():
        configs = _read_configs(input_path)
        _, extra_models = _extra_models(None, model_config)
        from estimator.api import predict_frame

        predictions = predict_frame(configs, extra_models=extra_models)
        out = _csv_output(configs, predictions)
        if output_path is None:
            typer.echo(out.to_csv(index=False), nl=False)
        else:
            out.to_csv(output_path, index=False)
        errors = [(i + 2, r) for i, (s, r) in enumerate(zip(out["status"], out["reason"], strict=True)) if s != "ok"]
        note = f"predicted {len(out) - len(errors)} of {len(out)} rows"
        if output_path is not None:
            note += f" -> {output_path}"
        typer.echo(note, err=True)
        for line, reason in errors[:10]:
            typer.echo(f"  line {line}: {reason}", err=True)
        if len(errors) > 10:
            typer.echo(f"  ... {len(errors) - 10} more (see the reason column)", err=True)


# ------------------------------------------------------------------------------------------------ what-if

def _parse_sets(items: list[str]) -> dict:
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            _fail(f"--set {item!r} is not KEY=VALUE, e.g. --set gpu=h100 --set num_gpus=4")
        changes[key.strip().replace("-", "_")] = value.strip()
    return changes


def _render_change(console, result, extra_models) -> None:
    try:
        explain_module = importlib.import_module("estimator.explain")

        draw = explain_module.render_change
    except (ImportError, AttributeError):
        return  # attribution of the change not available in this installation
    from estimator.api import explain_change

    try:
        attribution = explain_change(result, extra_models=extra_models)
    except Exception as exc:  # attribution is an extra: never lose the what-if over it
        console.print(f"[yellow]attribution of the change failed: {exc}[/yellow]", markup=True)
        return
    if attribution is not None:
        console.print(draw(attribution))


# one configuration (what-if base, explain): options shared by those commands
OneGpu = Annotated[str | None, typer.Option(help="GPU type, e.g. b200 (the base side of a what-if).")]
OneNumGpus = Annotated[int | None, typer.Option(min=1, help="GPUs per replica (default: the fewest of 1, 2, 4, 8 "
                                                "that fit).")]
OneMaxNumSeqs = Annotated[int | None, typer.Option(min=1, help="LLM batch cap, max_num_seqs (default 128).")]
OneBatch = Annotated[int | None, typer.Option(min=1, help="Diffusion batch size (default 1).")]


def _one_configuration(model, task, gpu, num_gpus, max_num_seqs, batch, precision, output_tokens, input_tokens,
                       steps, resolution, frames) -> dict:
    """Friendly-key configuration dict for estimator.api.what_if / explain_configuration."""
    return {"model": model, "task": task, "gpu": gpu, "num_gpus": num_gpus, "max_num_seqs": max_num_seqs,
            "batch_size": batch, "precision": precision, "output_tokens": output_tokens,
            "input_tokens": input_tokens, "steps": steps, "resolution": resolution, "frames": frames}


@app.command("what-if")
def what_if_command(
    model: Model = None,
    task: Task = None,
    gpu: OneGpu = None,
    num_gpus: OneNumGpus = None,
    max_num_seqs: OneMaxNumSeqs = None,
    batch: OneBatch = None,
    precision: Precision = None,
    output_tokens: OutputTokens = None,
    input_tokens: InputTokens = None,
    steps: Steps = None,
    resolution: Resolution = None,
    frames: Frames = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="A change KEY=VALUE, repeatable: gpu=h100, "
                                                   "num_gpus=4, batch=256, precision=fp8, output_tokens=1000, "
                                                   "model=..., steps=..., resolution=768x768.")] = None,
    model_config: ModelConfig = None,
    json_output: Json = False,
    html: Html = None,
) -> None:
    """A base configuration and changes to it, predicted side by side with the delta in every metric."""
    with _user_errors():
        _check_html(html)
        model, extra_models = _extra_models(model, model_config)
        _require(model=model, task=task, gpu=gpu)
        changes = _parse_sets(set_ or [])
        if not changes:
            typer.echo("note: no --set given; both sides are the same configuration", err=True)
        base = _one_configuration(model, task, gpu, num_gpus, max_num_seqs, batch, precision, output_tokens,
                                  input_tokens, steps, resolution, frames)
        from estimator.api import what_if

        result = what_if(base, extra_models=extra_models, **changes)
        if json_output:
            typer.echo(result.model_dump_json(indent=2))
        else:
            render.print_what_if(result)
            _render_change(render.make_console(), result, extra_models)
        if html is not None:
            from estimator.serve.web import explain_what_if, what_if_payload

            _write_html("what-if", what_if_payload(result, *explain_what_if(result, extra_models)), html)
        if result.base.status != "ok" and result.changed.status != "ok":
            raise typer.Exit(USER_ERROR)


@app.command("explain")
def explain_command(
    model: Model = None,
    task: Task = None,
    gpu: OneGpu = None,
    num_gpus: OneNumGpus = None,
    max_num_seqs: OneMaxNumSeqs = None,
    batch: OneBatch = None,
    precision: Precision = None,
    output_tokens: OutputTokens = None,
    input_tokens: InputTokens = None,
    steps: Steps = None,
    resolution: Resolution = None,
    frames: Frames = None,
    quantity: Annotated[str | None, typer.Option(help="What to attribute: energy_per_token_joules (default), "
                                                 "energy_per_request_joules, avg_power_watts, "
                                                 "output_throughput_tokens_per_sec, median_itl_ms; diffusion: "
                                                 "energy_per_item_joules (default), batch_latency_s.")] = None,
    model_config: ModelConfig = None,
    json_output: Json = False,
    plot: Annotated[Path | None, typer.Option(help="Also write the waterfall as a PNG (needs matplotlib).",
                                              dir_okay=False)] = None,
) -> None:
    """Why one configuration costs what it costs: a waterfall from the average configuration to this one,
    by layer (algorithm / software / hardware) and latent factor (memory, compute, batch, utilization...)."""
    with _user_errors():
        model, extra_models = _extra_models(model, model_config)
        _require(model=model, task=task, gpu=gpu)
        from estimator.api import explain_configuration

        config = _one_configuration(model, task, gpu, num_gpus, max_num_seqs, batch, precision, output_tokens,
                                    input_tokens, steps, resolution, frames)
        attribution = explain_configuration(config, quantity=quantity, extra_models=extra_models)
        if getattr(attribution, "status", "ok") != "ok":
            _fail(getattr(attribution, "reason", "cannot be predicted"))
        explain_module = importlib.import_module("estimator.explain")
        if json_output:
            typer.echo(attribution.model_dump_json(indent=2))
        else:
            render.make_console().print(explain_module.render_attribution(attribution))
        if plot is not None:
            explain_module.plot_attribution(attribution, plot)
            typer.echo(f"wrote {plot}", err=True)


# --------------------------------------------------------------------------------------------------- plan


@app.command()
def plan(
    model: Model = None,
    task: Task = None,
    demand_rps: Annotated[float | None, typer.Option(min=0.0001, help="Demand in requests/s (LLM: x output tokens "
                                                     "per request; diffusion: images/videos per second).")] = None,
    demand_tokens_per_sec: Annotated[float | None, typer.Option(min=0.0001, help="Demand in output tokens/s "
                                                                "(LLM/MLLM).")] = None,
    max_itl_ms: MaxItl = None,
    max_latency_s: MaxLatency = None,
    power_budget_kw: Annotated[float | None, typer.Option(min=0.0001, help="Fleet GPU power budget in kW; "
                                                          "without a demand: how much demand it serves.")] = None,
    power_budget_mw: Annotated[float | None, typer.Option(min=0.0000001, help="The same in MW.")] = None,
    gpu_budget: Annotated[int | None, typer.Option(min=1, help="Fleet GPU count budget.")] = None,
    gpu: Annotated[list[str] | None, typer.Option(help="GPU types to consider, repeatable: --gpu h100 --gpu b200 "
                                                  "(default: those in the training data).")] = None,
    num_gpus: NumGpus = None,
    max_num_seqs: MaxNumSeqs = None,
    batch: Batch = None,
    precision: Precision = None,
    output_tokens: OutputTokens = None,
    input_tokens: InputTokens = None,
    steps: Steps = None,
    resolution: Resolution = None,
    frames: Frames = None,
    model_config: ModelConfig = None,
    json_output: Json = False,
    html: Html = None,
) -> None:
    """Capacity planning: the lowest-energy deployment (GPU type and count, batch, replicas) for a demand under a
    latency limit and optional power/GPU budget, its power (kW), energy per day (kWh) and throughput per watt."""
    with _user_errors():
        _check_html(html)
        model, extra_models = _extra_models(model, model_config)
        _require(model=model, task=task)
        if power_budget_kw is not None and power_budget_mw is not None:
            _fail("give one power budget: --power-budget-kw or --power-budget-mw")
        if power_budget_mw is not None:
            power_budget_kw = power_budget_mw * 1e3
        if demand_rps is None and demand_tokens_per_sec is None and power_budget_kw is None and gpu_budget is None:
            _fail("give a demand (--demand-rps or --demand-tokens-per-sec) or a budget (--power-budget-kw, "
                  "--gpu-budget)")
        from estimator.api import plan as plan_api

        result = plan_api(model, task, demand_rps=demand_rps, demand_tokens_per_sec=demand_tokens_per_sec,
                          max_itl_ms=max_itl_ms, max_latency_s=max_latency_s, power_budget_kw=power_budget_kw,
                          gpu_budget=gpu_budget, gpus=gpu, num_gpus=num_gpus, max_num_seqs=max_num_seqs,
                          batch=batch, precision=precision, input_tokens=input_tokens, output_tokens=output_tokens,
                          steps=steps, resolution=resolution, frames=frames, extra_models=extra_models)
        if json_output:
            typer.echo(result.model_dump_json(indent=2))
        else:
            render.print_plan(result)
        if html is not None:
            from estimator.serve.web import plan_payload

            _write_html("plan", plan_payload(result), html)
        if result.chosen is None:
            raise typer.Exit(USER_ERROR)


# -------------------------------------------------------------------------------------------------- serve

@app.command()
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    calibration: Annotated[Path | None, typer.Option(help="A CAL.json applied to every prediction.", exists=True,
                                                     dir_okay=False)] = None,
) -> None:
    """The what-if explorer in your browser: frontier, what-if and plan on one page, over documented JSON
    endpoints (http://HOST:PORT/docs). Needs the web extra: pip install -e '.[web]'."""
    with _user_errors():
        import importlib.util

        missing = [name for name in ("fastapi", "uvicorn", "plotly") if importlib.util.find_spec(name) is None]
        if missing:
            _fail(f"serve needs {', '.join(missing)}: pip install -e '.[web]'")
        from estimator.serve.web_server import serve as run_server

        run_server(host=host, port=port, calibration=calibration)


# ------------------------------------------------------------------------------------------------ catalog

KINDS = {"gpus": "gpu", "gpu": "gpu", "models": "model", "model": "model", "tasks": "task", "task": "task"}
KindArg = Annotated[str, typer.Argument(help="gpus, models or tasks.")]


def _kind(kind: str) -> str:
    if kind.lower() not in KINDS:
        _fail(f"unknown catalog {kind!r}; use gpus, models or tasks")
    return KINDS[kind.lower()]


def _trained() -> dict:
    """The predictor card's training domain (read as JSON: no boosters loaded)."""
    import json

    from estimator.paths import predictors_dir

    try:
        return json.loads((predictors_dir() / "default" / "card.json").read_text()).get("domain", {})
    except (OSError, ValueError):
        return {}


@catalog_app.command("list")
def catalog_list(kind: KindArg, json_output: Json = False) -> None:
    """List a catalog: gpus, models or tasks (names usable with --gpu, --model, --task)."""
    with _user_errors():
        kind = _kind(kind)
        from rich.table import Table

        from estimator.catalog import catalog_as_json, load_catalog

        catalog = load_catalog()
        if json_output:
            typer.echo(catalog_as_json(catalog, kind))
            return
        domain = _trained()
        trained = {name for family in domain.values() for name in family.get(f"{kind}s", [])}
        aliases: dict[str, list[str]] = {}
        for alias, key in catalog.aliases.get(kind, {}).items():
            aliases.setdefault(key, []).append(alias)
        table = Table(title=f"{kind}s ({'*' } = in the training data)", title_justify="left")
        if kind == "gpu":
            columns = ("key", "name", "memory GB", "HBM TB/s", "BF16 TFLOP/s", "TDP W", "aliases")
            rows = [(g.display_name, f"{g.memory_gb:g}", f"{g.hbm_bandwidth_tb_per_sec:g}",
                     f"{g.peak_tflops_bf16:g}", f"{g.tdp_watts:g}") for g in catalog.gpus.values()]
        elif kind == "model":
            columns = ("key", "kind", "params B (active)", "precision", "aliases")
            rows = [(m.kind, f"{m.total_params_billions:g} ({m.active_params_billions:g})", m.native_precision)
                    for m in catalog.models.values()]
        else:
            columns = ("key", "kind", "dataset", "input tokens", "output tokens", "aliases")
            rows = [(t.kind, t.dataset, f"{t.mean_input_tokens:.0f}", f"{t.mean_output_tokens:.0f}")
                    for t in catalog.tasks.values()]
        for column in columns:
            table.add_column(column, overflow="fold")
        table_keys = list(catalog._table(kind))
        for key, row in zip(table_keys, rows, strict=True):
            mark = "* " if key in trained else "  "
            table.add_row(mark + key, *row, ", ".join(sorted(aliases.get(key, []))[:4]))
        render.make_console().print(table)


@catalog_app.command("show")
def catalog_show(kind: KindArg, name: Annotated[str, typer.Argument(help="A key or alias, e.g. b200.")],
                 json_output: Json = False) -> None:
    """Show one catalog entry with its sources (e.g. `catalog show gpus b200`)."""
    with _user_errors():
        kind = _kind(kind)
        import json

        from estimator.catalog import load_catalog

        catalog = load_catalog()
        key = catalog.resolve(kind, name)
        entry = catalog._table(kind)[key].model_dump()
        if json_output:
            typer.echo(json.dumps({key: entry}, indent=2))
            return
        from rich.table import Table

        table = Table(title=f"{kind} {key}", title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for field, value in entry.items():
            if value in (0, 0.0, "", [], None, False) and field not in ("sources",):
                continue
            table.add_row(field, "\n".join(value) if isinstance(value, list) else str(value))
        aliases = sorted(a for a, k in catalog.aliases.get(kind, {}).items() if k == key)
        if aliases:
            table.add_row("aliases", ", ".join(aliases))
        render.make_console().print(table)


# ---------------------------------------------------------------------------------------- train / evaluate


@app.command()
def train() -> None:
    """Retrain the predictors on everything in datasets/ and write models/predictors/default (minutes)."""
    with _user_errors():
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from estimator import training

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} steps"),
                      TimeElapsedColumn(), console=render.make_console()) as progress:
            step = progress.add_task("loading runs", total=None)

            def tick(label: str) -> None:
                progress.update(step, advance=1, description=label)

            bundle = training.train(output=training.default_output(), progress=tick)
        typer.echo(f"wrote {training.default_output()}")
        render.print_summary(render.accuracy_summary(bundle.card), "out-of-fold, from the new card")


@app.command()
def evaluate(
    predictor: Annotated[str, typer.Option(help="Predictor name under models/predictors/ or a folder.")] = "default",
    json_output: Json = False,
    report: Annotated[bool, typer.Option(help="Also write benchmarks/accuracy.md (when estimator.report is "
                                         "available).")] = True,
) -> None:
    """Print the held-out accuracy stored in the predictor's card (no retraining)."""
    with _user_errors():
        import json

        from estimator.paths import predictors_dir, project_root

        folder = Path(predictor) if Path(predictor).is_dir() else predictors_dir() / predictor
        card_path = folder / "card.json"
        if not card_path.exists():
            _fail(f"no predictor card at {card_path}; run `joules-estimate train`")
        card = json.loads(card_path.read_text())
        summary = render.accuracy_summary(card)
        if json_output:
            typer.echo(json.dumps(summary, indent=2))
        else:
            render.print_summary(summary, f"{card_path}")
        if report:
            try:
                from estimator.report import write_accuracy_report
            except (ImportError, AttributeError):
                return
            target = project_root() / "benchmarks" / "accuracy.md"
            write_accuracy_report(card, target)
            typer.echo(f"wrote {target}", err=True)


# ------------------------------------------------------------------------------------------------ measure

@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def measure(ctx: typer.Context) -> None:
    """Measure inference energy on this machine's GPU and import the runs (`joules-estimate measure --help`)."""
    try:
        from measure.cli import app as measure_app
    except Exception as exc:  # optional extra: the rest of the CLI must keep working
        _fail(f"measure is unavailable here ({type(exc).__name__}: {exc}); install with pip install -e '.[measure]'",
              code=1)
    measure_app(args=list(ctx.args), prog_name="joules-estimate measure")


def main() -> None:
    """Console-script entry point (``joules-estimate``)."""
    app()


if __name__ == "__main__":
    main()
