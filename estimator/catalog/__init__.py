"""Catalog layer: reviewed GPU, model and task catalogs (``catalog.py``), parameter counts derived from an
architecture's fields (``params.py``, which checks every entry's stated totals), Hugging Face configs
(``hf_config.py``), and deployment data beside the predictor: grid carbon, PUE/host/idle power, video fps, latency
ceilings (``facility.py``)."""
