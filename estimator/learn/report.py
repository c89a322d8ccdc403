"""The accuracy report (``benchmarks/accuracy.md`` and the README table), generated from a predictor card.

Every number printed here comes from the card's out-of-fold metrics and names its split; nothing is typed in.
"""

from __future__ import annotations

import math
from pathlib import Path

from estimator.learn.card import Card
from estimator.safe_io import write_text_atomic

SPLIT_NOTES = {
    "leave-one-model-out": "every configuration of one model held out (headline)",
    "leave-family-out": "every model of the same architecture shape held out together",
    "leave-gpu-out": "train on the other GPUs, predict one (H100 <-> B200; also H200, measured here only)",
    "leave-task-out": "every configuration of one task held out",
    "random-5fold": "rows shuffled into 5 folds (optimistic: siblings of a held-out row stay in training)",
}
QUANTITY_LABELS = {
    "energy_per_token_joules": "energy per token", "energy_per_request_joules": "energy per response",
    "avg_power_watts": "power", "output_throughput_tokens_per_sec": "throughput", "median_itl_ms": "median ITL",
    "p90_itl_ms": "p90 ITL",
    "energy_per_item_joules": "energy per image/video", "batch_latency_s": "batch latency",
}
COMMAND = "joules-estimate train  # then: joules-estimate evaluate --write-report (writes this file)"


def family_label(key: str) -> str:
    """Table label of a metrics key: 'llm|task-profile' -> 'llm, task-profile length' (no pipe inside a table)."""
    if key == "llm":
        return "llm, length given"
    return key.replace("|task-profile", ", task-profile length")


def _metric_row(split: str, family: str, quantity: str, values: dict) -> str:
    coverage = values.get("p10_p90_coverage_pct")
    coverage_text = f"{coverage:.0f}%" if coverage is not None else "-"
    return (f"| {split} | {family_label(family)} | {QUANTITY_LABELS.get(quantity, quantity)} | {values['n']} | "
            f"{values['median_ape_pct']:.1f}% | {values['mape_pct']:.1f}% | {values['p90_ape_pct']:.1f}% | "
            f"{values['within_2x_pct']:.0f}% | {coverage_text} |")


def headline_table(card: Card) -> str:
    """Markdown table of energy accuracy per split (the README's table)."""
    lines = ["| split | family | quantity | rows | median APE | MAPE | p90 APE | within 2x | p10-p90 coverage |",
             "|---|---|---|---|---|---|---|---|---|"]
    metrics = card.metrics
    for split in [name for name in SPLIT_NOTES if name in metrics]:
        for family in ("llm|task-profile", "llm", "diffusion"):  # the task-profile reading is the headline
            by_quantity = metrics[split].get(family, {})
            quantity = "energy_per_item_joules" if family == "diffusion" else "energy_per_token_joules"
            if quantity in by_quantity:
                lines.append(_metric_row(split, family, quantity, by_quantity[quantity]))
    return "\n".join(lines)


def readings_table(card: Card) -> str:
    """Markdown: split x output-length reading x quantity, median / p90 APE and nested interval coverage (LLM)."""
    lines = ["| split | output length | quantity | rows | median APE | p90 APE | p10-p90 coverage |",
             "|---|---|---|---|---|---|---|"]
    metrics = card.metrics
    for split in [name for name in SPLIT_NOTES if name in metrics]:
        for key, reading in (("llm", "given"), ("llm|task-profile", "task profile (training fold)")):
            for quantity, values in metrics[split].get(key, {}).items():
                if quantity not in QUANTITY_LABELS or not isinstance(values, dict) or "n" not in values:
                    continue
                coverage = values.get("p10_p90_coverage_pct")
                lines.append(f"| {split} | {reading} | {QUANTITY_LABELS[quantity]} | {values['n']} | "
                             f"{values['median_ape_pct']:.1f}% | {values['p90_ape_pct']:.1f}% | "
                             f"{'-' if coverage is None else f'{coverage:.0f}%'} |")
    return "\n".join(lines)


