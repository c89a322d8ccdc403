"""Catalog layer: reviewed GPU, model and task catalogs (``catalog.py``), parameter counts derived from an
architecture's fields (``params.py``, which checks every entry's stated totals) and Hugging Face configs
(``hf_config.py``)."""
