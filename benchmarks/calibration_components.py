"""Estimate the calibration's variance components from held-out residuals and freeze them.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/calibration_components.py`` -> writes
``models/calibration/components.json`` (what :func:`estimator.learn.calibration.load_components` reads when the
predictor card carries none). The out-of-fold predictions come from :mod:`benchmarks.calibration_folds` (cached
under /tmp; minutes on 2 cores the first time); the estimators are
:func:`estimator.learn.calibration_model.estimate_components`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.calibration_folds import fold_predictions  # noqa: E402
from estimator.learn.calibration import FROZEN_COMPONENTS, card_hash  # noqa: E402
from estimator.learn.calibration_components import estimate_components  # noqa: E402
from estimator.learn.training import data_hash  # noqa: E402
from estimator.paths import project_root  # noqa: E402
from estimator.serve.api import load_predictor  # noqa: E402

COMMAND = "PYTHONPATH=. .venv/bin/python benchmarks/calibration_components.py"


def interval_scale(frames, oof, components: dict, card: dict, family: str) -> float:
    """Smallest widening (grid of 0.05) at which 80% of the held-back runs fall inside the calibrated interval when
    one run per deployment is revealed (leave-one-model-out predictions; the deployment k = 1 scenario)."""
    from benchmarks.calibration import ENERGY, Family, deployment_scenario

    for scale in np.arange(1.0, 3.01, 0.05):
        scaled = {q: {**c, "interval_scale": float(scale)} for q, c in components[family].items()}
        lomo = Family(family, frames[family], oof["leave-one-model-out"][family], scaled,
                      card.intervals[family][ENERGY[family]])
        if deployment_scenario(lomo, 1, None).summary()["calibrated"]["coverage"] >= 80.0:
            return round(float(scale), 2)
    return 3.0


def main() -> None:
    frames, oof = fold_predictions()
    components = estimate_components(frames, oof)
    bundle = load_predictor()
    for family in components:
        scale = interval_scale(frames, oof, components, bundle.card, family)
        for quantity in components[family]:
            components[family][quantity]["interval_scale"] = scale
    rows = sum(len(f) for f in frames.values())
    import pandas as pd

    payload = {
        "source": f"estimated by `{COMMAND}` from out-of-fold residuals of {rows} runs (data hash "
                  f"{data_hash(pd.concat(frames.values()))}); default predictor card {card_hash(bundle)}",
        "method": "model/deployment/batch curve/noise: REML on leave-one-model-out log residuals; gpu: RMS of per-GPU "
                  "mean leave-gpu-out residual (published rows); engine: |mean| leave-engine-out residual of "
                  "torch-cudagraph runs on a GPU seen in training (diffusion borrows the LLM value); "
                  "interval_scale: smallest widening giving 80% coverage with one revealed run per deployment "
                  "(leave-one-model-out)",
        "components": components,
    }
    path = project_root() / FROZEN_COMPONENTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    for family, by_q in components.items():
        for quantity, c in by_q.items():
            print(f"{family:9s} {quantity:34s} " + " ".join(f"{k}={v:.3f}" for k, v in c.items()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
