"""Training health: the best epoch so far, when to stop, and plain-language warnings.

GAN losses do not say whether training works, so the trainer hands every held-out evaluation to a
``TrainingMonitor``. It keeps the best epoch by one selection metric (its generators go to
``best/``), counts evaluations without improvement for ``--patience``, and raises warnings, each
with what to try, when the numbers show a known failure:

* discriminator dominance: a discriminator tells real from translated almost perfectly (AUC >=
  0.99) and confidently (scores more than half its target range apart) for several evaluations
  in a row, so its generator gets little useful gradient;
* mode collapse: translations vary far less than their inputs (diversity < 0.1);
* over-training: the held-out metric has been worse than the best for a long stretch;
* divergence: NaN/inf losses (those steps are skipped; many in a row stop training).

Warnings are logged and kept in the run folder's ``warnings.json`` (a list of objects with
``kind``, ``epoch``, ``step``, ``message``) where ``cyclegan report`` and the app read them.
The best epoch is described by ``best/meta.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import checkpoint as ckpt
from .config import Config
from .evaluate import HeldOut, evaluate_heldout, flatten, inception_network, selection_value
from .metrics_log import METRICS_FILE, MetricsLog, read_metrics
from .plots import save_training_plots

log = logging.getLogger(__name__)

WARNINGS_FILE = "warnings.json"
BEST_META = "meta.json"
DOMINANCE_AUC = 0.99  # a discriminator that orders real above translated this reliably, ...
DOMINANCE_GAP = 0.5  # ... with its scores this far apart (on a 0-1 scale), ...
DOMINANCE_EVALS = 3  # ... this many evaluations in a row, dominates
COLLAPSE_DIVERSITY = 0.1  # translations ten times less varied than their inputs have collapsed
OVERTRAIN_EVALS = 5  # evaluations since the best epoch ...
OVERTRAIN_MARGIN = 0.05  # ... with the metric at least 5% worse than the best
NONFINITE_LIMIT = 10  # NaN/inf steps in a row before training stops


class RunWarnings:
    """The run folder's warnings.json: appended to (atomically) as warnings arise."""

    def __init__(self, run_dir: Path, write: bool = True) -> None:
        self.path = Path(run_dir) / WARNINGS_FILE
        self.write = write  # False on the ranks of a distributed run that do not own the run folder
        self.items: list[dict[str, Any]] = read_warnings(run_dir)

    def add(self, kind: str, epoch: int, step: int, message: str) -> None:
        log.warning("%s (epoch %d)", message, epoch)
        self.items.append({"kind": kind, "epoch": epoch, "step": step, "message": message,
                           "time": time.strftime("%Y-%m-%d %H:%M:%S")})
        self._write()

    def truncate_after(self, step: int) -> None:
        """Drop warnings raised after ``step``: on resume, that training is being redone."""
        kept = [w for w in self.items if w.get("step", 0) <= step]
        if len(kept) != len(self.items):
            self.items = kept
            self._write()

    def _write(self) -> None:
        if not self.write:
            return
        ckpt.atomic_write_bytes(self.path, (json.dumps(self.items, indent=2) + "\n").encode())


