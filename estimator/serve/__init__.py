"""Serving layer: the public Python API, planning, and cost/carbon arithmetic."""
