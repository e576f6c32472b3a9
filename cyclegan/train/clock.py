"""Seconds per training step, measured as a run goes, for the time estimate (evaluate/timing.py).

The first WARMUP_STEPS steps of a process are left out (allocation, cuDNN autotuning and
compilation make them slow), and so is the time between epochs' steps (samples, evaluation,
checkpoints), which the trainer measures apart as the epoch's end. On CUDA the clock waits for the
device whenever it reads the time (a few times an epoch), so queued work is counted where it runs.
"""

from __future__ import annotations

import time

import torch

WARMUP_STEPS = 5
FIRST_ESTIMATE_STEPS = 20  # measured steps before the first estimate...
FIRST_ESTIMATE_SECONDS = 30.0  # ...or this long, with at least MIN_STEPS steps, on a slow machine
MIN_STEPS = 3


class StepClock:
    """Call ``tick`` after every step and ``pause`` at an epoch's end; ``read`` gives seconds per step."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.ticks = 0  # steps this process has run
        self.steps = 0  # steps measured...
        self.seconds = 0.0  # ...and their time
        self._since: float | None = None  # start of the running stretch of measured steps
        self._pending = 0  # steps in that stretch not yet added

    def tick(self) -> None:
        self.ticks += 1
        if self._since is not None:
            self._pending += 1
        elif self.ticks >= WARMUP_STEPS:  # the stretch starts after this step (after the warm-up, or an epoch's first)
            self._since = self._now()

    def ready(self) -> bool:
        """Whether enough is measured for a first estimate (cheap: reads the host clock only)."""
        steps = self.steps + self._pending
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return steps >= FIRST_ESTIMATE_STEPS or (steps >= MIN_STEPS and self.seconds + running >= FIRST_ESTIMATE_SECONDS)

    def read(self) -> float | None:
        """Seconds per step over every measured step; None before any."""
        if self._since is not None and self._pending:
            now = self._now()
            self.seconds += now - self._since
            self.steps += self._pending
            self._since, self._pending = now, 0
        return self.seconds / self.steps if self.steps else None

    def pause(self) -> None:
        """At an epoch's end: what comes until the next epoch's steps is not a training step."""
        self.read()
        self._since, self._pending = None, 0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()
