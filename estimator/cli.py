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

from estimator import cli_options as opts
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
                          context_settings={"help_option_names": ["-h", "--help"]}, no_args_is_help=True,
                          add_completion=False, rich_markup_mode=None)
app.add_typer(catalog_app, name="catalog")

USER_ERROR = 2

# ------------------------------------------------------------------------------------------------ options
Model = Annotated[str | None, typer.Option(metavar="NAME", help="Model: catalog key or alias, e.g. llama-70b, "
                                           "Qwen/Qwen3-8B, flux-dev (see `catalog list models`).")]
Task = Annotated[str | None, typer.Option(metavar="NAME", help="Task (workload): chat, reasoning, code, image, video, "
                                          "text-to-image, text-to-video (see `catalog list tasks`).")]
NumGpus = Annotated[list[int] | None, typer.Option("--num-gpus", metavar="N", min=1, help="GPUs per replica; repeat to "
                                                   "compare (default 1, 2, 4, 8).")]
MaxNumSeqs = Annotated[list[int] | None, typer.Option("--max-num-seqs", metavar="N", min=1, help="LLM batch cap (vLLM "
                                                      "max_num_seqs); repeat to compare (default 8..4096).")]
Batch = Annotated[list[int] | None, typer.Option("--batch", metavar="N", min=1, help="Batch size: diffusion "
                                                                                     "images/videos per "
                                                 "batch (default 1..32), or max_num_seqs for LLMs.")]
Precision = Annotated[str | None, typer.Option(metavar="NAME", help="LLM weight precision: bfloat16, fp8, mxfp4, "
                                                                    "int8, int4 "
                                               "(default: the model's native precision).")]
OutputTokens = Annotated[float | None, typer.Option(metavar="TOKENS", min=1, help="Mean output tokens per request "
                                                                                  "(default: the "
                                                    "task profile, e.g. ~600 for chat).")]
InputTokens = Annotated[float | None, typer.Option(metavar="TOKENS", min=1, help="Mean prompt tokens per request "
                                                                                 "(default: the "
                                                   "task profile).")]
MaxItl = Annotated[float | None, typer.Option(metavar="MS", min=0.001, help="Latency limit for LLMs: median "
                                                                            "inter-token "
                                              "latency in ms, e.g. 50.")]
MaxLatency = Annotated[float | None, typer.Option(metavar="S", min=0.001, help="Latency limit for diffusion: batch "
                                                                               "latency "
                                                  "in seconds.")]
Steps = Annotated[int | None, typer.Option(min=1, metavar="N", help="Diffusion denoising steps (default: the "
                                           "catalog's benchmark setting for the model, e.g. 50 for FLUX.1-dev; see "
                                           "`catalog show models NAME`).")]
Resolution = Annotated[str | None, typer.Option(metavar="HxW", help="Diffusion output size HEIGHTxWIDTH in pixels, "
                                                                    "e.g. "
                                                "1024x1024 (default: the model's).")]
Frames = Annotated[int | None, typer.Option(min=1, metavar="N", help="Video frames (text-to-video; default: the "
                                            "model's benchmark setting, e.g. 81 for Wan 2.1).")]
Seconds = Annotated[float | None, typer.Option(min=0.01, metavar="S", help="Video length in seconds instead of "
                                               "--frames: converted at the model's fps (models/catalog/"
                                               "video_fps.toml, e.g. 16 fps for Wan 2.1).")]
Ulysses = Annotated[int | None, typer.Option(metavar="N", min=1, help="Diffusion Ulysses sequence-parallel degree "
                                             "(default: the GPU count).")]
Ring = Annotated[int | None, typer.Option(metavar="N", min=1, help="Diffusion Ring sequence-parallel degree "
                                                                   "(default 1).")]
ModelConfig = Annotated[Path | None, typer.Option(metavar="FILE", help="A model not in the catalog: its Hugging "
                                                                       "Face config.json "
                                                  "or a TOML description; --model then names it (optional).",
                                                  exists=True, dir_okay=False)]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (the estimator.schema models) instead of tables.")]


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


