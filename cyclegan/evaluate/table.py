"""The table of held-out metrics and the rules that pick the best epoch from them.

``METRICS`` is the one table of the metrics an evaluation reports (their functions are in
metrics.py): the plots, the ``evaluate`` and ``report`` tables, TensorBoard and the app all read
it, so adding a metric is one function in metrics.py and one row here. ``SELECTION_RULES`` are the
ways to pick the best epoch (``--select-by``); each reads a flattened evaluation (the ``val_*``
columns of metrics.csv), so a rule gives the same answer live and from a run's history.

No torch here, on purpose: the command line lists these names in ``--help``, and its parser must
answer without importing torch (issue 25).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One number an evaluation reports per direction (``results["AtoB"][key]``).

    metrics.csv stores it as ``val_{key}_{direction}`` (and, for a selectable metric, the mean of
    the two directions as ``val_{key}``).
    """

    key: str
    label: str  # short column title
    better: str  # "lower", "higher", or "" for a count or a diagnostic with no better direction
    group: str  # which table it belongs to: heldout, inception or ground_truth
    fmt: str  # format spec for tables, e.g. ".4f"
    width: int  # table column width
    baseline: str | None = None  # key of the do-nothing baseline (the input unchanged), if it has one
    title: str | None = None  # held-out plot panel title; None: no panel of its own
    axis: str = ""  # the panel's y label

    def cell(self, value: float | int | None) -> str:
        """``value`` formatted for this metric's column ('-' when it was not computed)."""
        if value is None:
            return f"{'-':>{self.width}}"
        return f"{value:>{self.width}{self.fmt}}"


METRICS: tuple[Metric, ...] = (
    Metric("swd", "SWD", "lower", "heldout", ".2f", 9, baseline="swd_identity",
           title="SWD to real target images (dashed: input unchanged)", axis="SWD x 1e3 (lower is better)"),
    Metric("swd_identity", "SWD input", "lower", "heldout", ".2f", 11),
    # The SWD's sampling noise: its standard deviation over bootstrap resamples of the held-out
    # images. Two epochs closer than this are a tie (the later one is kept in best/).
    Metric("swd_sd", "SWD sd", "", "heldout", ".2f", 8),
    # SWD without the finest pyramid band (metrics.SWDScore), a selection rule blind to pixel-scale
    # texture: a target's grain or noise that no model learns, and also a checkerboard.
    Metric("swd_coarse", "SWD coarse", "lower", "heldout", ".2f", 12),
    Metric("swd_coarse_sd", "coarse sd", "", "heldout", ".2f", 11),
    # How far the inputs are from the target images, in units of how far target images are from
    # each other (heldout.HeldOut.domain_gap): about 1, the held-out set cannot tell the domains apart.
    Metric("domain_gap", "domain gap", "", "heldout", ".2f", 11),
    # Mean |G(x) - x|: how much the generator changed its input at all (0-1 scale).
    Metric("change", "change", "", "heldout", ".4f", 8,
           title="Change made to the input: mean |G(x) - x|", axis="L1, 0-1 scale"),
    Metric("cycle_l1", "cycle L1", "lower", "heldout", ".4f", 10,
           title="Cycle reconstruction L1", axis="L1, 0-1 scale"),
    Metric("identity_mapping_l1", "G(target) L1", "lower", "heldout", ".4f", 13,
           title="Identity mapping L1", axis="L1, 0-1 scale"),
    Metric("diversity", "diversity", "higher", "heldout", ".3f", 11,
           title="Output diversity / input diversity", axis="ratio (1 = inputs' variety)"),
    Metric("checkerboard", "checker", "lower", "heldout", ".2f", 9,
           title="Checkerboard: period-2 energy / the input's", axis="ratio (1 = as the input)"),
    Metric("d_auc", "D AUC", "", "heldout", ".3f", 7),
    Metric("heldout_images", "images", "", "heldout", "", 8),
    Metric("fid", "FID", "lower", "inception", ".2f", 10,
           title="FID (Inception features)", axis="FID"),
    Metric("kid", "KID", "lower", "inception", ".4f", 10,
           title="KID (Inception features)", axis="KID"),
    Metric("l1", "L1", "lower", "ground_truth", ".4f", 9, baseline="identity_l1"),
    Metric("identity_l1", "L1 input", "lower", "ground_truth", ".4f", 13),
    Metric("psnr", "PSNR", "higher", "ground_truth", ".2f", 9, baseline="identity_psnr"),
    Metric("identity_psnr", "PSNR input", "higher", "ground_truth", ".2f", 15),
    Metric("ssim", "SSIM", "higher", "ground_truth", ".3f", 7, baseline="identity_ssim"),
    Metric("identity_ssim", "SSIM input", "higher", "ground_truth", ".3f", 15),
    # How much of the needed change (truth - x) the made change (G(x) - x) carries: their inner
    # product over the needed change's squared norm. 1: all of it; 0: none (the input returned, or a
    # change unrelated to the needed one); above 1: overshoot.
    Metric("change_made", "change made", "higher", "ground_truth", ".3f", 13),
    # The cosine between the made and the needed change: is what changed what should have changed?
    Metric("change_corr", "change corr", "higher", "ground_truth", ".3f", 13),
    Metric("images", "images", "", "ground_truth", "", 8),
)
BY_KEY = {m.key: m for m in METRICS}
DIRECTIONS = ("AtoB", "BtoA")


