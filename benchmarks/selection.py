"""Regret of each best-epoch rule, against ground truth.

For runs on data with ground truth (the embedded ``shapes`` dataset, several seeds), every
evaluated epoch's generators are kept (``--keep-epochs -1``) and scored against the truth
(mean L1 of both directions on the test split). Each selection rule then picks an epoch from the
held-out metrics alone, exactly as training does (``TrainingMonitor``, with its guard that never
prefers an epoch worse than doing nothing), and its regret is

    regret = truth L1 of the chosen epoch / truth L1 of the best epoch - 1

Printed per run and summarised as median and worst regret per rule. Runs already in ``--out``
are reused, so the table can be redrawn without retraining.

    python benchmarks/selection.py --seeds 0 1 2                   # tiny preset on shapes
    python benchmarks/selection.py --seeds 0 1 2 --set ema=0.995   # a variant
    python benchmarks/selection.py --data /tmp/quality/photos64 --runs /tmp/quality/runs/*-every-*
                                   # runs trained by quality.py --every-epoch (the real-photo benchmark)
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from cyclegan import runfolder
from cyclegan.config import preset
from cyclegan.data.synthetic import make_dataset
from cyclegan.evaluate.health import TrainingMonitor
from cyclegan.data.folders import run_heldout_paths
from cyclegan.evaluate.heldout import HeldOut, evaluate_ground_truth
from cyclegan.evaluate.metrics import SWD_RESAMPLES
from cyclegan.evaluate.table import SELECTION_RULES, selection_value
from cyclegan.images import to_float, to_uint8
from cyclegan.train.loop import train
from cyclegan.translate.translator import Translator

ONLINE_RULES = [r for r in SELECTION_RULES if r not in ("fid", "kid")]  # FID/KID need Inception weights: offline here
RANK_OF = ("swd_ratio", "cycle_l1", "identity_l1")  # the "mean_rank" rule averages these rules' ranks


class _Sink(list):
    def add(self, kind: str, epoch: int, step: int, message: str) -> None:
        self.append(kind)


def _results(row: dict[str, str]) -> dict[str, dict[str, float]]:
    """A metrics.csv row back into evaluate_heldout's shape."""
    out: dict[str, dict[str, float]] = {"AtoB": {}, "BtoA": {}}
    for key, value in row.items():
        for direction in out:
            if key.startswith("val_") and key.endswith("_" + direction) and value:
                out[direction][key[4:-len(direction) - 1]] = float(value)
    return out


def replay(rows: list[dict[str, str]], rule: str) -> tuple[TrainingMonitor, _Sink]:
    """The monitor's own logic over a run's evaluations, as training ran it, end-of-training checks
    included: what it keeps in best/ under ``rule``, and the warnings it raises (today's rules, even
    for a run trained before them)."""
    sink = _Sink()
    monitor = TrainingMonitor(sink, rule)
    for row in rows:
        epoch = int(float(row["epoch"]))
        monitor.observe(epoch, int(float(row["step"])), _results(row), selection_value(row, rule, epoch))
    monitor.check_end(epoch, int(float(rows[-1]["step"])))
    return monitor, sink


def choose(rows: list[dict[str, str]], rule: str) -> int:
    """The epoch training would keep in best/ under ``rule``."""
    return replay(rows, rule)[0].best["epoch"]


def fill_domain_gap(rows: list[dict[str, str]], run: Path) -> None:
    """Runs evaluated before the domain gap was recorded: compute it from the run's held-out images
    (it depends on nothing else) so the no_translation rule can be replayed on them."""
    if not rows or rows[0].get("val_domain_gap_AtoB"):
        return
    config = runfolder.load_config(run)
    paths_a, paths_b, _ = run_heldout_paths(config.train, None)
    heldout = HeldOut.from_paths(paths_a, paths_b, config.train.crop_size)
    gaps = {"AtoB": heldout.domain_gap("A", "B"), "BtoA": heldout.domain_gap("B", "A")}
    for row in rows:
        row.update({f"val_domain_gap_{d}": str(g) for d, g in gaps.items()})


def fill_coarse_swd(rows: list[dict[str, str]], run: Path) -> None:
    """Runs evaluated before the coarse SWD was recorded: measure it (and its bootstrap spread) on
    each kept epoch's generators, with the held-out images and settings training used, so the
    swd_coarse rule can be replayed on them."""
    if not rows or rows[0].get("val_swd_coarse_AtoB"):
        return
    config = runfolder.load_config(run)
    paths_a, paths_b, _ = run_heldout_paths(config.train, None)
    heldout = HeldOut.from_paths(paths_a, paths_b, config.train.crop_size)
    for row in rows:
        translator = Translator.from_run(run, device="cpu", epoch=int(float(row["epoch"])))
        for direction, source, target in (("AtoB", "A", "B"), ("BtoA", "B", "A")):
            if direction not in translator.directions:
                continue
            fake = translator.translate_tensor(to_float(heldout.images[source]), direction)
            score = heldout.swd(to_uint8(fake), target, SWD_RESAMPLES)
            row[f"val_swd_coarse_{direction}"], row[f"val_swd_coarse_sd_{direction}"] = str(score.coarse), str(score.coarse_sd)


