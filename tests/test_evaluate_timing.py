"""The time estimate's arithmetic and wording, fed numbers (no clocks), and the step clock on a fake clock."""

from __future__ import annotations

import pytest
import torch

from cyclegan.evaluate.timing import DAY, duration, estimate, slow_run_advice, spent_and_left, time_line
from cyclegan.train import clock as clock_module
from cyclegan.train.clock import StepClock


def test_a_fresh_run_costs_its_epochs_steps_and_ends():
    e = estimate(seconds_per_step=5.0, steps_per_epoch=1000, epochs_total=200, epochs_done=0, epoch_end_seconds=60)
    assert e.epoch_seconds == 5060
    assert e.total_seconds == e.left_seconds == 200 * 5060  # the laptop: weeks, not hours
    assert e.total_seconds > 11 * DAY


def test_what_is_left_counts_the_steps_already_done_in_the_current_epoch():
    e = estimate(seconds_per_step=2.0, steps_per_epoch=100, epochs_total=10, epochs_done=8, steps_into_epoch=25)
    assert e.left_seconds == 2 * 200 - 2 * 25
    assert e.total_seconds == 2000


def test_nothing_is_left_after_the_last_epoch():
    assert estimate(1.0, 10, epochs_total=3, epochs_done=3).left_seconds == 0


@pytest.mark.parametrize("seconds, text", [
    (0, "0 s"), (45.4, "45 s"), (60, "1 min"), (725, "12 min 5 s"), (3600 * 3 + 20 * 60 + 59, "3 h 20 min"),
    (12 * DAY + 4 * 3600, "12 d 4 h"), (DAY, "1 d"),
])
def test_durations_read_as_a_person_says_them(seconds, text):
    assert duration(seconds) == text


def test_more_than_a_day_on_a_cpu_gets_advice_naming_what_to_try():
    advice = slow_run_advice(2 * DAY, "cpu", "paper")
    assert advice and "2 d" in advice and "estimate" in advice
    assert all(what in advice for what in ("--preset tiny", "--crop-size", "GPU"))
    assert "--preset tiny" not in slow_run_advice(2 * DAY, "cpu", "tiny")  # no advice to do what is done
    assert slow_run_advice(2 * DAY, "cuda", "paper") is None  # a GPU run is what it is
    assert slow_run_advice(DAY - 1, "cpu", "paper") is None


def test_time_spent_and_left_are_the_latest_recorded_values():
    rows = [{"step": "2", "seconds": "10.5"}, {"step": "4", "seconds": "21", "eta_seconds": "300"},
            {"step": "4", "val_swd": "1.0"}, {"step": "6", "seconds": "31", "eta_seconds": ""}]
    assert spent_and_left(rows, finished=False) == (31.0, 300.0)
    assert spent_and_left(rows, finished=True) == (31.0, 0.0)
    assert spent_and_left([], finished=False) == (None, None)


def test_the_time_line_says_what_is_known():
    assert time_line(None, None, False) == "not measured yet"
    assert "not estimated yet" in time_line(30, None, False)
    assert time_line(3600, 7200, False) == "1 h spent; about 2 h left (an estimate)"
    assert time_line(3600, 0.0, True) == "1 h spent; finished"


class _FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_the_clock_leaves_out_the_warm_up_and_the_epoch_ends(monkeypatch):
    fake = _FakeTime()
    monkeypatch.setattr(clock_module, "time", fake)
    clock = StepClock(torch.device("cpu"))
    for seconds in [30.0] * clock_module.WARMUP_STEPS:  # slow first steps: not measured
        fake.now += seconds
        clock.tick()
    assert clock.read() is None
    for _ in range(4):
        fake.now += 2.0
        clock.tick()
    clock.pause()
    fake.now += 500.0  # evaluation and checkpoint between epochs
    for _ in range(3):  # the next epoch's first step only starts the measurement again
        fake.now += 2.0
        clock.tick()
    assert clock.read() == 2.0 and clock.steps == 6


def test_the_first_estimate_comes_after_enough_steps_or_enough_time(monkeypatch):
    fake = _FakeTime()
    monkeypatch.setattr(clock_module, "time", fake)
    quick, slow = StepClock(torch.device("cpu")), StepClock(torch.device("cpu"))
    for _ in range(clock_module.WARMUP_STEPS + clock_module.FIRST_ESTIMATE_STEPS - 1):
        quick.tick()
    assert not quick.ready()
    quick.tick()
    assert quick.ready()
    for _ in range(clock_module.WARMUP_STEPS + clock_module.MIN_STEPS):
        fake.now += 11.0  # 11 s a step: three measured steps pass the 30 s mark
        slow.tick()
    assert slow.ready()