def _bias_lines(card: Card) -> list[str]:
    """Per held-out model geometric bias of LLM J/token (leave-one-model-out), both readings."""
    lines = []
    for key, reading in (("llm", "output length given"), ("llm|task-profile", "task-profile output length")):
        bias = card.metrics.get("leave-one-model-out", {}).get(key, {}).get(
            "energy_per_token_joules", {}).get("model_bias")
        if not bias:
            continue
        ordered = sorted(bias["by_group"].items(), key=lambda kv: -abs(math.log(kv[1])))[:5]
        lines.append(f"- {reading}: worst held-out model x{bias['worst']:.2f} (predicted / measured, geometric mean "
                     f"over its rows); {bias['outside_1_5x']} of {len(bias['by_group'])} models outside 1.5x; "
                     "largest: " + ", ".join(f"{name} x{ratio:.2f}" for name, ratio in ordered) + ".")
    return lines


#: the per-direction breakdowns of leave-GPU-out: metrics key -> what the line says about its rows
GPU_DIRECTION_BREAKDOWNS = {
    "by_fold": "",
    "by_fold_without_b200_slower": (
        ", without the published deployments whose B200 runs are slower than their H100 twins (median ITL ratio > 1 "
        "over the batch sizes both ran; paced by something outside the GPU; `estimator.learn.anomalies`, read from "
        "measurements only; training keeps them)"),
}


def _gpu_direction_lines(metrics: dict) -> list[str]:
    """Leave-GPU-out energy error per direction (train on the others, predict this GPU), with every row and
    without the rows :mod:`estimator.learn.anomalies` flags."""
    lines = []
    for family, by_quantity in metrics.get("leave-gpu-out", {}).items():
        quantity = "energy_per_item_joules" if family == "diffusion" else "energy_per_token_joules"
        for key, rows in GPU_DIRECTION_BREAKDOWNS.items():
            folds = by_quantity.get(quantity, {}).get(key, {})
            if folds:
                lines.append(f"Leave-GPU-out, {family} {QUANTITY_LABELS[quantity]}, per direction{rows}: " + "; ".join(
                    f"{fold}: median APE {v['median_ape_pct']:.1f}%, p90 {v['p90_ape_pct']:.1f}% (n={v['n']}"
                    + (f", {v['left_out']} left out" if "left_out" in v else "") + ")"
                    for fold, v in folds.items()) + ".")
    return [*lines, ""] if lines else []


