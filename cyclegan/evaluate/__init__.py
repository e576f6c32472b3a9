"""Held-out evaluation: the metrics table (metrics.py), scoring generators (heldout.py), judging a
run's history (health.py), and what a run looks like (report.py, plots.py)."""
