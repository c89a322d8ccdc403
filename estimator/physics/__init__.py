"""Physics layer: memory and the two fit rules (``memory.py``), one inference step's
FLOPs, bytes, roofline and communication (``step.py``). Pure functions of catalog entries; nothing is fitted."""