def _frames_from_seconds(model: str | None, frames: int | None, seconds: float | None, extra_models) -> int | None:
    """``--seconds`` as a frame count at the model's fps (catalog), on the model's 4k + 1 grid."""
    if seconds is None:
        return frames
    if frames is not None:
        _fail("give --frames or --seconds, not both")
    from estimator.catalog import load_catalog
    from estimator.facility_catalog import frames_for_seconds, load_video_catalog

    model_id = model if extra_models and model in extra_models else load_catalog().resolve("model", model)
    video = load_video_catalog().models.get(model_id)
    if video is None:
        _fail(f"no fps in models/catalog/video_fps.toml for {model_id}; give --frames")
    count = frames_for_seconds(seconds, video)
    typer.echo(f"note: {seconds:g} s at {video.fps:g} fps -> {count} frames ({count / video.fps:.2f} s)", err=True)
    return count


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


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"joules-estimate {version('joules-estimate')}")
        except PackageNotFoundError:  # running from a checkout without installing
            import tomllib

            from estimator.paths import project_root

            meta = tomllib.loads((project_root() / "pyproject.toml").read_text())["project"]
            typer.echo(f"joules-estimate {meta['version']} (not installed)")
        raise typer.Exit(0)


def _single_costs(prediction, family: str, options: dict):
    """Cost and carbon of one configuration: one replica serving its predicted capacity x the average load."""
    from estimator.catalog import load_catalog
    from estimator.serve.costs import fleet_costs

    throughput = "items_per_sec" if family == "diffusion" else "output_throughput_tokens_per_sec"
    config = prediction.configuration
    inputs = opts.cost_inputs(**options)
    return fleet_costs(replicas=1, gpus_per_replica=config.num_gpus,
                       busy_watts_per_replica=prediction.metrics["avg_power_watts"],
                       capacity_per_replica=prediction.metrics[throughput],
                       peak_demand=prediction.metrics[throughput].value, gpu_tdp_watts=load_catalog().gpus[
                           config.gpu_model].tdp_watts, units_per_response=1.0 if family == "diffusion" else
                       float(config.avg_output_len), inputs=inputs, tokens=family != "diffusion")


def _frontier_outputs(estimates, *, json_output: bool, plot, plot_batch, explain, extra_models, cost_options) -> None:
    """Print (or JSON), draw and explain the frontiers; exit 2 when nothing fits or the limit is out of reach."""
    for est in estimates:
        if not est.configurations:
            by_reason: dict[str, list[str]] = {}
            for p in est.infeasible:
                by_reason.setdefault(p.reason, []).append(str(p.configuration.num_gpus))
            reasons = "; ".join(f"{', '.join(counts)} x {est.gpu_model}: {reason}"
                                for reason, counts in by_reason.items())
            _fail(f"no configuration of {est.model_id} fits on {est.gpu_model}: {reasons}")
    if json_output:
        payload = [e.model_dump(mode="json") for e in estimates]
        import json

        typer.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        for est in estimates:
            render.print_estimate(est)
    if cost_options is not None and not json_output:
        chosen = [(e, e.min_energy_within_limit or e.min_energy) for e in estimates]
        render.print_costs([render.describe(p.configuration) for _, p in chosen],
                           [_single_costs(p, e.family, cost_options) for e, p in chosen])
    if plot is not None:
        from estimator.plotting.frontier import plot_frontiers

        typer.echo(f"wrote {plot_frontiers(estimates, plot)}", err=True)
    if plot_batch is not None:
        from estimator.plotting.frontier import plot_against_batch

        typer.echo(f"wrote {plot_against_batch(estimates, plot_batch)}", err=True)
    if explain:
        for est in estimates:
            _explain_chosen(est, extra_models)
    missed = [e for e in estimates if e.latency_limit is not None and e.min_energy_within_limit is None]
    if missed and len(missed) == len(estimates):
        latency = estimates[0].latency_metric
        fastest = min((p for e in estimates for p in e.configurations), key=lambda p: p.value(latency))
        unit = "ms" if latency == "median_itl_ms" else "s"
        _fail(f"no configuration meets {latency} <= {estimates[0].latency_limit:g} {unit}; "
              f"the closest achievable is {fastest.value(latency):.3g} {unit} "
              f"({render.describe(fastest.configuration)})")


