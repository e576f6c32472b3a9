"""Translation quality of training variants at equal compute, against ground truth, over a suite of styles.

Each variant is the base recipe plus config overrides (``VARIANTS``); every one trains for the same
number of iterations on the same data, for each seed, and its final generators are scored on the
test split: L1, PSNR and SSIM against the ground truth (beside the input left unchanged), how much of
the needed change was made (``change_made``: the made change projected on the needed one, 1 = all
of it, 0 = none; ``change_corr``: their cosine), held-out SWD, the checkerboard score (period-2 spectral energy over the input's: 1 = as the input) and the
discriminators' held-out AUC (far below 0.5: they memorise their training images). Printed per run,
then as mean +- standard deviation over seeds per variant, with iterations and training wall time.

    python benchmarks/quality.py --dataset photos --size 64 --ngf 16 --n-blocks 3 --iterations 600
    python benchmarks/quality.py --suite --size 64 --ngf 16 --n-blocks 3 --variants base quality  # every style
    python benchmarks/quality.py --dataset shapes --size 64 --base tiny --iterations 0 --every-epoch --best
    python benchmarks/quality.py ... --every-epoch   # also evaluate and keep every epoch (selection.py --runs)

Datasets are made on first use under ``--out`` (``photos`` needs the bench extra). Runs already
there are reused, so a table can be redrawn without retraining.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from cyclegan.config import preset, with_family
from cyclegan.data.folders import find_images
from cyclegan.data.photos import STYLES, make_photos_dataset
from cyclegan.data.synthetic import affine_colour_fit, make_dataset
from cyclegan.evaluate.heldout import GROUND_TRUTH, evaluate_run
from cyclegan.images import load_image
from cyclegan.train.loop import train
from cyclegan.translate.translator import Translator


def changes_from_paper(name: str) -> dict[str, object]:
    """The config fields in which preset ``name`` differs from ``paper``, as variant overrides."""
    paper, other = preset("paper"), preset(name)
    return {f.name: getattr(mine, f.name) for theirs, mine in ((paper.model, other.model), (paper.train, other.train))
            for f in dataclasses.fields(mine) if getattr(mine, f.name) != getattr(theirs, f.name)}


VARIANTS: dict[str, dict[str, object]] = {
    "base": {},  # the base preset unchanged (--base: paper by default)
    "ema": {"ema": 0.999},
    "resize": {"upsample": "resize"},
    "diffaug": {"diffaug": "color,translation,cutout"},
    "sn": {"spectral_norm": True},
    "skip": {"skip": True},
    "quality": changes_from_paper("quality"),  # what --preset quality adds to paper
    "skip_resize": {"skip": True, "upsample": "resize"},  # the first quality preset (painterly style only)
    "colour": {"colour": True, "upsample": "resize"},  # per-image colour transform + residual
    "colour_noid": {"colour": True, "upsample": "resize", "lambda_identity": 0.0},
    # The other model families (--model; config.with_family), on the base preset's sizes and schedule
    "cut": {"family": "cut"},
    "fastcut": {"family": "fastcut"},
    # Every addition together (identity loss off: the skip already keeps the input)
    "all": {"skip": True, "upsample": "resize", "diffaug": "color,translation,cutout", "ema": 0.999,
            "lambda_identity": 0.0},
}
COLUMNS = ("l1", "psnr", "ssim", "change_made", "change_corr", "swd", "checkerboard", "d_auc")
SUITE = tuple(STYLES)  # every photo style (data/photos.py)


def dataset(kind: str, out: Path, size: int, style: str = "painterly") -> Path:
    """The dataset under ``out`` (made on first use). Photos are named by style; the painterly one
    keeps its old name, photos{size}, so earlier runs and commands still find it."""
    folder = out / (f"{kind}{size}" + (f"-{style}" if kind == "photos" and style != "painterly" else ""))
    if not (folder / "testA").is_dir():
        if kind == "photos":
            make_photos_dataset(folder, size=size, overwrite=True, style=style)
        else:
            make_dataset(folder, size=size, overwrite=True)
    return folder


def train_variant(data: Path, run: Path, args: argparse.Namespace, overrides: dict[str, object], seed: int) -> float:
    """Train one run to the iteration budget (reused when already there); returns its training seconds."""
    if (run / "bench.json").exists():  # written once the run finished
        return float(json.loads((run / "bench.json").read_text())["seconds"])
    if run.exists():  # left by an interrupted run: its training time is unknown, so it starts over
        print(f"{run} was left unfinished; training it again", flush=True)
        shutil.rmtree(run)
    config = preset(args.base)
    t, m = config.train, config.model
    t.domain_a, t.domain_b, t.test_a, t.test_b = (str(data / s) for s in ("trainA", "trainB", "testA", "testB"))
    t.device, t.seed = "cpu", seed
    # Evaluated once at the end, outside the timed training; --every-epoch evaluates and keeps every
    # epoch, as the best-epoch regret harness (selection.py --runs) needs.
    t.eval_every, t.keep_epochs = (1, -1) if args.every_epoch else (0, 0)
    if args.size != t.crop_size:  # the preset's own sizes otherwise (tiny: load 64, crop 64, as the demo)
        t.crop_size, t.load_size = args.size, args.size + args.size // 8
    if args.ngf:
        m.ngf = m.ndf = args.ngf
    if args.n_blocks is not None:
        m.n_blocks = args.n_blocks
    per_epoch = math.ceil(len(find_images(data / "trainA")) / t.batch_size)
    overrides = dict(overrides)
    config = with_family(config, str(overrides.pop("family", "cyclegan")))  # after n_blocks: CUT's layers fit it
    iterations = int(overrides.pop("iterations", args.iterations))  # a variant's own budget (equal wall-clock)
    if iterations:
        epochs = max(1, round(iterations / per_epoch))
        t.epochs, t.epochs_decay = math.ceil(epochs / 2), epochs // 2  # the published shape: constant, then decay
    else:  # the base preset's own schedule (the demo's, for --base tiny)
        epochs = t.epochs + t.epochs_decay
    for name, value in overrides.items():
        setattr(m if hasattr(m, name) else t, name, value)
    started = time.time()
    train(config, run)
    seconds = time.time() - started
    (run / "bench.json").write_text(json.dumps({"seconds": seconds, "iterations": epochs * per_epoch}))
    return seconds


def score(run: Path, data: Path, best: bool) -> dict[str, dict[str, float]]:
    results, _ = evaluate_run(Translator.from_run(run, device="cpu", best=best), run, data, best=best)
    return results


def sample_grid(runs: dict[str, Path], data: Path, out: Path, best: bool, count: int = 4) -> None:
    """A PNG per direction: for the first ``count`` test images a row of input, each run's translation
    (in ``runs`` order; ``best``: its best/) and the ground truth, with a header naming the columns.
    Images under 128 px are enlarged by whole pixels (nearest) so that artifacts stay visible."""
    translators = {name: Translator.from_run(run, device="cpu", best=best) for name, run in runs.items()}
    columns = ["input", *runs, "truth"]
    header = 14
    for direction, source in (("AtoB", "testA"), ("BtoA", "testB")):
        names = sorted(p.name for p in (data / source).iterdir())[:count]
        inputs = [load_image(data / source / name) for name in names]
        side = inputs[0].width * max(1, 128 // inputs[0].width)
        grid = Image.new("RGB", (side * len(columns), header + side * len(names)), "white")
        draw = ImageDraw.Draw(grid)
        for c, label in enumerate(columns):
            draw.text((c * side + 3, 1), label, fill="black")
        for r, (name, image) in enumerate(zip(names, inputs)):
            cells = [image, *(t(image, direction) for t in translators.values()),
                     load_image(data / "gt" / direction / name)]
            for c, cell in enumerate(cells):
                grid.paste(cell.resize((side, side), Image.Resampling.NEAREST), (c * side, header + r * side))
        path = out.with_name(f"{out.stem}_{direction}{out.suffix}")
        grid.save(path)
        print(f"wrote {path}")


def print_baselines(styles: list[str], out: Path, size: int) -> None:
    """What needs no training, per style and direction, on the test split: the input returned
    unchanged, and the best global affine colour transform fitted on the ground truth itself (an
    oracle: no model sees the truth). L1 and PSNR are means over images, on the 0-1 scale."""
    print(f"\n== baselines at {size} px: input unchanged | best affine colour transform (fitted on the truth)")
    print(f"{'style':<10}{'direction':<10}{'L1':>8}{'PSNR':>8} |{'L1':>8}{'PSNR':>8}")
    for style in styles:
        data = dataset("photos", out, size, style)
        for direction, (source, truth) in GROUND_TRUTH.items():
            names = sorted(p.name for p in (data / source).iterdir())
            xs = [np.asarray(load_image(data / source / n)) for n in names]
            ys = [np.asarray(load_image(data / truth / n)).astype(np.float64) / 255 for n in names]
            cells = []
            for images in ([x / 255.0 for x in xs], affine_colour_fit(xs, [np.asarray(y * 255) for y in ys])):
                errors = [np.clip(i, 0, 1) - y for i, y in zip(images, ys)]
                cells += [statistics.fmean(float(np.abs(e).mean()) for e in errors),
                          statistics.fmean(10 * math.log10(1 / max(float((e ** 2).mean()), 1e-10)) for e in errors)]
            print(f"{style:<10}{direction:<10}{cells[0]:>8.4f}{cells[1]:>8.2f} |{cells[2]:>8.4f}{cells[3]:>8.2f}")


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.4g} ± {statistics.stdev(values):.2g}" if len(values) > 1 else f"{mean:.4g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("photos", "shapes"), default="photos")
    parser.add_argument("--size", type=int, default=128, help="image side (the dataset is made at this size)")
    parser.add_argument("--styles", nargs="+", choices=SUITE, default=["painterly"], help="photo styles to run")
    parser.add_argument("--suite", action="store_true", help="every photo style (the style suite)")
    parser.add_argument("--baselines", action="store_true",
                        help="only print each style's input-unchanged and best-colour-transform scores, no training")
    parser.add_argument("--base", default="paper", help="preset the variants start from (default paper)")
    parser.add_argument("--ngf", type=int, help="ngf and ndf (default: the base preset's)")
    parser.add_argument("--n-blocks", type=int, help="ResNet blocks (default: the base preset's)")
    parser.add_argument("--iterations", type=int, default=1500,
                        help="training iterations per run (rounded to epochs); 0: the base preset's schedule")
    parser.add_argument("--best", action="store_true", help="score best/ instead of the last epoch (--every-epoch)")
    parser.add_argument("--define", action="append", default=[], metavar="NAME=JSON",
                        help='another variant, e.g. skip_noid=\'{"skip": true, "lambda_identity": 0}\'')
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("/tmp/quality"))
    parser.add_argument("--every-epoch", action="store_true",
                        help="evaluate and keep every epoch (for benchmarks/selection.py --runs); slower")
    parser.add_argument("--grid", type=Path, metavar="PNG",
                        help="also write sample grids (input, each variant's first seed, truth), one per "
                             "direction: PNG_AtoB.png and PNG_BtoA.png")
    args = parser.parse_args()
    for definition in args.define:
        name, _, overrides = definition.partition("=")
        VARIANTS[name] = json.loads(overrides)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)} (or --define one)")
    styles = list(SUITE) if args.suite else args.styles
    if args.baselines:
        print_baselines(styles, args.out, args.size)
        return 0
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; {args.dataset} {args.size}px, base {args.base}, ngf {args.ngf or 'preset'}, "
          f"blocks {args.n_blocks if args.n_blocks is not None else 'preset'}, {args.iterations or 'preset'} iterations, "
          f"scoring {'best/' if args.best else 'the last epoch'}",
          flush=True)
    tables: dict[str, dict[str, dict[str, list[float]]]] = {}
    for style in styles if args.dataset == "photos" else ["shapes"]:
        data = dataset(args.dataset, args.out, args.size, style)
        table, first_runs, identity = tables.setdefault(style, {}), {}, {}
        for variant in args.variants:
            for seed in args.seeds:
                label = (f"{data.name}-{args.base}-ngf{args.ngf}-b{args.n_blocks}-it{args.iterations}"
                         + ("-every" if args.every_epoch else ""))
                run = args.out / "runs" / f"{label}-{variant}-seed{seed}"
                seconds = train_variant(data, run, args, VARIANTS[variant], seed)
                first_runs.setdefault(args.base if variant == "base" else variant, run)
                results = score(run, data, args.best)
                row = table.setdefault(variant, {})
                row.setdefault("seconds", []).append(seconds)
                for direction, values in results.items():
                    identity[direction] = {k: values[f"identity_{k}"] for k in ("l1", "psnr", "ssim")}
                    for key in COLUMNS:
                        if key in values:
                            row.setdefault(f"{key}_{direction}", []).append(values[key])
                print(f"{style} {variant:<8} seed {seed}: {seconds:5.0f}s, " + "; ".join(
                    f"{d} PSNR {v['psnr']:.2f} dB, L1 {v['l1']:.4f}, SSIM {v['ssim']:.3f}, "
                    f"made {v['change_made']:.2f} (corr {v['change_corr']:.2f}), SWD {v['swd']:.1f}, "
                    f"checker {v['checkerboard']:.2f}, D AUC {v.get('d_auc', float('nan')):.2f}"
                    for d, v in results.items()), flush=True)
        print(f"\n== {style}: input unchanged: " + "; ".join(
            f"{d} PSNR {v['psnr']:.2f} dB, L1 {v['l1']:.4f}, SSIM {v['ssim']:.3f}" for d, v in identity.items()))
        print(f"mean ± sd over seeds {args.seeds}")
        for direction in ("AtoB", "BtoA"):
            print(f"\n{direction:<12}" + "".join(f"{k:>16}" for k in (*COLUMNS, "train s")))
            for variant, row in table.items():
                cells = [spread(row[f"{k}_{direction}"]) if f"{k}_{direction}" in row else "-" for k in COLUMNS]
                print(f"{variant:<12}" + "".join(f"{c:>16}" for c in (*cells, spread(row["seconds"]))))
        if args.grid:
            sample_grid(first_runs, data, args.grid.with_name(f"{args.grid.stem}_{style}{args.grid.suffix}"),
                        args.best)
    if len(tables) > 1 and "base" in args.variants:
        print_suite_summary(tables)
    return 0


def print_suite_summary(tables: dict[str, dict[str, dict[str, list[float]]]]) -> None:
    """Each variant's PSNR gain over the base recipe, per style and direction (mean over seeds ±
    the larger of the two seed spreads), then averaged over every style and direction."""
    print("\n== PSNR over the base recipe (dB), mean over seeds ± the larger seed sd of the two")
    variants = [v for v in next(iter(tables.values())) if v != "base"]
    print(f"{'variant':<12}" + "".join(f"{s + ' ' + d:>20}" for s in tables for d in ("AtoB", "BtoA")) + f"{'suite mean':>12}")
    for variant in variants:
        cells, gains = [], []
        for table in tables.values():
            for direction in ("AtoB", "BtoA"):
                base, mine = table["base"].get(f"psnr_{direction}"), table.get(variant, {}).get(f"psnr_{direction}")
                if not base or not mine:
                    cells.append("-")
                    continue
                gain = statistics.fmean(mine) - statistics.fmean(base)
                noise = max((statistics.stdev(v) if len(v) > 1 else 0.0) for v in (base, mine))
                gains.append(gain)
                cells.append(f"{gain:+.2f} ± {noise:.2f}")
        mean = f"{statistics.fmean(gains):+.2f}" if gains else "-"
        print(f"{variant:<12}" + "".join(f"{c:>20}" for c in cells) + f"{mean:>12}")


if __name__ == "__main__":
    sys.exit(main())