def read_warnings(run_dir: str | Path) -> list[dict[str, Any]]:
    """The warnings a run has raised (empty when none, or when the file is unreadable)."""
    try:
        data = json.loads((Path(run_dir) / WARNINGS_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [w for w in data if isinstance(w, dict)] if isinstance(data, list) else []


def save_best(run_dir: Path, generators: dict[str, nn.Module], meta: dict[str, Any]) -> None:
    """Write the best epoch's generators to ``best/`` and, last, ``best/meta.json`` describing them.

    Each file is replaced atomically; meta.json's ``step`` matches the step stored in both weight
    files, so a reader can tell a complete set from one cut short by a crash.
    """
    best = Path(run_dir) / ckpt.BEST_DIR
    for name, net in generators.items():
        ckpt.save_weights(net, best / f"{name}.safetensors", meta["step"])
    ckpt.atomic_write_bytes(best / BEST_META, (json.dumps(meta, indent=2) + "\n").encode())


def read_best(run_dir: str | Path) -> dict[str, Any] | None:
    """``best/meta.json`` (epoch, step, metric, value, metrics), or None if there is no usable one."""
    try:
        meta = json.loads((Path(run_dir) / ckpt.BEST_DIR / BEST_META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and {"epoch", "metric", "value"} <= meta.keys() else None


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

    def __init__(self, warnings: RunWarnings, select_by: str = "swd", patience: int = 0,
                 gan_loss: str = "lsgan") -> None:
        self.warnings, self.select_by, self.patience, self.gan_loss = warnings, select_by, patience, gan_loss
        self.best: dict[str, Any] | None = None  # epoch, step, value
        self.since_best = 0  # evaluations without improvement
        self.dominant = {"A": 0, "B": 0}  # evaluations in a row with the discriminator dominant
        self.raised: set[str] = set()  # conditions warned about that have not cleared since

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "since_best": self.since_best, "dominant": dict(self.dominant),
                "raised": sorted(self.raised)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.since_best = int(state.get("since_best", 0))
        self.dominant = {"A": 0, "B": 0} | dict(state.get("dominant", {}))
        self.raised = set(state.get("raised", []))

    def observe(self, epoch: int, step: int, results: dict[str, dict[str, float]], value: float | None) -> Verdict:
        """Take one evaluation (``results`` per direction, ``value`` its selection metric)."""
        improved = value is not None and math.isfinite(value) and (self.best is None or value < self.best["value"])
        if improved:
            self.best = {"epoch": epoch, "step": step, "value": value}
            self.since_best = 0
            self.raised.discard("overtraining")
        elif value is not None:
            self.since_best += 1
        self._check_dominance(epoch, step, results)
        self._check_collapse(epoch, step, results)
        self._check_overtraining(epoch, step, value)
        stop = self.patience > 0 and self.since_best >= self.patience
        return Verdict(value, improved, stop)

    def _raise_once(self, kind: str, active: bool, epoch: int, step: int, message: str) -> None:
        """Warn when a condition appears; stay quiet while it lasts; re-arm once it clears."""
        if active and kind not in self.raised:
            self.raised.add(kind)
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


def score_gap(real: float, fake: float, gan_loss: str) -> float:
    """How far apart a discriminator's mean scores on real and translated images are, as a fraction
    of the distance between the targets its loss trains them toward (1: fully confident)."""
    if gan_loss == "bce":  # logits: compare probabilities
        return 1 / (1 + math.exp(-real)) - 1 / (1 + math.exp(-fake))
    if gan_loss == "hinge":  # targets +1 and -1
        return (real - fake) / 2
    return real - fake  # lsgan: targets 1 and 0


class NonFiniteGuard:
    """Counts training steps skipped for NaN/inf losses; says when there have been too many in a row.

    The counting happens on the device (``note``, every step, no host sync); the host reads the
    counts only when ``check``-ed, at logging steps and at the end of each epoch.
    """

    def __init__(self, warnings: RunWarnings, limit: int = NONFINITE_LIMIT) -> None:
        self.warnings, self.limit = warnings, limit
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

    def end_epoch(self, epoch: int, step: int) -> int:
        """Write one warning for the epoch's skipped steps (if any); returns their count."""
        count, self.in_epoch = self.in_epoch, 0
        if count:
            self.warnings.add(
                "divergence", epoch, step,
                f"Divergence: {count} training step(s) in epoch {epoch} had NaN/inf losses and were skipped. "
                "Try: a lower --lr, --gan-loss lsgan, or --no-amp; training stops by itself after "
                f"{self.limit} such steps in a row, keeping a resumable checkpoint.")
        return count


class RunHealth:
    """Everything the training loop asks about health, behind a few calls.

    ``note_step`` after every step (NaN/inf steps are counted on the device), ``check_skipped`` at
    logging steps and epoch ends (True: too many in a row, stop), ``end_epoch`` after
    every epoch (held-out evaluation when due, a metrics.csv row, best/, warnings, plots; True means
    --patience ran out), and ``state_dict``/``resume`` for train_state.pt.
    """

    def __init__(self, run_dir: Path, config: Config, heldout: HeldOut | None,
                 inception: nn.Module | None = None, write: bool = True) -> None:
        t = config.train
        self.run_dir, self.config, self.heldout, self.inception = Path(run_dir), config, heldout, inception
        self.warnings = RunWarnings(run_dir, write)
        self.monitor = TrainingMonitor(self.warnings, t.select_by, t.patience, t.gan_loss)
        self.guard = NonFiniteGuard(self.warnings)

    @classmethod
    def create(cls, run_dir: Path, config: Config, heldout_a: list[Path], heldout_b: list[Path],
               device: torch.device, is_main: bool = True) -> "RunHealth":
        """Load the held-out images (and the Inception network with --fid) unless evaluation is off.

        Only the main process of a distributed run evaluates and writes files (``is_main``); the
        others still count their NaN/inf steps.
        """
        t = config.train
        if not is_main:
            return cls(run_dir, config, None, write=False)
        if t.eval_every == 0:
            log.info("Held-out evaluation is off (--eval-every 0): no best/ checkpoint, no collapse checks")
            return cls(run_dir, config, None)
        heldout = HeldOut.from_paths(heldout_a, heldout_b, t.crop_size, device)
        inception = inception_network(t.inception_weights) if t.fid else None
        if inception is not None:
            inception.to(device)
        return cls(run_dir, config, heldout, inception)

    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict()

    def resume(self, state: dict[str, Any] | None, step: int) -> None:
        """Carry on from train_state.pt; warnings raised after ``step`` belong to redone training."""
        self.warnings.truncate_after(step)
        if state:
            self.monitor.load_state_dict(state)

    def note_step(self, skipped: torch.Tensor) -> None:
        """Count a step (on the device: no host sync); ``skipped`` is 1.0 when its update was skipped."""
        self.guard.note(skipped)

    def check_skipped(self, epoch: int, step: int) -> bool:
        """At a logging step or an epoch's end: True when so many steps in a row had NaN/inf losses
        that training must stop (the divergence warning is then written)."""
        if not self.guard.check(step):
            return False
        self.guard.end_epoch(epoch, step)
        return True

    def end_epoch(self, epoch: int, step: int, models: dict[str, nn.Module], metrics: MetricsLog,
                  autocast: Callable[[], AbstractContextManager] = nullcontext) -> bool:
        """After epoch ``epoch`` (1-based): report skipped steps and, when due, evaluate. True: stop early."""
        skipped = self.guard.end_epoch(epoch, step)
        t = self.config.train
        total = t.epochs + t.epochs_decay
        if self.heldout is None or not (epoch % t.eval_every == 0 or epoch == total):
            if skipped:  # recorded whether or not the epoch is evaluated, for `cyclegan report`
                metrics.append_or_merge({"epoch": epoch, "step": step, "skipped_steps": skipped})
            return False
        started = time.time()
        results = evaluate_heldout(models["G_AB"], models["G_BA"], self.heldout, D_A=models["D_A"],
                                   D_B=models["D_B"], autocast=autocast, inception=self.inception)
        value = selection_value(results, t.select_by)
        if value is None:
            log.warning("held-out %s could not be computed this epoch; the best epoch is not updated", t.select_by)
        verdict = self.monitor.observe(epoch, step, results, value)
        flat = flatten(results)
        metrics.append_or_merge({"epoch": epoch, "step": step, **flat, "skipped_steps": skipped,
                                 "eval_seconds": round(time.time() - started, 2)})
        if verdict.improved:
            save_best(self.run_dir, {"G_AB": models["G_AB"], "G_BA": models["G_BA"]},
                      {"epoch": epoch, "step": step, "metric": f"val_{t.select_by}", "value": value,
                       "metrics": flat})
        best = self.monitor.best
        save_training_plots(self.run_dir, best["epoch"] if best else None)
        log.info("held-out epoch %d: SWD A->B %.2f (unchanged input %.2f), B->A %.2f (%.2f); best %s %.4g at epoch %d "
                 "(%.1fs)", epoch, results["AtoB"]["swd"], results["AtoB"]["swd_identity"], results["BtoA"]["swd"],
                 results["BtoA"]["swd_identity"], t.select_by, best["value"] if best else float("nan"),
                 best["epoch"] if best else 0, time.time() - started)
        if verdict.stop:
            log.warning("Stopping early: held-out %s has not improved for %d evaluations (--patience); the best "
                        "epoch is %d, in %s", t.select_by, self.monitor.since_best, best["epoch"] if best else 0,
                        self.run_dir / ckpt.BEST_DIR)
        return verdict.stop


def run_report(run_dir: str | Path) -> dict[str, Any]:
    """What ``cyclegan report`` shows: progress, the best epoch, the latest held-out metrics and the
    warnings; also redraws the plots (their paths are under ``plots``)."""
    run_dir = Path(run_dir)
    config = ckpt.load_config(run_dir)
    t = config.train
    rows = read_metrics(run_dir / METRICS_FILE)
    evaluations = [r for r in rows if r.get("val_swd_AtoB")]
    steps = [int(float(r["step"])) for r in rows if r.get("step")]
    grids = [int(p.stem.removeprefix("epoch_")) for p in (run_dir / "samples").glob("epoch_*.png")
             if p.stem.removeprefix("epoch_").isdigit()]
    best = read_best(run_dir)
    latest = {k: float(v) for k, v in evaluations[-1].items() if k.startswith("val_") and v} if evaluations else {}
    return {
        "run": str(run_dir),
        "epochs_done": max(grids, default=0),
        "epochs_total": t.epochs + t.epochs_decay,
        "steps": max(steps, default=0),
        "select_by": f"val_{t.select_by}",
        "best": best,
        "evaluations": len(evaluations),
        "latest_epoch": int(float(evaluations[-1]["epoch"])) if evaluations else None,
        "latest": latest,
        "skipped_steps": sum(int(float(r.get("skipped_steps") or 0)) for r in rows),
        "warnings": read_warnings(run_dir),
        "plots": [str(p) for p in save_training_plots(run_dir, best["epoch"] if best else None)],
    }
