"""``joules-estimate catalog list|show``: browse the GPU, model and task catalogs."""

from __future__ import annotations

from typing import Annotated

import typer

from estimator.cli import render
from estimator.cli.options import Json, fail, user_errors

catalog_app = typer.Typer(help="Browse the GPU, model and task catalogs (the names --gpu, --model, --task accept).",
                          context_settings={"help_option_names": ["-h", "--help"]}, no_args_is_help=True)

KINDS = {"gpus": "gpu", "gpu": "gpu", "models": "model", "model": "model", "tasks": "task", "task": "task"}
KindArg = Annotated[str, typer.Argument(help="gpus, models or tasks.")]


def _kind(kind: str) -> str:
    if kind.lower() not in KINDS:
        fail(f"unknown catalog {kind!r}; use gpus, models or tasks")
    return KINDS[kind.lower()]


def _trained(kind: str) -> set[str]:
    """Keys of ``kind`` in the default predictor's training domain (from its card: no boosters loaded)."""
    from estimator.learn.card import read_card
    from estimator.paths import predictors_dir

    try:
        domain = read_card(predictors_dir() / "default").domain
    except (OSError, ValueError):
        return set()
    return {name for family in domain.values() for name in getattr(family, f"{kind}s", [])}


@catalog_app.command("list")
def catalog_list(kind: KindArg, json_output: Json = False) -> None:
    """List a catalog: gpus, models or tasks (names usable with --gpu, --model, --task)."""
    with user_errors():
        kind = _kind(kind)
        from rich.table import Table

        from estimator.catalog.catalog import catalog_as_json, load_catalog

        catalog = load_catalog()
        if json_output:
            typer.echo(catalog_as_json(catalog, kind))
            return
        trained = _trained(kind)
        aliases: dict[str, list[str]] = {}
        for alias, key in catalog.aliases.get(kind, {}).items():
            if alias not in catalog.ambiguous.get(kind, {}):  # refused names (names.toml) are not aliases
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
        table_keys = list(catalog.table(kind))
        for key, row in zip(table_keys, rows, strict=True):
            mark = "* " if key in trained else "  "
            table.add_row(mark + key, *row, ", ".join(sorted(aliases.get(key, []))[:4]))
        render.make_console().print(table)


@catalog_app.command("show")
def catalog_show(kind: KindArg, name: Annotated[str, typer.Argument(help="A key or alias, e.g. b200.")],
                 json_output: Json = False) -> None:
    """Show one catalog entry with its sources (e.g. `catalog show gpus b200`)."""
    with user_errors():
        kind = _kind(kind)
        import json

        from estimator.catalog.catalog import load_catalog

        catalog = load_catalog()
        key = catalog.resolve(kind, name)
        entry = catalog.table(kind)[key].model_dump()
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
        aliases = sorted(a for a, k in catalog.aliases.get(kind, {}).items()
                         if k == key and a not in catalog.ambiguous.get(kind, {}))
        if aliases:
            table.add_row("aliases", ", ".join(aliases))
        render.make_console().print(table)
