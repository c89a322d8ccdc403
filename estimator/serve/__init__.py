"""Serving layer: the public Python API (``api.py``), input conversion (``inputs.py``), sweeps and fleets
(``planning.py``)."""