def table_rows(group: str) -> list[Metric]:
    """The columns of one of the ``evaluate`` tables, in order."""
    return [m for m in METRICS if m.group == group]


# ---------------------------------------------------------------------------------------------
# Best-epoch selection


Flat = Mapping[str, float]  # one evaluation as metrics.csv stores it: val_{key}_{direction}, val_{key}


def finite_number(value: object) -> float | None:
    """``value`` as a finite float, or None (a blank CSV cell, text, NaN or inf)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def measured_directions(flat: Flat) -> tuple[str, ...]:
    """The directions an evaluation measured: both, or A->B alone for a one-way run (--one-way).
    SWD is measured in every direction evaluated, so a missing or blank SWD means not evaluated;
    a NaN one is a direction that was evaluated and failed, and keeps its place."""
    return tuple(d for d in DIRECTIONS if flat.get(f"val_swd_{d}") not in (None, ""))


def _mean(values: list[float | None]) -> float | None:
    return sum(values) / len(values) if values and None not in values else None  # type: ignore[arg-type]


def _mean_of(key: str) -> Callable[[Flat, int], float | None]:
    return lambda flat, epoch: _mean([finite_number(flat.get(f"val_{key}_{d}")) for d in measured_directions(flat)])


def _ratio_to_baseline(key: str) -> Callable[[Flat, int], float | None]:
    def value(flat: Flat, epoch: int) -> float | None:
        ratios = []
        for d in measured_directions(flat):
            metric, baseline = finite_number(flat.get(f"val_{key}_{d}")), finite_number(flat.get(f"val_{BY_KEY[key].baseline}_{d}"))
            ratios.append(metric / baseline if metric is not None and baseline else None)
        return _mean(ratios)
    return value


def _no_noise(flat: Flat) -> float:
    return 0.0


def _swd_noise(relative: bool, key: str = "swd") -> Callable[[Flat], float]:
    """The standard deviation of the mean over both directions of SWD (or of SWD over its input's),
    from each direction's bootstrap spread (0 where an evaluation did not record one)."""
    def noise(flat: Flat) -> float:
        parts = []
        for d in measured_directions(flat):
            sd, baseline = finite_number(flat.get(f"val_{key}_sd_{d}")), finite_number(flat.get(f"val_swd_identity_{d}"))
            if sd is None or (relative and not baseline):
                return 0.0
            parts.append(sd / baseline if relative else sd)
        return math.sqrt(sum(p * p for p in parts)) / len(parts) if parts else 0.0
    return noise


@dataclass(frozen=True)
class SelectionRule:
    """A way to pick the best epoch: a number per evaluation, lower is better, and its sampling
    noise (two evaluations closer than their noise are a tie, which the later epoch wins)."""

    name: str
    label: str  # how report and the app say what was compared
    value: Callable[[Flat, int], float | None]  # (flattened evaluation, epoch) -> score, None if not computed
    needs_fid: bool = False
    noise: Callable[[Flat], float] = _no_noise  # (flattened evaluation) -> standard deviation of ``value``


SELECTION_RULES: dict[str, SelectionRule] = {rule.name: rule for rule in (
    SelectionRule("swd", "mean SWD of both directions", _mean_of("swd"), noise=_swd_noise(relative=False)),
    SelectionRule("swd_coarse", "mean SWD of both directions without the finest pyramid band", _mean_of("swd_coarse"),
                  noise=_swd_noise(relative=False, key="swd_coarse")),
    SelectionRule("swd_ratio", "mean of each direction's SWD over its input-unchanged SWD",
                  _ratio_to_baseline("swd"), noise=_swd_noise(relative=True)),
    SelectionRule("cycle_l1", "mean cycle-reconstruction L1", _mean_of("cycle_l1")),
    SelectionRule("identity_l1", "mean identity-mapping L1 (a generator on its target domain)",
                  _mean_of("identity_mapping_l1")),
    SelectionRule("fid", "mean FID", _mean_of("fid"), needs_fid=True),
    SelectionRule("kid", "mean KID", _mean_of("kid"), needs_fid=True),
    SelectionRule("last", "the latest epoch", lambda flat, epoch: float(-epoch)),
)}
SELECTABLE = tuple(SELECTION_RULES)


def selection_value(flat: Flat, rule: str, epoch: int = 0) -> float | None:
    """The score of one evaluation under ``rule`` (lower is better; None when not computed)."""
    if rule not in SELECTION_RULES:
        raise ValueError(f"cannot select by {rule!r}; choose one of {', '.join(SELECTABLE)}")
    return SELECTION_RULES[rule].value(flat, epoch)


# A direction translates nothing when its output barely differs from its input (mean |G(x) - x|
# below NO_CHANGE on the 0-1 scale: the published generator, which redraws every pixel, changes
# 0.14 or more) and is no nearer the target domain than the input was (SWD at least NO_PROGRESS of
# the input's), while the domains clearly differ (domain_gap at least DOMAIN_GAP): when they barely
# differ, returning the input is the right answer. Calibrated on the style suite (BENCHMARKS.md,
# "The no_translation warning").
NO_CHANGE = 0.03
NO_PROGRESS = 0.9
DOMAIN_GAP = 1.25


def untranslated(flat: Flat) -> list[str]:
    """The directions that translate nothing (see NO_CHANGE), each with its numbers."""
    found = []
    for d in DIRECTIONS:
        change, value, baseline, gap = (finite_number(flat.get(f"val_{k}_{d}"))
                                        for k in ("change", "swd", "swd_identity", "domain_gap"))
        if None in (change, value, baseline, gap):
            continue
        if change < NO_CHANGE and value >= NO_PROGRESS * baseline and gap >= DOMAIN_GAP:
            found.append(f"{d} (outputs differ from their inputs by {change:.4f} on average; SWD to the target "
                         f"{value:.2f} against the input's {baseline:.2f}; the inputs are {gap:.1f}x as far from "
                         "the target images as those are from each other)")
    return found


def selection_noise(flat: Flat, rule: str) -> float:
    """The sampling noise (standard deviation) of ``selection_value(flat, rule)``."""
    return SELECTION_RULES[rule].noise(flat)


def worse_than_nothing(flat: Flat) -> list[str]:
    """The directions in which a held-out metric that has a do-nothing baseline is worse than
    that baseline (the input returned unchanged), each with its numbers."""
    worse = []
    for d in DIRECTIONS:
        for m in METRICS:
            if m.group != "heldout" or not m.baseline:
                continue
            value, baseline = finite_number(flat.get(f"val_{m.key}_{d}")), finite_number(flat.get(f"val_{m.baseline}_{d}"))
            if value is None or baseline is None:
                continue
            if (value > baseline) if m.better == "lower" else (value < baseline):
                worse.append(f"{d} ({m.label} {value:{m.fmt}}, input unchanged {baseline:{m.fmt}})")
    return worse


def tier(worse: list[str], untranslated: list[str]) -> int:
    """0: translates, no worse than doing nothing; 1: worse than doing nothing in some direction, but
    changing its input (on styles a held-out SWD cannot see, such as film grain, that can still be
    the best epoch by the truth); 2: translating nothing in some direction, the user's worst case."""
    return 2 if untranslated else 1 if worse else 0


def flatten(results: dict[str, dict[str, float]], prefix: str = "val_") -> dict[str, float]:
    """``{"AtoB": {"swd": x}}`` -> ``{"val_swd_AtoB": x}``, plus each selection rule's score over
    both directions as ``val_swd``, ``val_swd_ratio``... (the form metrics.csv and the plots use)."""
    flat: dict[str, float] = {}
    for direction, values in results.items():
        for key, value in values.items():
            flat[f"{prefix}{key}_{direction}"] = value
    for name in SELECTABLE:
        value = selection_value(flat, name) if name != "last" else None
        if value is not None:
            flat[f"{prefix}{name}"] = value
    return flat
