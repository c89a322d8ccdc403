"""Catalog layer: reviewed GPU, model and task catalogs (``catalog.py``) and Hugging Face configs (``hf_config.py``)."""
