"""Serving layer: the web explorer (``estimator.serve.web``)."""
