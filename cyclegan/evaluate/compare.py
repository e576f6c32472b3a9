"""Which of several runs to use: their held-out tables side by side, and a pick by best/'s own rule.

Each run is represented by the epoch it chose (best/meta.json's metrics; a run without best/ by its
latest evaluation). The pick is best/'s rule applied across runs instead of across epochs: a run
that translates nothing ranks below one that is merely worse than returning its input, which ranks
below one that translates; within a tier the lower selection score wins (mean held-out SWD by
default), and two runs whose scores differ by less than their sampling noise are called a tie.
Runs evaluated on different held-out images, or at different sizes, cannot be compared: that is an
error rather than a misleading answer. Only the run folders' config.json, best/meta.json and
metrics.csv are read (through runfolder.py): no network is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .. import runfolder
from ..errors import ConfigError
from .table import BY_KEY, DIRECTIONS, SELECTION_RULES, finite_number, measured_directions, selection_noise, \
    selection_value, tier, untranslated, worse_than_nothing

SHOWN = ("swd", "swd_identity", "swd_sd", "change", "cycle_l1", "diversity", "checkerboard", "d_auc")
TIER_WORDS = ("translates, no worse than its input", "worse than returning its input", "translates nothing")


@dataclass
class RunScore:
    """One run as the comparison sees it."""

    name: str
    family: str
    preset: str
    epoch: int | None  # the epoch whose scores stand for the run (None: never evaluated)
    flat: dict[str, float]  # that epoch's held-out scores, as metrics.csv stores them (val_*)
    value: float | None = None  # its selection score (lower is better)
    noise: float = 0.0
    tier: int = 0  # 0 translates, 1 worse than doing nothing, 2 translates nothing
    problems: list[str] = field(default_factory=list)
    data: tuple[str, ...] = ()  # what it was evaluated on: held-out folders and crop size


def _latest_evaluation(run: Path) -> tuple[int | None, dict[str, float]]:
    """The last metrics.csv row holding held-out scores (epoch, scores)."""
    rows = [r for r in runfolder.read_metrics(run) if r.get("val_swd_AtoB")]
    if not rows:
        return None, {}
    last = rows[-1]
    flat = {k: v for k, v in ((k, finite_number(v)) for k, v in last.items() if k.startswith("val_")) if v is not None}
    return int(float(last["epoch"])), flat


def read_run(run: str | Path) -> RunScore:
    """``run``'s chosen epoch and its held-out scores, not judged yet (``judge``); a CycleGANError if
    it is not a run."""
    run = Path(run)
    config = runfolder.load_config(run)
    best = runfolder.read_best(run)
    if best and isinstance(best.get("metrics"), dict):
        epoch = int(best["epoch"])
        flat = {k: v for k, v in ((k, finite_number(v)) for k, v in best["metrics"].items()) if v is not None}
    else:
        epoch, flat = _latest_evaluation(run)
    t = config.train
    held_out = tuple(str(Path(folder).resolve()) if folder else "" for folder in
                     (t.test_a, t.test_b, t.domain_a, t.domain_b))
    return RunScore(run.name, config.model.family, config.preset, epoch, flat, data=(*held_out, str(t.crop_size)))


def judge(score: RunScore, rule: str, directions: tuple[str, ...]) -> None:
    """Set ``score``'s value (under ``rule``), noise and tier from its scores in ``directions`` alone
    (both, or A->B when a one-way run is among those compared: a mean over two directions against one
    over one would compare different things)."""
    others = tuple(d for d in DIRECTIONS if d not in directions)
    flat = {k: v for k, v in score.flat.items() if not k.endswith(tuple(f"_{d}" for d in others))}
    if flat:
        score.value = selection_value(flat, rule, score.epoch or 0)
        score.noise = selection_noise(flat, rule)
        idle, worse = untranslated(flat), worse_than_nothing(flat)
        score.tier = tier(worse, idle)
        score.problems = idle or worse


@dataclass
class Comparison:
    runs: list[RunScore]
    rule: str
    pick: RunScore | None
    reason: str


def compare_runs(runs: list[str | Path], rule: str = "swd") -> Comparison:
    """Score every run and pick one (see the module docstring)."""
    if len(runs) < 2:
        raise ConfigError("compare needs two or more run folders")
    if rule not in SELECTION_RULES or rule == "last":
        raise ConfigError(f"cannot compare runs by {rule!r}; choose one of "
                          f"{', '.join(r for r in SELECTION_RULES if r != 'last')}")
    scores = [read_run(r) for r in runs]
    first = scores[0]
    for other in scores[1:]:
        if other.data != first.data:
            raise ConfigError(f"{first.name} and {other.name} were evaluated on different held-out images or at "
                              "different sizes, so their scores cannot be compared; compare runs trained on the "
                              "same folders at the same --crop-size")
    label = SELECTION_RULES[rule].label
    # Judged on the directions every run measured: both, unless a one-way run is among them
    common = tuple(d for d in DIRECTIONS if all(d in measured_directions(s.flat) for s in scores if s.flat))
    for s in scores:
        judge(s, rule, common or DIRECTIONS)
    if common and any(s.flat and measured_directions(s.flat) != common for s in scores):
        label += f", {' and '.join(common)} only (the direction every run trained)"
    usable = [s for s in scores if s.value is not None]
    if not usable:
        return Comparison(scores, rule, None, f"no run has held-out {rule} scores yet (evaluation off, or no epoch "
                                              "finished): train on, or turn --eval-every on")
    ranked = sorted(usable, key=lambda s: (s.tier, s.value))
    pick, runner = ranked[0], ranked[1] if len(ranked) > 1 else None
    if runner is None:
        reason = f"the only run with held-out scores ({label} {pick.value:.4g})"
    elif runner.tier > pick.tier:
        reason = (f"it {TIER_WORDS[pick.tier]}, while {runner.name} {TIER_WORDS[runner.tier]} "
                  f"({runner.problems[0] if runner.problems else ''})")
    else:
        gap, noise = runner.value - pick.value, math.hypot(pick.noise, runner.noise)
        if noise and gap <= noise:
            reason = (f"a tie: {label} {pick.value:.4g} against {runner.name}'s {runner.value:.4g}, closer than their "
                      f"sampling noise ({noise:.3g}); either will do, so look at the samples")
        else:
            reason = f"the lowest {label}: {pick.value:.4g}, against {runner.name}'s {runner.value:.4g}" + (
                f" (sampling noise {noise:.3g})" if noise else "")
        if pick.tier:
            reason += f"; but every run is {TIER_WORDS[pick.tier]}"
    return Comparison(scores, rule, pick, reason)


def comparison_lines(comparison: Comparison) -> list[str]:
    """The side-by-side table and the pick, as ``cyclegan compare`` prints them (and the app shows)."""
    runs = comparison.runs
    width = max(12, *(len(text) + 2 for s in runs for text in (s.name, f"{s.family} / {s.preset}")))
    lines = [f"{'':<22}" + "".join(f"{s.name:>{width}}" for s in runs),
             f"{'model':<22}" + "".join(f"{s.family + ' / ' + s.preset:>{width}}" for s in runs),
             f"{'epoch':<22}" + "".join(f"{(s.epoch if s.epoch is not None else '-')!s:>{width}}" for s in runs)]
    for key in SHOWN:
        metric = BY_KEY[key]
        for direction in DIRECTIONS:
            cells = [s.flat.get(f"val_{key}_{direction}") for s in runs]
            if all(c is None for c in cells):
                continue
            lines.append(f"{metric.label + ' ' + direction:<22}"
                         + "".join(f"{'-' if c is None else format(c, metric.fmt):>{width}}" for c in cells))
    lines.append(f"{comparison.rule + ' (picks)':<22}"
                 + "".join(f"{'-' if s.value is None else format(s.value, '.4g'):>{width}}" for s in runs))
    lines.append(f"{'state':<22}" + "".join(f"{['ok', 'worse', 'idle'][s.tier] if s.value is not None else '-':>{width}}"
                                             for s in runs))
    lines.append("")
    lines.append(f"Use {comparison.pick.name}: {comparison.reason}." if comparison.pick
                 else f"No pick: {comparison.reason}.")
    return lines
