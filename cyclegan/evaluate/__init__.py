"""Held-out evaluation: the metrics (metrics.py) and their table and best-epoch rules (table.py,
which needs no torch), scoring generators (heldout.py), judging a run's history (health.py), and
what a run looks like (report.py, plots.py)."""
