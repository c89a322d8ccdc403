"""``joules-estimate measure``: run a sweep on this machine's GPU, and import its stable runs.

The lead mounts :data:`app` as the ``measure`` sub-command. Commands are thin over :mod:`measure.sweep`
and :mod:`measure.sink`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from estimator.validation import InputError
from measure.diffusion_schema import DiffusionSweepSpec
from measure.preflight import check_machine, check_out_dir, load_spec, user_errors
from measure.schema import RunRecord, SweepSpec
from measure.sink import import_run_dir

app = typer.Typer(
    name="measure",
    help="Measure inference energy on this machine's GPU and import the runs into datasets/local/.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,  # one help style across joules-estimate's commands (estimator/cli/main.py)
    rich_markup_mode=None,
)
console = Console()
Debug = Annotated[bool, typer.Option("--debug", help="show the traceback of an error")]


def _summary(records: list[RunRecord], skipped: dict[str, str]) -> Table:
    table = Table(title="measured runs")
    for col in ("model", "batch", "achieved", "J/token", "W", "tok/s", "ITL p50 ms", "util %", "stable"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for r in records:
        util = "-" if r.gpu_utilization_pct is None else f"{r.gpu_utilization_pct:.0f}"
        table.add_row(
            r.model_id,
            str(r.max_num_seqs),
            f"{r.avg_batch_size:.1f}",
            f"{r.energy_per_token_joules:.4f}",
            f"{r.avg_power_watts:.0f}",
            f"{r.output_throughput_tokens_per_sec:.0f}",
            f"{r.median_itl_ms:.1f}",
            util,
            "yes" if r.is_stable else f"no: {r.unstable_reason}",
        )
    for key, err in skipped.items():
        table.add_row(key, "", "", "", "", "", "", "", f"skipped: {err[:60]}")
    return table


@app.command("run")
def run_cmd(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.toml", help="sweep spec (TOML)")],
    out: Annotated[Path | None, typer.Option("--out", metavar="DIR",
                                             help="run directory (default runs/<stamp>/)")] = None,
    more: Annotated[list[str] | None, typer.Argument(metavar="[SPEC2.toml ...] [ADDRESS]", help="more specs, "
                    "and the Ray address: local (default), auto, HOST:PORT or ray://HOST:PORT")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="run each configuration as a Ray task on any host")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="with --ray: skip configurations OUT already has")] = False,
    gpu_type: Annotated[str | None, typer.Option(
        metavar="TYPE", help="with --ray: Ray accelerator type to ask for, e.g. H100")] = None,
    idle_s: Annotated[float, typer.Option(metavar="S", help="seconds of idle power to measure first (0: skip)")] = 5.0,
    overhead_check_s: Annotated[
        float, typer.Option(metavar="S", help="seconds per arm of the sampler on/off check")
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the records as JSON lines")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print each configuration's expected duration and the total; run nothing")
    ] = False,
    gpu: Annotated[str, typer.Option(metavar="GPU",
                                     help="GPU the --dry-run plans for (catalog key or alias)")] = "H200",
    debug: Debug = False,
) -> None:
    """Run every configuration of SPEC.toml on this machine's GPU; records go to OUT/records.jsonl.

    A spec with ``kind = "diffusion"`` runs its ``engine``'s denoiser (torch-dit or torch-unet); ``tensor_parallel > 1``
    spawns one process per GPU.

    Exit codes: 0 done, 2 bad spec/option or missing package, 3 impossible on this machine, 1 internal error.
    """
    with user_errors(debug):
        if ray or more or resume:
            from measure.ray_sweep import run_from_cli

            raise typer.Exit(run_from_cli([str(spec_path), *(more or [])], out, ray=ray, resume=resume,
                                          gpu_type=gpu_type, idle_s=idle_s, as_json=as_json, console=console))
        _run(spec_path, out, idle_s, overhead_check_s, as_json, dry_run, gpu)


def _run(spec_path: Path, out: Path | None, idle_s: float, overhead_check_s: float, as_json: bool, dry_run: bool,
         gpu: str) -> None:
    from measure.sweep import default_out_dir, run_sweep

    spec = load_spec(spec_path)
    if not (math.isfinite(idle_s) and idle_s >= 0) or not (math.isfinite(overhead_check_s) and overhead_check_s >= 0):
        raise InputError(f"--idle-s {idle_s:g} / --overhead-check-s {overhead_check_s:g}: give finite seconds >= 0")
    if dry_run:
        _print_plan(spec, gpu)
        return
    check_machine(spec)
    out_dir = out or default_out_dir()
    check_out_dir(out_dir)
    if not isinstance(spec, SweepSpec) or spec.tensor_parallel > 1:
        _run_other(spec, out_dir, idle_s, as_json)
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
    ) as progress:
        task = progress.add_task(f"{spec.name}", total=len(spec.batch_sizes))

        def on_run(key: str, record: RunRecord | None, error: str) -> None:
            status = "skipped" if record is None else ("stable" if record.is_stable else "unstable")
            progress.update(task, advance=1, description=f"{key}: {status}")

        result = run_sweep(spec, out_dir, idle_s=idle_s, overhead_check_s=overhead_check_s, on_run=on_run)
    if as_json:
        for r in result.records:
            typer.echo(r.model_dump_json())
        return
    console.print(_summary(result.records, result.skipped))
    console.print(
        f"idle power (context held): {_watts(result.info.get('idle_power_watts_context_held'))}"
        f"; records in {out_dir}/records.jsonl"
    )


def _watts(value: float | None) -> str:
    return "not measured (--idle-s 0)" if value is None or value != value else f"{value:.1f} W"


def _print_plan(spec: SweepSpec | DiffusionSweepSpec, gpu: str) -> None:
    from measure.plan import START_S, plan_sweep

    plans = plan_sweep(spec, gpu)
    table = Table(title=f"{spec.name}: planned on {gpu} (roofline x efficiency; see measure/plan.py)")
    for col in ("configuration", "step ms", "setup s", "warm-up s", "window s", "total s"):
        table.add_column(col, justify="left" if col == "configuration" else "right")
    for p in plans:
        table.add_row(p.key, f"{p.step_ms:.1f}", f"{p.setup_s:.1f}", f"{p.warmup_s:.1f}", f"{p.measure_s:.1f}",
                      f"{p.total_s:.1f}")
    console.print(table)
    total = START_S + sum(p.total_s for p in plans)
    console.print(f"expected total: {total:.0f} s ({total / 60:.1f} min, including {START_S:.0f} s start-up)")


def _run_other(spec: SweepSpec | DiffusionSweepSpec, out_dir: Path, idle_s: float, as_json: bool) -> None:
    """Diffusion sweeps and tensor-parallel sweeps (no progress bar: they run in other processes or loops)."""
    if isinstance(spec, DiffusionSweepSpec):
        from measure.diffusion_sweep import run_diffusion_sweep

        records = run_diffusion_sweep(spec, out_dir, idle_s=idle_s)
        for r in records:
            typer.echo(r.model_dump_json() if as_json else
                       f"{spec.name} bs{r.batch_size}: {r.energy_per_image_joules:.1f} J/image, "
                       f"{r.batch_latency_s:.2f} s/batch, {r.avg_power_watts:.0f} W, util "
                       f"{r.gpu_utilization_pct or float('nan'):.0f}%, stable {r.is_stable} {r.unstable_reason}")
        return
    from measure.tp_sweep import run_sweep_tp

    result = run_sweep_tp(spec, out_dir, idle_s=idle_s)
    if as_json:
        for r in result.records:
            typer.echo(r.model_dump_json())
        return
    console.print(_summary(result.records, result.skipped))
    for r in result.records:
        console.print(f"{r.max_num_seqs}: per-GPU W {[round(w) for w in r.power_per_gpu_watts or []]}")


@app.command("import")
def import_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="a run directory with records.jsonl")],
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="dataset file name (default: the run directory's name)")
    ] = None,
    dest: Annotated[Path | None, typer.Option(metavar="DIR",
                                              help="destination folder (default datasets/local/)")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="replace the dataset with this run's stable records "
                                          "(default: add to it, never removing records)")] = False,
    catalog_entries: Annotated[Path | None, typer.Option(metavar="FILE", help="TOML with [gpus.\"KEY\"] / "
                                                         "[models.\"ID\"] entries (with sources) for a GPU or model "
                                                         "outside the catalog; added to models/catalog with the "
                                                         "records")] = None,
    debug: Debug = False,
) -> None:
    """Validate RUN_DIR/records.jsonl and add its stable records to datasets/local/<name>.jsonl (atomically).

    Refused, with nothing written: a name that is not a plain file name, a run with no stable record, a record
    load_runs() would reject, a record already imported into another dataset. Exit 2 on any of these.
    """
    with user_errors(debug):
        if dest is None:
            from estimator.paths import datasets_dir

            dest = datasets_dir() / "local"
        result = import_run_dir(run_dir, run_dir.name if name is None else name, dest, replace=replace,
                                catalog_entries=catalog_entries)
        typer.echo(json.dumps({"written": str(result.path), "added": result.written,
                               "stable": result.written + result.already_present,
                               "already_present": result.already_present,
                               "unstable_left_out": result.unstable_left_out,
                               "records_in_dataset": result.records_in_file,
                               "catalog_entries_added": result.catalog_entries_added}))


if __name__ == "__main__":
    app()
