"""Figures (matplotlib, PNG or SVG): frontiers, batch sweeps, what-if and plan comparisons, cost and carbon,
the explain waterfall. Importing this package does not import matplotlib."""