def accuracy_markdown(card: Card) -> str:
    """The full accuracy report as markdown."""
    metrics = card.metrics
    parts = [
        "# Accuracy of the trained predictors",
        "",
        f"Generated from `models/predictors/{card.name}/card.json` by `{COMMAND}`.",
        f"Training data hash `{card.data_hash}`, catalog hash `{card.catalog_hash}`, "
        f"rows: {card.training_rows}. Library versions: {card.versions}.",
        "",
        "All numbers are **out-of-fold**: each row is predicted by predictors that never saw it, under the named "
        "split. LLM rows include multimodal (image/video chat) rows. Output length is a workload input, read two "
        "ways: `llm, length given` rows take the workload's measured mean output length as given (a user who "
        "knows it gives it); `llm, task-profile length` rows take it from the output-length profile computed from "
        "the training fold's rows only (a user who does not): the same model's mean on the task where the fold "
        "measured it (leave-GPU-out, random folds), else the mean of its publisher's models, else of all models "
        "(`estimator/catalog/output_lengths.py`). Energy per response under the task-profile reading "
        "is predicted J/token x the profile length against the measured J per response, so it carries the "
        "output-length error. The "
        "input length comes from the task profile (frozen estimates, `models/catalog/tasks.toml`).",
        "",
        "## Splits",
        *[f"- `{name}`: {note}" for name, note in SPLIT_NOTES.items()],
        "",
        "## Energy, by split",
        headline_table(card),
        "",
        "## LLM, both output-length readings (median / p90 APE; interval coverage with tails chosen inside the folds)",
        readings_table(card),
        "",
        "Geometric bias per held-out model (leave-one-model-out, LLM energy per token):",
        *_bias_lines(card),
        "",
        "## Where each choice was made",
        *[f"- {what}: {where}" for what, where in card.evaluation_choices.items()],
        "",
        *_gpu_direction_lines(metrics),
        "## Every quantity, leave-one-model-out",
        "| split | family | quantity | rows | median APE | MAPE | p90 APE | within 2x | p10-p90 coverage |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    headline = metrics.get("leave-one-model-out", {})
    for family, by_quantity in headline.items():
        for quantity, values in by_quantity.items():
            if quantity in QUANTITY_LABELS:
                parts.append(_metric_row("leave-one-model-out", family, quantity, values))
    by_task_family = headline.get("llm", {}).get("energy_per_token_by_task_family", {})
    if by_task_family:
        parts += ["", "Energy per token, leave-one-model-out, by task family: " + "; ".join(
            f"{name}: median APE {v['median_ape_pct']:.1f}%, p90 {v['p90_ape_pct']:.1f}% (n={v['n']})"
            for name, v in by_task_family.items()) + "."]
    ranking = headline.get("llm", {}).get("ranking")
    if ranking:
        parts += ["", "## Choosing configurations (leave-one-model-out)",
                  f"Within each (model, task, GPU, GPU count) group of held-out rows ({ranking['groups']} groups "
                  f"with >= 3 batch sizes): Kendall tau between predicted and measured energy per token, median "
                  f"{ranking['median_kendall_tau']:.2f}, mean {ranking['mean_kendall_tau']:.3f}; the predicted "
                  f"minimum-energy batch is within 5% of the true minimum energy in "
                  f"{ranking['min_energy_pick_within_5pct_pct']:.1f}% of groups."]
    baselines = card.baselines.get("llm", {})
    if baselines:
        parts += ["", "## Baselines on the same LLM rows (no training, so no split)",
                  "| baseline | median APE | p90 APE | within 2x | median predicted / measured |",
                  "|---|---|---|---|---|"]
        for name, values in baselines.items():
            parts.append(f"| {name} | {values['median_ape_pct']:.1f}% | {values['p90_ape_pct']:.1f}% | "
                         f"{values['within_2x_pct']:.0f}% | {values['median_ratio_predicted_over_measured']:.3f} |")
        parts += ["", "`naive-flops-tdp` is Fernandez et al.'s idealized estimate (FLOPs x TDP / peak FLOP/s); "
                  "`ecologits` is EcoLogits' fitted formula (a*exp(b*batch)*P_active + c Wh/token)."]
    parts += ["", "## Intervals",
              f"p10-p90 intervals come from {card.interval_source or 'n/a'}; residual quantile tails used: "
              f"{card.interval_tails}. The coverage columns above are nested: each held-out group's rows "
              "are judged against quantiles of the other groups' residuals at a tail itself chosen on the other "
              "groups only. Predictions without a given output length use the task-profile intervals.",
              ""]
    return "\n".join(parts)


README_START, README_END = "<!-- accuracy:start -->", "<!-- accuracy:end -->"


def readme_accuracy_block(card: Card) -> str:
    """The README's accuracy section body: the headline table, generated from the card."""
    return "\n".join([
        f"Out-of-fold accuracy of the committed predictor (`models/predictors/{card.name}`, "
        f"data hash `{card.data_hash}`), regenerated by `joules-estimate evaluate --write-report`; details and every "
        "quantity in [benchmarks/accuracy.md](benchmarks/accuracy.md). The headline is leave-one-model-out with the "
        "output length from the task profile (computed from the training fold only: its publisher's other models, "
        "else all models; a user who does not know the response length); the output-length-given reading is beside "
        "it. random-5fold is shown only to expose how "
        "optimistic row-level splits are.",
        "",
        headline_table(card),
    ])


def update_readme(card: Card, readme: Path) -> bool:
    """Replace the text between the accuracy markers of ``readme``; False when the markers are absent."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    write_text_atomic(readme, f"{head}{README_START}\n{readme_accuracy_block(card)}\n{README_END}{tail}")
    return True


def write_accuracy_report(card: Card, path: Path) -> Path:
    """Write :func:`accuracy_markdown` to ``path`` (and refresh the README table next to ``benchmarks/``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, accuracy_markdown(card))
    readme = path.parent.parent / "README.md"
    if readme.exists():
        update_readme(card, readme)
    return path
