"""Human-readable views of a calibration: what it learned per level, how far the predictor was, what was left out."""

from __future__ import annotations

import math

from estimator.learn.calibration import ENERGY, QUANTITIES, Calibration

SHORT = {"avg_power_watts": "power", "output_throughput_tokens_per_sec": "tokens/s", "median_itl_ms": "median ITL",
         "batch_latency_s": "batch latency", "energy_per_token_joules": "J/token", "energy_per_item_joules": "J/item"}
LEVEL_ORDER = ("engine", "gpu", "model", "deployment", "batch curve")


def _multiplier(effect_log: float, sd_log: float) -> str:
    return f"x{math.exp(effect_log):.3f} (±{sd_log * 100:.0f}%)"


def level_rows(calibration: Calibration) -> list[dict]:
    """One row per (family, level, key): runs, and the multiplier on each learned quantity (slope: per doubling
    of the batch)."""
    rows: dict[tuple, dict] = {}
    for effect in calibration.levels:
        if effect.quantity == ENERGY[effect.family]:
            continue
        row = rows.setdefault((effect.family, effect.level, effect.key),
                              {"family": effect.family, "level": effect.level, "key": effect.key, "runs": effect.runs})
        row["runs"] = max(row["runs"], effect.runs)
        row[SHORT[effect.quantity]] = _multiplier(effect.effect_log, effect.posterior_sd_log)
    return sorted(rows.values(), key=lambda r: (r["family"], LEVEL_ORDER.index(r["level"]), r["key"]))


def render_calibration(calibration: Calibration, output: str | None = None):
    """Rich renderables: header, levels table, uncalibrated error, repeats and rejects."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts = [Text(f"calibrated on {len(calibration.runs)} runs ({len(calibration.rejects)} left out) against "
                  f"predictor {calibration.predictor_card_hash}; variance components: "
                  f"{calibration.components_source}" + (f"; wrote {output}" if output else ""))]
    parts += [Text(note, style="yellow") for note in calibration.notes]
    error = Table(title="how far the uncalibrated predictor was from your runs", title_justify="left")
    for column in ("quantity", "runs", "median APE %", "max APE %", "median measured/predicted"):
        error.add_column(column)
    for quantity, stats in calibration.uncalibrated_error.items():
        error.add_row(SHORT.get(quantity, quantity), str(int(stats["n"])), f"{stats['median_ape_pct']:.1f}",
                      f"{stats['max_ape_pct']:.1f}", f"{stats['median_measured_over_predicted']:.3f}")
    parts.append(error)
    for family in ("llm", "diffusion"):
        rows = [r for r in level_rows(calibration) if r["family"] == family]
        if not rows:
            continue
        quantities = [SHORT[q] for q in QUANTITIES[family] if q != ENERGY[family]]
        table = Table(title=f"what it learned ({family}): multiplier on the predictor (± posterior sd); levels "
                            "shrunk toward x1 in proportion to their runs; batch curve: change per batch doubling",
                      title_justify="left")
        for column in ("level", "key", "runs", *quantities):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(row["level"], row["key"], str(row["runs"]), *(row.get(q, "-") for q in quantities))
        parts.append(table)
    if calibration.repeats:
        repeats = Table(title="configurations measured more than once (kept, with their spread)", title_justify="left")
        for column in ("runs", "sources", "spread max/min - 1"):
            repeats.add_column(column, overflow="fold")
        for group in calibration.repeats:
            spread = ", ".join(f"{SHORT.get(q, q)} {v:.1f}%" for q, v in group["spread_pct"].items())
            repeats.add_row(str(group["runs"]), ", ".join(group["sources"]), spread)
        parts.append(repeats)
    if calibration.rejects:
        rejects = Table(title="left out", title_justify="left")
        rejects.add_column("run")
        rejects.add_column("reason", overflow="fold")
        for reject in calibration.rejects:
            rejects.add_row(reject.source, reject.reason)
        parts.append(rejects)
    return Group(*parts)
