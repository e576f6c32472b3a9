"""What a run costs in time: the arithmetic of the estimate, and how it is said.

The trainer measures seconds per training step (train/clock.py) and how long an epoch's end takes
(samples, held-out evaluation, checkpoint), logs the estimate once early on and after every epoch,
and records it in metrics.csv: ``seconds`` is the run's training time so far (carried across
resumes), ``eta_seconds`` the estimated time left. ``cyclegan report`` and the app's Train tab read
those two columns, so all three say the same thing. Pure functions only: tests feed them numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

SPENT = "seconds"  # metrics.csv: training time of the run so far
LEFT = "eta_seconds"  # metrics.csv: the estimated time left, once speed has been measured
DAY = 24 * 3600.0


@dataclass(frozen=True)
class TimeEstimate:
    seconds_per_step: float
    epoch_seconds: float  # one epoch: its steps and its end
    total_seconds: float  # the whole run, from its first step
    left_seconds: float  # from here to the end of the last epoch


def estimate(seconds_per_step: float, steps_per_epoch: int, epochs_total: int, epochs_done: int,
             steps_into_epoch: int = 0, epoch_end_seconds: float = 0.0) -> TimeEstimate:
    """The time of an epoch, of the run and of what is left, at ``seconds_per_step``.

    ``epoch_end_seconds`` is the last measured epoch end, taken for every epoch (0 before one was
    measured); with --eval-every above 1 the epochs without an evaluation end faster, so this leans
    long. ``steps_into_epoch`` steps of the current (unfinished) epoch are done.
    """
    epoch = seconds_per_step * steps_per_epoch + epoch_end_seconds
    left = epoch * (epochs_total - epochs_done) - seconds_per_step * steps_into_epoch
    return TimeEstimate(seconds_per_step, epoch, epoch * epochs_total, max(0.0, left))


def duration(seconds: float) -> str:
    """``seconds`` as a person reads it, to two units at most: 45 s, 12 min 5 s, 3 h 20 min, 12 d 4 h."""
    seconds = max(0, round(seconds))
    for unit, size, smaller, small_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1)):
        if seconds >= size:
            whole, rest = divmod(seconds, size)
            part = rest // small_size
            return f"{whole} {unit} {part} {smaller}" if part else f"{whole} {unit}"
    return f"{seconds} s"


def slow_run_advice(left_seconds: float, device_type: str, preset: str) -> str | None:
    """What to say when the rest of a run would take more than a day on a CPU (None otherwise)."""
    if device_type != "cpu" or left_seconds <= DAY:
        return None
    tiny = "" if preset == "tiny" else "--preset tiny (small networks at 64 px, minutes to an hour on a laptop), "
    return (f"At this speed the rest of this run takes about {duration(left_seconds)} on the CPU (an estimate). "
            f"To make it shorter: {tiny}a smaller --crop-size with --load-size (e.g. 128 and 143), fewer --epochs "
            "and --epochs-decay, or a GPU (--device cuda).")


def spent_and_left(rows: list[dict[str, str]], finished: bool) -> tuple[float | None, float | None]:
    """(training seconds so far, estimated seconds left) from metrics.csv's rows: the latest value
    of each column, None where there is none yet; nothing is left of a finished run."""
    spent = _latest(rows, SPENT)
    left = 0.0 if finished else _latest(rows, LEFT)
    return spent, left


def time_line(spent: float | None, left: float | None, finished: bool) -> str:
    """What ``spent_and_left`` found, as one phrase for the report and the app."""
    if spent is None:
        return "not measured yet"
    if finished:
        return f"{duration(spent)} spent; finished"
    if left is None:
        return f"{duration(spent)} spent; time left not estimated yet (after the first steps)"
    return f"{duration(spent)} spent; about {duration(left)} left (an estimate)"


def _latest(rows: list[dict[str, str]], column: str) -> float | None:
    for row in reversed(rows):
        try:
            return float(row[column])
        except (KeyError, ValueError):
            continue
    return None
