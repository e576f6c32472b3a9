"""Training health, judged from a run's history: the best epoch so far, when to stop, and
plain-language warnings. Nothing here evaluates, trains or writes files.

GAN losses do not say whether training works, so the trainer hands every held-out evaluation to a
``TrainingMonitor``, and every step's NaN/inf flag to a ``NonFiniteGuard``. It keeps the best epoch by one selection metric (its generators go to
``best/``), counts evaluations without improvement for ``--patience``, and raises warnings, each
with what to try, when the numbers show a known failure:

* discriminator dominance: a discriminator tells real from translated almost perfectly (AUC >=
  0.99) and confidently (scores more than half its target range apart) for several evaluations
  in a row, so its generator gets little useful gradient;
* memorising: a discriminator scores *unseen* real images as more fake than translations (held-out
  AUC <= 0.3) for two evaluations in a row: it has learnt its training images, not the style;
* mode collapse: translations vary far less than their inputs (diversity < 0.1);
* no translation: a generator returns its input nearly unchanged, no nearer the target domain,
  while the two domains clearly differ (three evaluations in a row, or the chosen epoch at the end);
* over-training: the held-out metric has been worse than the best for a long stretch;
* divergence: NaN/inf losses (those steps are skipped; many in a row stop training).

Warnings are logged and handed to a sink: in training, the run folder's ``warnings.json``
(``runfolder.RunWarnings``), where ``cyclegan report`` and the app read them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .table import flatten, selection_noise, tier, untranslated, worse_than_nothing

log = logging.getLogger(__name__)

DOMINANCE_AUC = 0.99  # a discriminator that orders real above translated this reliably, ...
DOMINANCE_GAP = 0.5  # ... with its scores this far apart (on a 0-1 scale), ...
DOMINANCE_EVALS = 3  # ... this many evaluations in a row, dominates
MEMORISING_AUC = 0.3  # held-out real images scored below translated ones this often: memorised ...
MEMORISING_EVALS = 2  # ... this many evaluations in a row
COLLAPSE_DIVERSITY = 0.1  # translations ten times less varied than their inputs have collapsed
OVERTRAIN_EVALS = 5  # evaluations since the best epoch ...
OVERTRAIN_MARGIN = 0.05  # ... with the metric at least 5% worse than the best
NONFINITE_LIMIT = 10  # NaN/inf steps in a row before training stops
NONFINITE_SHARE = 0.25  # or more than this share of an epoch's steps (and more than one), in a row or not
NO_TRANSLATION_EVALS = 3  # evaluations in a row translating nothing (table.untranslated) before a warning


class WarningSink(Protocol):
    """Where warnings go (the run folder's ``runfolder.RunWarnings``, or a list in a test)."""

    def add(self, kind: str, epoch: int, step: int, message: str) -> None: ...


@dataclass
class Verdict:
    """What one evaluation means for training."""

    value: float | None  # the selection metric, None when this evaluation did not compute it
    improved: bool
    stop: bool  # --patience ran out


class TrainingMonitor:
    """Follows the held-out evaluations of one run: best epoch, patience and warnings.

    Its state (``state_dict``) goes into train_state.pt so a resumed run carries on counting.
    """

    def __init__(self, warnings: WarningSink, select_by: str = "swd", patience: int = 0,
                 gan_loss: str = "lsgan", family: str = "cyclegan") -> None:
        self.warnings, self.select_by, self.patience, self.gan_loss = warnings, select_by, patience, gan_loss
        # what ties a translation to its input, which the advice names: CycleGAN's identity loss or CUT's PatchNCE
        self.closeness_flag = "--lambda-identity" if family == "cyclegan" else "--lambda-nce"
        self.best: dict[str, Any] | None = None  # epoch, step, value
        # Directions in which the best epoch is worse than doing nothing, and in which it translates
        # nothing (empty: none). An epoch with either is never chosen over one with neither, whatever
        # the rule says.
        self.best_worse: list[str] = []
        self.best_untranslated: list[str] = []
        # The lowest selection value seen among epochs as good as the best (its tier), with its noise:
        # a later epoch within the noise of it is a tie, and the later epoch is kept.
        self.lowest: dict[str, float] | None = None
        self.untranslated = {"AtoB": 0, "BtoA": 0}  # evaluations in a row translating nothing
        self.since_best = 0  # evaluations without improvement
        self.dominant = {"A": 0, "B": 0}  # evaluations in a row with the discriminator dominant
        self.memorising = {"A": 0, "B": 0}  # evaluations in a row with held-out reals scored as fakes
        self.raised: set[str] = set()  # conditions warned about that have not cleared since

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_worse": list(self.best_worse),
                "best_untranslated": list(self.best_untranslated), "lowest": self.lowest,
                "untranslated": dict(self.untranslated), "since_best": self.since_best,
                "dominant": dict(self.dominant), "memorising": dict(self.memorising), "raised": sorted(self.raised)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.best_worse = list(state.get("best_worse", []))
        self.best_untranslated = list(state.get("best_untranslated", []))
        # A state saved before ties were judged: the best's own value, with no noise, is the lowest.
        self.lowest = state["lowest"] if "lowest" in state else (
            {"value": self.best["value"], "noise": 0.0} if self.best else None)
        self.untranslated = {"AtoB": 0, "BtoA": 0} | dict(state.get("untranslated", {}))
        self.since_best = int(state.get("since_best", 0))
        self.dominant = {"A": 0, "B": 0} | dict(state.get("dominant", {}))
        self.memorising = {"A": 0, "B": 0} | dict(state.get("memorising", {}))
        self.raised = set(state.get("raised", []))

    def observe(self, epoch: int, step: int, results: dict[str, dict[str, float]], value: float | None) -> Verdict:
        """Take one evaluation (``results`` per direction, ``value`` its selection score)."""
        flat = flatten(results)
        worse, idle = worse_than_nothing(flat), untranslated(flat)
        noise = selection_noise(flat, self.select_by)
        improved = value is not None and math.isfinite(value) and self._better(value, noise, tier(worse, idle))
        if improved:
            new_tier = self.best is None or tier(worse, idle) != tier(self.best_worse, self.best_untranslated)
            if new_tier or value < self.lowest["value"]:
                self.lowest = {"value": value, "noise": noise}
            self.best = {"epoch": epoch, "step": step, "value": value}
            self.best_worse, self.best_untranslated = worse, idle
            self.since_best = 0
            self.raised.discard("overtraining")
        elif value is not None:
            self.since_best += 1
        self._check_translation(epoch, step, idle)
        self._check_dominance(epoch, step, results)
        self._check_memorising(epoch, step, results)
        self._check_collapse(epoch, step, results)
        self._check_overtraining(epoch, step, value)
        stop = self.patience > 0 and self.since_best >= self.patience
        return Verdict(value, improved, stop)

    def _better(self, value: float, noise: float, level: int) -> bool:
        """Whether an evaluation replaces the best: a lower tier (``level``, table.tier) wins: an epoch that
        translates and is no worse than doing nothing, then one worse than doing nothing, then one
        that translates nothing; within a tier, a lower value wins, and so does a later epoch whose
        value is within the sampling noise of the lowest (a tie: held-out scores that close cannot
        tell the epochs apart, and training has gone on since)."""
        if self.best is None:
            return True
        best_level = tier(self.best_worse, self.best_untranslated)
        if level != best_level:
            return level < best_level
        lowest = self.lowest or {"value": self.best["value"], "noise": 0.0}
        return value < lowest["value"] or value - lowest["value"] < math.hypot(noise, lowest["noise"])

    def check_end(self, epoch: int, step: int) -> None:
        """At the end of training: warn when even the chosen epoch is worse than doing nothing, or
        translates nothing in a direction."""
        self.check_worse_than_nothing(epoch, step)
        chosen = self.best["epoch"] if self.best else "?"
        self._raise_once(
            "no_translation:end", bool(self.best_untranslated), epoch, step,
            f"The chosen epoch ({chosen}) translates nothing in {'; '.join(self.best_untranslated)}: that "
            "generator returns its input nearly unchanged, though the two domains differ. "
            + _NO_TRANSLATION_TRY.format(flag=self.closeness_flag))

    def _check_translation(self, epoch: int, step: int, idle: list[str]) -> None:
        for direction in self.untranslated:
            found = [d for d in idle if d.startswith(direction)]
            self.untranslated[direction] = self.untranslated[direction] + 1 if found else 0
            self._raise_once(
                f"no_translation:{direction}", self.untranslated[direction] >= NO_TRANSLATION_EVALS, epoch, step,
                f"No translation in {direction}: for {self.untranslated[direction]} evaluations in a row the "
                f"generator has returned its input nearly unchanged ({found[0] if found else ''}), though the two "
                "domains differ. " + _NO_TRANSLATION_TRY.format(flag=self.closeness_flag))

    def check_worse_than_nothing(self, epoch: int, step: int) -> None:
        """At the end of training: warn when even the chosen epoch is worse than doing nothing."""
        self._raise_once(
            "worse_than_nothing", bool(self.best_worse), epoch, step,
            f"Every evaluated epoch is worse than returning the input unchanged in {'; '.join(self.best_worse)} "
            f"(the chosen epoch, {self.best['epoch'] if self.best else '?'}, included), so no epoch of this run "
            "translates better than doing nothing there. Try: train longer, check that the two folders hold the "
            f"domains you mean, or a smaller {self.closeness_flag} if outputs stay too close to their inputs.")

    def _raise_once(self, kind: str, active: bool, epoch: int, step: int, message: str) -> None:
        """Warn when a condition appears; stay quiet while it lasts; re-arm once it clears."""
        if active and kind not in self.raised:
            self.raised.add(kind)
            log.warning("%s (epoch %d)", message, epoch)
            self.warnings.add(kind.split(":")[0], epoch, step, message)
        elif not active:
            self.raised.discard(kind)

    def _check_dominance(self, epoch: int, step: int, results: dict[str, dict[str, float]]) -> None:
        # D_B judges A->B translations against real B; D_A judges B->A against real A.
        for direction, domain in (("AtoB", "B"), ("BtoA", "A")):
            values = results.get(direction, {})
            if "d_auc" not in values:
                continue
            auc, gap = values["d_auc"], score_gap(values["d_real"], values["d_fake"], self.gan_loss)
            self.dominant[domain] = self.dominant[domain] + 1 if auc >= DOMINANCE_AUC and gap >= DOMINANCE_GAP else 0
            self._raise_once(
                f"discriminator_dominance:{domain}", self.dominant[domain] >= DOMINANCE_EVALS, epoch, step,
                f"Discriminator D_{domain} tells real {domain} images from translated ones almost perfectly "
                f"(AUC {auc:.3f}, scores {gap:.2f} apart on a 0-1 scale) for {self.dominant[domain]} evaluations in a row, so generator "
                f"{'G_AB' if domain == 'B' else 'G_BA'} gets little useful gradient. Try: weaken the "
                "discriminators (--n-layers-d 2 or a smaller --ndf), keep --pool-size at 50, use --gan-loss lsgan, "
                "or a lower --lr.")

    def _check_memorising(self, epoch: int, step: int, results: dict[str, dict[str, float]]) -> None:
        # The held-out AUC orders unseen real images against translations; far below 0.5 means the
        # discriminator calls real images it never saw fake: it knows its training set by heart.
        for direction, domain in (("AtoB", "B"), ("BtoA", "A")):
            auc = results.get(direction, {}).get("d_auc")
            if auc is None:
                continue
            self.memorising[domain] = self.memorising[domain] + 1 if auc <= MEMORISING_AUC else 0
            self._raise_once(
                f"discriminator_memorising:{domain}", self.memorising[domain] >= MEMORISING_EVALS, epoch, step,
                f"Discriminator D_{domain} scores real {domain} images it never trained on as more fake than "
                f"translations (held-out AUC {auc:.2f}) for {self.memorising[domain]} evaluations in a row: it has "
                "memorised its training images instead of learning the style, so its verdicts stop guiding the "
                "generators. Try: --diffaug color,translation,cutout, --spectral-norm, or more training images.")

    def _check_collapse(self, epoch: int, step: int, results: dict[str, dict[str, float]]) -> None:
        for direction, values in results.items():
            div = values.get("diversity", float("nan"))
            self._raise_once(
                f"mode_collapse:{direction}", div < COLLAPSE_DIVERSITY, epoch, step,
                f"Mode collapse in {direction}: translations vary {div:.2f}x as much as their inputs (1.0 keeps "
                "the inputs' variety), so most inputs map to nearly the same image. Try: raise --lambda-cycle "
                "(e.g. 15) so outputs must keep their input's content, lower --lr, or resume from an earlier "
                "checkpoint; if the best/ epoch was healthier, use it (translate --best).")

    def _check_overtraining(self, epoch: int, step: int, value: float | None) -> None:
        if self.best is None or value is None:
            return
        worse = value > self.best["value"] * (1 + OVERTRAIN_MARGIN)
        self._raise_once(
            "overtraining", worse and self.since_best >= OVERTRAIN_EVALS, epoch, step,
            f"Possible over-training: held-out {self.select_by} has been worse than its best "
            f"({self.best['value']:.4g} at epoch {self.best['epoch']}) for {self.since_best} evaluations "
            f"(now {value:.4g}). Try: use the best weights (translate --best), stop here, or set --patience "
            "to stop automatically.")


_NO_TRANSLATION_TRY = (
    "Try: train longer (the discriminators may not tell the domains apart yet), --preset quality (its colour "
    "transform learns colour styles quickly) or --preset paper, a smaller {flag}; if the two folders "
    "should barely differ, ignore this.")


def score_gap(real: float, fake: float, gan_loss: str) -> float:
    """How far apart a discriminator's mean scores on real and translated images are, as a fraction
    of the distance between the targets its loss trains them toward (1: fully confident)."""
    if gan_loss == "bce":  # logits: compare probabilities
        return 1 / (1 + math.exp(-real)) - 1 / (1 + math.exp(-fake))
    if gan_loss == "hinge":  # targets +1 and -1
        return (real - fake) / 2
    return real - fake  # lsgan: targets 1 and 0


class NonFiniteGuard:
    """Counts training steps skipped for NaN/inf losses; says when there have been too many: ``limit``
    in a row, or more than ``share`` of an epoch's steps scattered through it (a run that skips
    every third step is as broken as one that skips ten in a row, and never trips the streak).

    The counting happens on the device (``note``, every step, no host sync); the host reads the
    counts only when ``check``-ed, at logging steps and at the end of each epoch.
    """

    def __init__(self, warnings: WarningSink, limit: int = NONFINITE_LIMIT, share: float = NONFINITE_SHARE) -> None:
        self.warnings, self.limit, self.share = warnings, limit, share
        self.in_epoch = 0
        self._streak: torch.Tensor | None = None  # skipped steps in a row, up to the latest one
        self._longest: torch.Tensor | None = None  # the longest streak since the last check
        self._count: torch.Tensor | None = None  # skipped steps since the last check

    def note(self, skipped: torch.Tensor) -> None:
        """Count one step: ``skipped`` is 1.0 for a skipped step, 0.0 for one that updated."""
        if self._streak is None:
            self._streak, self._longest, self._count = (torch.zeros_like(skipped) for _ in range(3))
        self._streak = (self._streak + 1) * skipped
        self._longest = torch.maximum(self._longest, self._streak)
        self._count = self._count + skipped

    def check(self, step: int) -> bool:
        """Read the counts (one host sync); True when ``limit`` steps in a row were skipped (time to stop)."""
        if self._count is None:
            return False
        count, longest = int(self._count.item()), int(self._longest.item())
        self._count = torch.zeros_like(self._count)
        self._longest = self._streak.clone()
        if count:
            self.in_epoch += count
            log.warning("%d step(s) up to step %d had NaN/inf losses; their updates were skipped", count, step)
        return longest >= self.limit

    def epoch_share_exceeded(self, steps_per_epoch: int) -> bool:
        """After ``check``: True when this epoch's skipped steps are more than ``share`` of its
        ``steps_per_epoch`` (and more than one, so one bad step of a tiny epoch does not stop a run)."""
        return self.in_epoch > max(self.share * steps_per_epoch, 1)

    def end_epoch(self, epoch: int, step: int) -> int:
        """Write one warning for the epoch's skipped steps (if any); returns their count."""
        count, self.in_epoch = self.in_epoch, 0
        if count:
            message = (f"Divergence: {count} training step(s) in epoch {epoch} had NaN/inf losses and were skipped. "
                       "Try: a lower --lr, --gan-loss lsgan, or --no-amp; training stops by itself after "
                       f"{self.limit} such steps in a row, keeping a resumable checkpoint.")
            log.warning("%s (epoch %d)", message, epoch)
            self.warnings.add("divergence", epoch, step, message)
        return count


def nonfinite_networks(networks: dict[str, torch.nn.Module]) -> list[str]:
    """The names of the networks holding a NaN or inf weight or buffer (one host sync per network).

    A step whose loss is finite can still have NaN/inf gradients, and they reach the weights: this
    is what the trainer asks before it saves anything over finite weights.
    """
    bad = []
    for name, net in networks.items():
        tensors = [t for t in net.state_dict().values() if t.is_floating_point()]
        if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            bad.append(name)
    return bad
