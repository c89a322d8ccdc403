"""joules-estimate: predict time, energy and performance per watt of generative AI inference.

Public API::

    from estimator import estimate, what_if, plan, predict_frame, load_predictor, explain_configuration

The names live in :mod:`estimator.serve.api`; they are imported on first use so that ``import estimator`` (and the
CLI's ``--help``) stays cheap. Layers, lowest first: ``schema``/``paths``, ``catalog``, ``physics``, ``learn``,
``explain``, ``serve``, ``cli`` (see docs/architecture.md).
"""

from __future__ import annotations

__all__ = ["CostInputs", "calibrate", "estimate", "explain_change", "explain_configuration", "load_predictor",
           "plan", "predict_frame", "what_if"]


def __getattr__(name: str):
    if name in __all__:
        from estimator.serve import api

        return getattr(api, name)
    raise AttributeError(f"module 'estimator' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
