"""Explanation layer: attribution models (``model.py``), the algebra (``attribution.py``), rendering (``render.py``)."""
