"""Training: one step (step.py), the epoch loop (loop.py), and what they use."""
