"""Estimate the calibration's variance components from held-out residuals and freeze them.

Run: ``PYTHONPATH=$PWD /work/venv/bin/python benchmarks/calibration_components.py`` -> writes
``models/calibration/components.json`` (what :func:`estimator.calibration.load_components` reads when the
predictor card carries none). The out-of-fold predictions come from :mod:`benchmarks.calibration_folds` (cached
under /tmp; minutes on 2 cores the first time); the estimators are
:func:`estimator.calibration_model.estimate_components`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.calibration_folds import fold_predictions  # noqa: E402
from estimator.api import load_predictor  # noqa: E402
from estimator.calibration import FROZEN_COMPONENTS, card_hash  # noqa: E402
from estimator.calibration_model import estimate_components  # noqa: E402
from estimator.paths import project_root  # noqa: E402
from estimator.training import data_hash  # noqa: E402

COMMAND = "PYTHONPATH=$PWD /work/venv/bin/python benchmarks/calibration_components.py"


def main() -> None:
    frames, oof = fold_predictions()
    components = estimate_components(frames, oof)
    bundle = load_predictor()
    rows = sum(len(f) for f in frames.values())
    import pandas as pd

    payload = {
        "source": f"estimated by `{COMMAND}` from out-of-fold residuals of {rows} runs (data hash "
                  f"{data_hash(pd.concat(frames.values()))}); default predictor card {card_hash(bundle)}",
        "method": "model/deployment/slope/noise: REML on leave-one-model-out log residuals; gpu: RMS of per-GPU "
                  "mean leave-gpu-out residual (published rows); engine: |mean| leave-engine-out residual of "
                  "torch-cudagraph runs on a GPU seen in training (diffusion borrows the LLM value)",
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