def choose_by_mean_rank(rows: list[dict[str, str]]) -> int:
    """Offline only (it needs the whole history): the epoch with the lowest mean rank over RANK_OF,
    never one worse than doing nothing when another is not."""
    epochs = [int(float(r["epoch"])) for r in rows]
    ranks = {e: 0.0 for e in epochs}
    for rule in RANK_OF:
        scored = sorted(epochs, key=lambda e: selection_value(rows[epochs.index(e)], rule, e))
        for position, e in enumerate(scored):
            ranks[e] += position / len(RANK_OF)
    from cyclegan.evaluate.table import worse_than_nothing

    return min(epochs, key=lambda e: (bool(worse_than_nothing(rows[epochs.index(e)])), ranks[e]))


def truth_per_epoch(run: Path, data: Path) -> dict[int, float]:
    """Mean of both directions' ground-truth L1 for every kept epoch (each direction's L1 over the
    input-unchanged L1 is printed for the last one: the demo's bar)."""
    scores = {}
    for epoch in runfolder.kept_epochs(run):
        result = evaluate_ground_truth(Translator.from_run(run, device="cpu", epoch=epoch), data)
        scores[epoch] = sum(r["l1"] for r in result.values()) / len(result)
    print(f"{run.name}, last epoch: " + ", ".join(f"{d} L1 {r['l1']:.4f} = {r['l1'] / r['identity_l1']:.2f}x the input's"
                                                 for d, r in result.items()), flush=True)
    return scores


def train_run(data: Path, out: Path, seed: int, preset_name: str, overrides: dict[str, object]) -> Path:
    if runfolder.has_config(out) and runfolder.kept_epochs(out):
        return out
    config = preset(preset_name)
    t = config.train
    t.domain_a, t.domain_b, t.test_a, t.test_b = (str(data / s) for s in ("trainA", "trainB", "testA", "testB"))
    t.device, t.seed, t.keep_epochs, t.eval_every = "cpu", seed, -1, 1
    for name, value in overrides.items():
        setattr(config.model if hasattr(config.model, name) else t, name, value)
    started = time.time()
    train(config, out)
    print(f"trained {out} in {time.time() - started:.0f}s", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/tmp/selection/shapes"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/selection"))
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", type=Path, nargs="+",
                        help="score these run folders (trained with every epoch kept) instead of training")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a config override for every run, e.g. ema=0.995 (JSON values)")
    args = parser.parse_args()
    # The replayed monitor's warnings were raised when the runs trained; only the choices matter here.
    logging.getLogger("cyclegan.evaluate.health").setLevel(logging.ERROR)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    if not args.data.exists() and not args.runs:
        make_dataset(args.data)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; " + (f"{len(args.runs)} run(s) given" if args.runs else
                                            f"preset {args.preset}, overrides {overrides or 'none'}"))
    label = "-".join(f"{k}{v}" for k, v in overrides.items()) or "default"
    regrets: dict[str, list[float]] = {r: [] for r in [*ONLINE_RULES, "mean_rank"]}
    runs = args.runs or [train_run(args.data, args.out / f"{args.preset}-{label}-seed{seed}", seed, args.preset,
                                   overrides) for seed in args.seeds]
    for run in runs:
        truth = truth_per_epoch(run, args.data)
        rows = [r for r in runfolder.read_metrics(run) if r.get("val_swd_AtoB") and int(float(r["epoch"])) in truth]
        fill_domain_gap(rows, run)
        fill_coarse_swd(rows, run)
        warned = sorted(set(replay(rows, "swd")[1]))
        best = min(truth.values())
        print(f"\n{run.name}: truth L1 per epoch " + ", ".join(f"{e}: {v:.4f}" for e, v in truth.items())
              + f" (best epoch {min(truth, key=truth.get)}); warnings (replayed): {', '.join(warned) or 'none'}")
        choices = {rule: choose(rows, rule) for rule in ONLINE_RULES} | {"mean_rank": choose_by_mean_rank(rows)}
        for rule, epoch in choices.items():
            regret = truth[epoch] / best - 1
            regrets[rule].append(regret)
            print(f"  {rule:<12} chooses epoch {epoch:>2}: truth L1 {truth[epoch]:.4f}, regret {100 * regret:5.1f}%")
    print(f"\nregret over {len(runs)} run(s) (lower is better)\n{'rule':<12}{'median':>9}{'worst':>9}")
    for rule, values in sorted(regrets.items(), key=lambda item: (max(item[1]), statistics.median(item[1]))):
        print(f"{rule:<12}{100 * statistics.median(values):>8.1f}%{100 * max(values):>8.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