@app.callback(invoke_without_command=True)
def main_command(
    ctx: typer.Context,
    model: Model = None,
    task: Task = None,
    gpu: Annotated[list[str] | None, typer.Option(metavar="GPU", help="GPU type: b200, h100, h200, a100, l40s, "
                                                  "mi300x... (see `catalog list gpus`); repeat to compare GPUs in "
                                                  "one figure.")] = None,
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
    seconds: Seconds = None,
    ulysses_degree: Ulysses = None,
    ring_degree: Ring = None,
    electricity_usd_per_kwh: opts.ElectricityPrice = None,
    grid_gco2_per_kwh: opts.GridIntensity = None,
    grid_region: opts.GridRegion = None,
    pue: opts.Pue = 1.0,
    host_watts_per_gpu: opts.HostWatts = None,
    gpu_usd_per_hour: opts.GpuPrice = None,
    average_load: opts.AverageLoad = None,
    model_config: ModelConfig = None,
    json_output: Json = False,
    plot: Annotated[Path | None, typer.Option(metavar="FILE", help="Also draw energy against latency (.png or "
                                              ".svg): every GPU's frontier, points labelled GPUs x batch, the "
                                              "limit, p10-p90 bars.", dir_okay=False)] = None,
    plot_batch: Annotated[Path | None, typer.Option(metavar="FILE", help="Also draw energy, power and throughput "
                                                    "against batch size (.png or .svg).", dir_okay=False)] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Attribute the chosen configurations' energy to "
                                          "model, workload, batch, parallelism, GPU... (estimator.explain).")] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Time-energy frontier of a model and task on one or more GPU types, over GPU counts and batch sizes."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None and model_config is None and task is None and not gpu:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    with _user_errors():
        opts.check_plot(plot)
        opts.check_plot(plot_batch)
        model, extra_models = _extra_models(model, model_config)
        _require(model=model, task=task, gpu=gpu or None)
        frames = _frames_from_seconds(model, frames, seconds, extra_models)
        cost_options = dict(electricity_usd_per_kwh=electricity_usd_per_kwh, grid_gco2_per_kwh=grid_gco2_per_kwh,
                            grid_region=grid_region, pue=pue, host_watts_per_gpu=host_watts_per_gpu,
                            gpu_usd_per_hour=gpu_usd_per_hour, average_load=average_load, demand_curve=None)
        wants_costs = opts.any_cost_option(electricity_usd_per_kwh, grid_gco2_per_kwh, grid_region,
                                           host_watts_per_gpu, gpu_usd_per_hour, average_load) or pue != 1.0
        if wants_costs:
            opts.cost_inputs(**cost_options)  # validate before the sweep
        from estimator.api import estimate

        estimates = [estimate(model, task, g, num_gpus=num_gpus, max_num_seqs=max_num_seqs, batch=batch,
                              precision=precision, input_tokens=input_tokens, output_tokens=output_tokens,
                              max_itl_ms=max_itl_ms, max_latency_s=max_latency_s, steps=steps,
                              resolution=resolution, frames=frames, ulysses_degree=ulysses_degree,
                              ring_degree=ring_degree, extra_models=extra_models) for g in dict.fromkeys(gpu)]
        _frontier_outputs(estimates, json_output=json_output, plot=plot, plot_batch=plot_batch, explain=explain,
                          extra_models=extra_models, cost_options=cost_options if wants_costs else None)


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
    input_path: Annotated[Path, typer.Option("--input", "-i", metavar="CSV", help="CSV of configurations, "
                                                                                  "ML.ENERGY column names: "
                                             "model_id, task, gpu_model, num_gpus (required), weight_precision, "
                                             "max_num_seqs, tensor_parallel, expert_parallel, data_parallel, "
                                             "avg_output_len (LLM) or batch_size, inference_steps, image_height, "
                                             "image_width, video_height, video_width, num_frames, ulysses_degree, "
                                             "ring_degree (diffusion). Empty cells: as the engine would.",
                                             exists=True, dir_okay=False)],
    output_path: Annotated[Path | None, typer.Option("--output", "-o", metavar="CSV", help="Where to write the "
                                                                                           "predictions CSV "
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
        name = key.strip().replace("-", "_")
        if name in changes:
            _fail(f"--set {name} given twice ({changes[name]!r} and {value.strip()!r}); give each key once")
        changes[name] = value.strip()
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
OneGpu = Annotated[str | None, typer.Option(metavar="GPU", help="GPU type, e.g. b200 (the base side of a what-if).")]
OneNumGpus = Annotated[int | None, typer.Option(metavar="N", min=1, help="GPUs per replica (default: the fewest of "
                                                                         "1, 2, 4, 8 "
                                                "that fit).")]
OneMaxNumSeqs = Annotated[int | None, typer.Option(metavar="N", min=1, help="LLM batch cap, max_num_seqs (default "
                                                                            "128).")]
OneBatch = Annotated[int | None, typer.Option(metavar="N", min=1, help="Diffusion batch size (default 1).")]


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
                                                   "model=..., steps=..., resolution=768x768.",
                                                   metavar="KEY=VALUE")] = None,
    electricity_usd_per_kwh: opts.ElectricityPrice = None,
    grid_gco2_per_kwh: opts.GridIntensity = None,
    grid_region: opts.GridRegion = None,
    pue: opts.Pue = 1.0,
    host_watts_per_gpu: opts.HostWatts = None,
    gpu_usd_per_hour: opts.GpuPrice = None,
    average_load: opts.AverageLoad = None,
    model_config: ModelConfig = None,
    json_output: Json = False,
    plot: Annotated[Path | None, typer.Option(metavar="FILE", help="Also draw before/after bars of every metric "
                                              "with p10-p90 whiskers (.png or .svg).", dir_okay=False)] = None,
) -> None:
    """A base configuration and changes to it, predicted side by side with the delta in every metric (and, with
    cost flags, energy, $ and CO2e per response and per day for each side)."""
    with _user_errors():
        opts.check_plot(plot)
        model, extra_models = _extra_models(model, model_config)
        _require(model=model, task=task, gpu=gpu)
        changes = _parse_sets(set_ or [])
        if not changes:
            typer.echo("note: no --set given; both sides are the same configuration", err=True)
        base = _one_configuration(model, task, gpu, num_gpus, max_num_seqs, batch, precision, output_tokens,
                                  input_tokens, steps, resolution, frames)
        from estimator.api import what_if

        cost_options = dict(electricity_usd_per_kwh=electricity_usd_per_kwh, grid_gco2_per_kwh=grid_gco2_per_kwh,
                            grid_region=grid_region, pue=pue, host_watts_per_gpu=host_watts_per_gpu,
                            gpu_usd_per_hour=gpu_usd_per_hour, average_load=average_load, demand_curve=None)
        wants_costs = opts.any_cost_option(electricity_usd_per_kwh, grid_gco2_per_kwh, grid_region,
                                           host_watts_per_gpu, gpu_usd_per_hour, average_load) or pue != 1.0
        if wants_costs:
            opts.cost_inputs(**cost_options)  # validate before predicting
        result = what_if(base, extra_models=extra_models, **changes)
        sides = [("base", result.base), ("changed", result.changed)]
        costs = [_single_costs(p, result.family, cost_options) if wants_costs and p.status == "ok" else None
                 for _, p in sides]
        if json_output:
            import json

            payload = result.model_dump(mode="json")
            if wants_costs:
                payload["costs"] = {name: None if c is None else c.model_dump(mode="json")
                                    for (name, _), c in zip(sides, costs, strict=True)}
            typer.echo(json.dumps(payload, indent=2))
        else:
            render.print_what_if(result)
            if wants_costs:
                render.print_costs([name for name, _ in sides], costs)
            _render_change(render.make_console(), result, extra_models)
        if plot is not None and result.base.status == "ok" and result.changed.status == "ok":
            from estimator.plotting.compare import plot_what_if

            typer.echo(f"wrote {plot_what_if(result, plot)}", err=True)
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
    quantity: Annotated[str | None, typer.Option(metavar="METRIC", help="What to attribute: "
                                                                        "energy_per_token_joules (default), "
                                                 "energy_per_request_joules, avg_power_watts, "
                                                 "output_throughput_tokens_per_sec, median_itl_ms; diffusion: "
                                                 "energy_per_item_joules (default), batch_latency_s.")] = None,
    model_config: ModelConfig = None,
    json_output: Json = False,
    plot: Annotated[Path | None, typer.Option(metavar="FILE", help="Also draw the waterfall (.png or .svg): x-factor "
                                              "per item, coloured by layer.", dir_okay=False)] = None,
) -> None:
    """Why one configuration costs what it costs: a waterfall from the average configuration to this one,
    by layer (algorithm / software / hardware) and latent factor (memory, compute, batch, utilization...)."""
    with _user_errors():
        opts.check_plot(plot)
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
            from estimator.plotting.waterfall import plot_waterfall

            typer.echo(f"wrote {plot_waterfall(attribution, plot)}", err=True)


