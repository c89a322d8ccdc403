"""Held-out LLM accuracy of the current code, both output-length readings, for the change log.

Runs the LLM part of the evaluation (no artifact is written) under the named splits and prints, per split and
reading, median / p90 APE and nested interval coverage of every LLM quantity (leave-GPU-out per direction too).
``benchmarks/transfer-log.md`` keeps the results of each change of issue 18 measured this way.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/heldout_log.py LABEL [split,split,...] [--by-model]`` (default
splits: leave-one-model-out, leave-family-out, leave-gpu-out; several minutes on 2 cores). ``--by-model`` adds each
held-out model's geometric bias (predicted / measured) of J/token, power and throughput, "output length given".
"""

from __future__ import annotations

import json
import sys
import time

from estimator.catalog.catalog import load_catalog
from estimator.learn.data import load_runs
from estimator.learn.features import featurize
from estimator.learn.training import evaluate_all, split_by_family

QUANTITIES = ("energy_per_token_joules", "energy_per_request_joules", "output_throughput_tokens_per_sec",
              "median_itl_ms", "p90_itl_ms", "avg_power_watts")
DEFAULT_SPLITS = ("leave-one-model-out", "leave-family-out", "leave-gpu-out")


def summarise(metrics: dict) -> dict[str, str]:
    """'split|reading|quantity' -> 'median/p90 [covNN] [worst model bias] [per GPU direction]'."""
    out = {}
    for split, by_key in metrics.items():
        for key, by_quantity in by_key.items():
            for name in QUANTITIES:
                values = by_quantity.get(name)
                if not values:
                    continue
                text = f"{values['median_ape_pct']:.1f}/{values['p90_ape_pct']:.1f}"
                if "p10_p90_coverage_pct" in values:
                    text += f" cov{values['p10_p90_coverage_pct']:.0f}"
                bias = values.get("model_bias")
                if bias:
                    text += f" worst x{bias['worst']:.2f} outside1.5x:{bias['outside_1_5x']}"
                if "by_fold" in values:
                    text += " " + " ".join(f"{fold.split()[-1]}:{v['median_ape_pct']:.1f}"
                                           for fold, v in values["by_fold"].items())
                out[f"{split}|{key}|{name}"] = text
    return out


def by_model(metrics: dict, split: str = "leave-one-model-out") -> dict[str, str]:
    """'model' -> 'J/token xR (power xR, throughput xR)' geometric biases of one split, output length given."""
    by_quantity = metrics.get(split, {}).get("llm", {})
    biases = {name: (by_quantity.get(name) or {}).get("model_bias", {}).get("by_group", {})
              for name in ("energy_per_token_joules", "avg_power_watts", "output_throughput_tokens_per_sec")}
    energy, power, throughput = biases.values()
    return {model: f"x{ratio:.2f} (power x{power.get(model, float('nan')):.2f}, "
                   f"throughput x{throughput.get(model, float('nan')):.2f})" for model, ratio in sorted(energy.items())}


def main() -> None:
    flags = [arg for arg in sys.argv[1:] if arg.startswith("--")]
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    label = args[0] if args else "current"
    splits = tuple(args[1].split(",")) if len(args) > 1 else DEFAULT_SPLITS
    start = time.time()
    catalog = load_catalog()
    frame = split_by_family(load_runs(catalog=catalog))["llm"]
    metrics, _ = evaluate_all({"llm": frame}, {"llm": featurize(frame, catalog)}, catalog, splits)
    extra = {"by_model_lomo_given": by_model(metrics)} if "--by-model" in flags else {}
    print(json.dumps({"label": label, "seconds": round(time.time() - start), **summarise(metrics), **extra},
                     indent=1))


if __name__ == "__main__":
    main()
