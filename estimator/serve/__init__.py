"""Serving layer: the public Python API (``api.py``), input conversion (``inputs.py``), sweeps and fleets
(``planning.py``), and the browser explorer (``web.py`` endpoints, ``web_server.py`` running them, ``web_export.py``
for ``--html`` files, the page in ``static/``)."""
