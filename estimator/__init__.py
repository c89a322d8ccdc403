"""joules-estimate: predict time, energy and performance per watt of generative AI inference.

Public API (imported lazily so that ``import estimator`` stays cheap)::

    from estimator import estimate, what_if, plan, predict_frame, load_predictor
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "predict_frame": "estimator.api", "load_predictor": "estimator.api", "estimate": "estimator.api",
    "what_if": "estimator.api", "plan": "estimator.api",
}
__all__ = sorted([*_EXPORTS, "explain"])


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name == "explain":  # the submodule (explain_frame, explain_change); importing it makes it the attribute
        return importlib.import_module("estimator.explain")
    raise AttributeError(f"module 'estimator' has no attribute {name!r}")
