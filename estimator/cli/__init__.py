"""Command-line layer: the typer app (``main.py``), its tables (``render.py``) and PNG plots (``plot.py``)."""