# --------------------------------------------------------------------------------------------------- plan


@app.command()
def plan(
    model: Model = None,
    task: Task = None,
    demand_rps: Annotated[float | None, typer.Option(metavar="RPS", min=0.0001, help="Demand in requests/s (LLM: x "
                                                                                     "output tokens "
                                                     "per request; diffusion: images/videos per second).")] = None,
    demand_tokens_per_sec: Annotated[float | None, typer.Option(metavar="TOKENS/S", min=0.0001, help="Demand in "
                                                                                                     "output tokens/s "
                                                                "(LLM/MLLM).")] = None,
    max_itl_ms: MaxItl = None,
    max_latency_s: MaxLatency = None,
    power_budget_kw: Annotated[float | None, typer.Option(metavar="KW", min=0.0001, help="Fleet GPU power budget "
                                                                                         "in kW; "
                                                          "without a demand: how much demand it serves.")] = None,
    power_budget_mw: Annotated[float | None, typer.Option(metavar="MW", min=0.0000001, help="The same in MW.")] = None,
    gpu_budget: Annotated[int | None, typer.Option(metavar="N", min=1, help="Fleet GPU count budget.")] = None,
    gpu: Annotated[list[str] | None, typer.Option(metavar="GPU", help="GPU types to consider, repeatable: --gpu "
                                                                      "h100 --gpu b200 "
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
    confidence: opts.Confidence = "p90",
    allow_extrapolation: opts.AllowExtrapolation = False,
    max_p90_itl_ms: opts.MaxP90Itl = None,
    electricity_usd_per_kwh: opts.ElectricityPrice = None,
    grid_gco2_per_kwh: opts.GridIntensity = None,
    grid_region: opts.GridRegion = None,
    pue: opts.Pue = 1.0,
    host_watts_per_gpu: opts.HostWatts = None,
    gpu_usd_per_hour: opts.GpuPrice = None,
    average_load: opts.AverageLoad = None,
    demand_curve: opts.DemandCurve = None,
    model_config: ModelConfig = None,
    json_output: Json = False,
    plot: Annotated[Path | None, typer.Option(metavar="FILE", help="Also draw the deployments side by side "
                                              "(GPUs, power, energy, $ and CO2 per day) to a .png or .svg.",
                                              dir_okay=False)] = None,
) -> None:
    """Capacity planning: how many of which GPUs (type and count, batch, replicas) serve a demand under a latency
    limit, with margin and risk, power, energy, $ and CO2e per day and month (p10-p90 intervals)."""
    with _user_errors():
        opts.check_plot(plot)
        if confidence not in ("median", "p90"):
            _fail(f"--confidence must be median or p90, got {confidence!r}")
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
                          steps=steps, resolution=resolution, frames=frames, confidence=confidence,
                          allow_extrapolation=allow_extrapolation, max_p90_itl_ms=max_p90_itl_ms,
                          costs=opts.cost_inputs(electricity_usd_per_kwh=electricity_usd_per_kwh,
                                                 grid_gco2_per_kwh=grid_gco2_per_kwh, grid_region=grid_region,
                                                 pue=pue, host_watts_per_gpu=host_watts_per_gpu,
                                                 gpu_usd_per_hour=gpu_usd_per_hour, average_load=average_load,
                                                 demand_curve=demand_curve),
                          extra_models=extra_models)
        if json_output:
            typer.echo(result.model_dump_json(indent=2))
        else:
            render.print_plan(result)
        if plot is not None and (result.chosen is not None or result.alternatives):
            from estimator.plotting.compare import plot_plan

            typer.echo(f"wrote {plot_plan(result, plot)}", err=True)
        if result.chosen is None:
            _fail(result.reason or "no feasible deployment")


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
    predictor: Annotated[str, typer.Option(metavar="NAME", help="Predictor name under models/predictors/ or a "
                                                                "folder.")] = "default",
    json_output: Json = False,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Also rewrite benchmarks/accuracy.md and "
                                         "the README's accuracy table (off unless asked).")] = False,
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
