"""The ``cyclegan`` command: train, translate, evaluate, report, compare, make-dataset, app, import-official, export,
download.

Training flags are generated from the config dataclasses, so ``--crop-size 128`` sets
``TrainConfig.crop_size`` and every field can be overridden; ``--help`` lists them all. A
``CycleGANError`` is printed as one line and exits with status 1; never a traceback for a user mistake.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence

# Only modules that need no torch, torchvision or gradio are imported here, so that `cyclegan --help`
# and every `COMMAND --help` answer at once; each command imports what it runs (tests/test_cli.py).
from .app.settings import add_app_arguments
from .config import AMP_MODES, FAMILIES, PRESETS, Config, ModelConfig, TrainConfig, cut_nce_layers, preset, with_family
from .errors import ConfigError, CycleGANError, DiskFullError, TrainingInterrupted
from .evaluate.table import BY_KEY, DIRECTIONS, SELECTABLE, measured_directions, table_rows

log = logging.getLogger("cyclegan")
FAILURES_FILE = "translate_failures.txt"  # written to the output folder: one "path<TAB>reason" line per failed input
SOME_FAILED = 2  # translate's exit status when some files failed and the others were translated

_DATA_FIELDS = ("domain_a", "domain_b", "test_a", "test_b")
_FIELD_HELP = {
    "generator": "generator architecture: a name in models/generators.py's registry",
    "channels_a": "domain A's image channels: 3 (RGB) or 1 (grayscale, e.g. sketches or thermal)",
    "channels_b": "domain B's image channels: 3 (RGB) or 1 (grayscale)",
    "domain_a": "folder of domain A training images (searched recursively)",
    "domain_b": "folder of domain B training images",
    "test_a": "held-out domain A images (used for sample grids)",
    "test_b": "held-out domain B images",
    "n_blocks": "residual blocks in each generator (9 published, 6 for 128 px)",
    "n_layers_d": "stride-2 layers of the PatchGAN (3 gives 70x70 patches)",
    "upsample": "generator upsampling: transpose (published) or resize (nearest + conv: far less checkerboard)",
    "epochs": "epochs at the initial learning rate",
    "epochs_decay": "epochs over which the learning rate decays linearly to zero",
    "gan_loss": "adversarial loss: lsgan (published), bce or hinge",
    "lambda_identity": "identity loss weight, relative to lambda_cycle",
    "pool_size": "generated images kept for the discriminators (0: none)",
    "device": "auto (CUDA if present), cpu, cuda or cuda:N",
    "amp": "bf16 autocast: --amp (on, even on a CPU without native bf16, where it is slower), --amp auto "
           "(where it pays: CUDA; the CPU stays fp32 for now) or --no-amp (docs/cpu.md)",
    "channels_last": "channels_last memory format (CUDA only)",
    "compile": "torch.compile the networks (falls back to eager, with a warning, where it fails)",
    "cache_images": "decode every image once into a uint8 cache (on the GPU, else pinned memory); "
                    "crops and flips then run on the device",
    "num_workers": "processes decoding training images (0: in the training process)",
    "log_every": "steps between rows of metrics.csv",
    "tensorboard": "also write losses, lr, held-out metrics, warnings and sample grids to RUN/tensorboard/ "
                   "(needs .venv/bin/pip install -e '.[tensorboard]')",
    "preprocess": "how a training image becomes a crop-size square: resize_and_crop (published: resize to a "
                  "load-size square, aspect not kept), scale_width_and_crop, scale_shortside_and_crop (aspect "
                  "kept, then crop) or crop (the image's own resolution)",
    "strict": "stop on an unreadable image instead of skipping it",
    "eval_every": "epochs between held-out evaluations (metrics.csv, best/, warnings, plots/); 0: off",
    "val_fraction": "share of each training folder held out when it has no test folder (at most 200 images)",
    "select_by": f"held-out metric that picks best/, averaged over both directions: {', '.join(SELECTABLE)}",
    "patience": "stop after this many evaluations without improvement (0: never)",
    "keep_epochs": "keep the generators of the last N evaluated epochs in RUN/epochs/ for translate --epoch "
                   "(-1: all, 0: none)",
    "ema": "exponential moving average of the generator weights, e.g. 0.999 (0: off); samples, evaluation, "
           "best/ and the saved generators use the average",
    "diffaug": "augment real and fake images alike before the discriminators, against them memorising a "
               "small dataset: a comma-separated list of color, translation, cutout (empty: off)",
    "skip": "the generators learn a change to their input (a global skip) instead of redrawing it",
    "colour": "a per-image colour matrix and offset applied to the input, the generator adding a residual "
              "on top (for styles that are mostly a colour change; not with --skip)",
    "spectral_norm": "spectral norm on the discriminators' convs, in place of their instance norms",
    "nce_layers": "CUT/FastCUT: the generator encoder layers whose features PatchNCE compares",
    "nce_width": "CUT/FastCUT: units of each PatchNCE head",
    "one_way": "CUT/FastCUT: train A->B only (about half the time); the run then cannot translate B->A",
    "lambda_nce": "CUT/FastCUT: PatchNCE weight (set by --model: cut 1, fastcut 10)",
    "nce_identity": "CUT/FastCUT: also PatchNCE on target-domain images (set by --model: cut on, fastcut off)",
    "nce_patches": "CUT/FastCUT: positions sampled per layer and image",
    "nce_temperature": "CUT/FastCUT: temperature of the PatchNCE softmax",
    "flip_equivariance": "CUT/FastCUT: translate a flipped input half the time (set by --model: fastcut on)",
    "fid": "also FID and KID at each evaluation (slow on a CPU; needs cyclegan[metrics] and Inception weights)",
    "inception_weights": "local Inception weights file for FID/KID (default: torch-fidelity's own download)",
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field; defaults are SUPPRESS so only flags the user typed are seen."""
    for section, cls in (("model", ModelConfig), ("train", TrainConfig)):
        group = parser.add_argument_group(f"{section} config (overrides the preset)")
        for f in dataclasses.fields(cls):
            if f.name == "family":  # set by --model, which also brings the family's published defaults
                continue
            flag = "--" + f.name.replace("_", "-")
            help_text = _FIELD_HELP.get(f.name, "") + f" (paper: {f.default!r})"
            if f.name == "amp":  # off / auto / on, and the old spellings --amp and --no-amp
                group.add_argument(flag, dest="amp", nargs="?", const="on", choices=AMP_MODES,
                                   default=argparse.SUPPRESS, help=help_text)
                group.add_argument("--no-amp", dest="amp", action="store_const", const="off",
                                   default=argparse.SUPPRESS, help="fp32: the same as --amp off")
            elif f.type in ("bool", bool):
                group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                   default=argparse.SUPPRESS, help=help_text)
            else:
                kind = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
                group.add_argument(flag, dest=f.name, type=kind, default=argparse.SUPPRESS, help=help_text,
                                   metavar=f.name.upper())


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = {f.name for cls in (ModelConfig, TrainConfig) for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names}
    if getattr(args, "channels", None) is not None:  # --channels N: both domains, as before per-domain counts
        values.setdefault("channels_a", args.channels)
        values.setdefault("channels_b", args.channels)
    if getattr(args, "data", None):
        data = Path(args.data)
        values.setdefault("domain_a", str(data / "trainA"))
        values.setdefault("domain_b", str(data / "trainB"))
        for split, name in (("test_a", "testA"), ("test_b", "testB")):
            if (data / name).is_dir():
                values.setdefault(split, str(data / name))
    return values


def _apply(config: Config, values: dict[str, Any]) -> Config:
    for name, value in values.items():
        section = config.model if hasattr(config.model, name) else config.train
        setattr(section, name, value)
    return config


def cmd_train(args: argparse.Namespace) -> int:
    from .runfolder import load_config
    from .train.loop import merge_resume_config, train

    values = _overrides(args)
    if args.resume:
        if args.run or args.preset or args.model:
            raise ConfigError("--resume takes the run folder and its saved preset and model; drop --run, --preset "
                              "and --model")
        config = merge_resume_config(load_config(args.resume), values)
        run = train(config, args.resume, resume=True)
    else:
        if not args.run:
            raise ConfigError("name the run folder with --run checkpoints/NAME (or continue one with --resume)")
        if not values.get("domain_a") or not values.get("domain_b"):
            raise ConfigError("say what to train on: --data DIR (with trainA/ and trainB/) or --domain-a DIR "
                              "--domain-b DIR")
        config = _apply(with_family(preset(args.preset or "paper"), args.model or "cyclegan"), values)
        if config.model.family != "cyclegan" and "nce_layers" not in values:  # CUT's layers, for these blocks
            config.model.nce_layers = cut_nce_layers(config.model.n_blocks)
        run = train(config, args.run)
    log.info("Training finished: %s", run)
    log.info("Translate with: cyclegan translate --run %s --direction AtoB --input DIR --output DIR", run)
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from .runfolder import atomic_write_bytes, read_best
    from .translate.translator import DEFAULT_MAX_PIXELS, Translator
    from .video import is_video

    translator = Translator.from_run(args.run, device=args.device, best=args.best, epoch=args.epoch, bf16=args.bf16,
                                     max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS, tile_size=args.tile_size)
    if args.best:
        meta = read_best(args.run)
        if meta:
            log.info("Using best/ from epoch %s (%s %.4g)", meta["epoch"], meta["metric"], meta["value"])
    summary = translator.translate_folder(
        args.input, args.output, args.direction, overwrite=args.overwrite, size=args.size,
        batch_size=args.batch_size, image_format=args.format, cycle=args.cycle, workers=args.workers,
        progress=not args.quiet, video_stats=args.stats)
    print(summary.line(args.output))
    if not summary.failed:
        return 0
    # --input clip.mp4 --output out.mp4: the report goes beside the output file
    named_video = Path(args.input).is_file() and is_video(args.input) and is_video(args.output)
    report = (Path(args.output).parent if named_video else Path(args.output)) / FAILURES_FILE
    try:
        atomic_write_bytes(report, "".join(f"{path}\t{reason}\n" for path, reason in summary.failed).encode())
        print(f"{len(summary.failed)} file(s) not translated; the reason for each is in {report}", file=sys.stderr)
    except CycleGANError as exc:  # the disk that refused the outputs may refuse the report too
        path, reason = summary.failed[0]
        print(f"{len(summary.failed)} file(s) not translated, the first {path}: {reason}; the list could not be "
              f"written ({exc})", file=sys.stderr)
    # a re-run whose good images all exist already, beside a bad file, has nothing left to do: not an error
    nothing_translated = summary.translated == 0 and summary.skipped == 0
    return 1 if nothing_translated or args.strict else SOME_FAILED


def cmd_import_official(args: argparse.Namespace) -> int:
    from .translate.official import import_official

    target = import_official(args.pth, args.out, args.direction, overwrite=args.overwrite)
    print(f"imported {args.pth} -> {target}")
    print(f"Translate with: cyclegan translate --run {args.out} --direction {args.direction} --input DIR --output DIR")
    return 0


def cmd_download_list(args: argparse.Namespace) -> int:
    from .data.download import DATASETS, base_url
    from .translate.download import MODELS

    base = base_url(args.base_url)
    print(f"datasets: cyclegan download dataset NAME (-> datasets/NAME/trainA, trainB, testA, testB; from "
          f"{base}/datasets/NAME.zip)")
    for entry in DATASETS.values():
        print(f"  {entry.name:<26}{entry.about}")
    print(f"pretrained models: cyclegan download model NAME (-> checkpoints/NAME, a run folder; from "
          f"{base}/pretrained_models/NAME.pth)")
    for entry in MODELS.values():
        pair = f"; B->A from {entry.partner}" if entry.partner else " (one direction)"
        print(f"  {entry.name:<26}A->B: {entry.about}{pair}")
    return 0


def cmd_download_dataset(args: argparse.Namespace) -> int:
    from .data.download import download_dataset

    target = download_dataset(args.name, args.out, base=args.base_url, from_file=args.from_file,
                              overwrite=args.overwrite, progress=not args.quiet)
    print(f"dataset {args.name} -> {target}")
    print(f"Train on it with: cyclegan train --data {target} --run checkpoints/{args.name}")
    return 0


def cmd_download_model(args: argparse.Namespace) -> int:
    from .runfolder import generator_path
    from .translate.download import download_model
    from .translate.translator import GENERATOR_FOR

    run = download_model(args.name, args.out, base=args.base_url, from_file=args.from_file, overwrite=args.overwrite,
                         one_direction=args.one_direction, progress=not args.quiet)
    directions = [d for d, name in GENERATOR_FOR.items() if generator_path(run, name).exists()]
    print(f"model {args.name} -> {run} ({' and '.join(directions)})")
    direction = "both" if len(directions) == 2 else directions[0]
    print(f"Translate with: cyclegan translate --run {run} --direction {direction} --input DIR --output DIR")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .translate.export import export_generator

    out = export_generator(args.run, args.direction, args.out, args.format, best=args.best)
    print(f"exported the {args.direction} generator of {args.run} -> {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate.heldout import evaluate_run
    from .translate.translator import Translator, missing_direction_hint

    translator = Translator.from_run(args.run, device=args.device, best=args.best, epoch=args.epoch)
    # discriminators are kept for the latest epoch only: a best or kept epoch is scored without them
    results, source = evaluate_run(translator, args.run, args.data, best=args.best or args.epoch is not None,
                                   fid=args.fid,
                                   inception_weights=args.inception_weights or "")
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"held-out images: {source}")
    for missing in (d for d in DIRECTIONS if d not in results):  # a one-way run, a one-direction import
        print(f"{missing}: not measured: {args.run} has no generator for it"
              f"{missing_direction_hint(translator.config, args.run, missing)}")
    _print_table(results, "heldout")
    print("SWD: sliced Wasserstein distance of translated to real target patches (x1e3, lower is better); SWD input: "
          "the same for the input unchanged, the baseline to beat. G(target) L1: the identity-mapping error, a generator "
          "applied to images already in its target domain, which should change them little (not a baseline). diversity: spread of the outputs "
          "over that of the inputs (near 0: collapse). D AUC: how well the discriminator tells real from translated "
          "(0.5: not at all).")
    if any("fid" in r for r in results.values()):
        _print_table(results, "inception")
    if any("l1" in r for r in results.values()):
        _print_table({d: r for d, r in results.items() if "l1" in r}, "ground_truth")
        print("Against ground truth. L1: mean absolute error on a 0-1 scale (lower is better); input: the input "
              "returned unchanged, the baseline to beat.")
    return 0


def _print_table(results: dict[str, dict[str, float]], group: str) -> None:
    """One table of ``evaluate``: a row per direction, a column per metric of ``group`` in the metrics table."""
    columns = table_rows(group)
    print(f"{'direction':<10}" + "".join(f"{m.label:>{m.width}}" for m in columns))
    for direction, r in results.items():
        print(f"{direction:<10}" + "".join(m.cell(r.get(m.key)) for m in columns))


def cmd_compare(args: argparse.Namespace) -> int:
    from .evaluate.compare import compare_runs, comparison_lines

    comparison = compare_runs(args.runs, args.select_by)
    if args.json:
        print(json.dumps({"pick": comparison.pick.name if comparison.pick else None, "reason": comparison.reason,
                          "rule": comparison.rule,
                          "runs": [{"name": s.name, "family": s.family, "preset": s.preset, "epoch": s.epoch,
                                    "value": s.value, "noise": s.noise, "tier": s.tier, "metrics": s.flat}
                                   for s in comparison.runs]}))
        return 0
    print("\n".join(comparison_lines(comparison)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .evaluate.report import run_report
    from .evaluate.timing import time_line

    report = run_report(args.run)
    if args.json:
        print(json.dumps(report))
        return 0
    best = report["best"]
    rows = [
        ("run", report["run"]),
        ("epochs", f"{report['epochs_done']} of {report['epochs_total']} (step {report['steps']})"),
        ("time", time_line(report["seconds_spent"], report["seconds_left"],
                           report["epochs_done"] >= report["epochs_total"])),
        ("evaluations", f"{report['evaluations']} (selecting by {report['select_by']}, lower is better)"),
        ("best epoch", f"{best['epoch']}: {best['metric']} {best['value']:.4g}"
                       + (f", chosen by the {best['reason']}" if best.get("reason") else "")
                       + " (best/; use with --best)" if best else "none yet"),
    ]
    latest = report["latest"]
    if latest:
        for direction in DIRECTIONS:
            rows.append((f"latest {direction}", f"epoch {report['latest_epoch']}: " + _latest_line(latest, direction)
                         if direction in measured_directions(latest) else "not trained (--one-way: A->B only)"))
    rows.append(("skipped steps", f"{report['skipped_steps']} (NaN/inf losses)"))
    if report["kept_epochs"]:
        rows.append(("kept epochs", ", ".join(map(str, report["kept_epochs"])) + " (use with translate --epoch K)"))
    rows.append(("warnings", str(len(report["warnings"])) if report["warnings"] else "none"))
    for name, value in rows:
        print(f"{name:<15}{value}")
    for w in report["warnings"]:
        print(f"  - epoch {w.get('epoch', '?')}: {w.get('message', '')}")
    print(f"{'plots':<15}" + (", ".join(report["plots"]) if report["plots"] else "none yet (no metrics.csv rows)"))
    return 0


_REPORTED = ("swd", "cycle_l1", "diversity", "d_auc")  # the held-out metrics `report` shows for the latest epoch


def _latest_line(latest: dict[str, float], direction: str) -> str:
    """'SWD 1.23 (input unchanged 4.56), cycle L1 0.0123, ...': labels and formats from the metrics table."""
    def shown(key: str) -> str:
        return f"{latest.get(f'val_{key}_{direction}', float('nan')):{BY_KEY[key].fmt}}"

    parts = []
    for key in (k for k in _REPORTED if f"val_{k}_{direction}" in latest):  # a one-way run has no cycle L1
        metric = BY_KEY[key]
        baseline = f" (input unchanged {shown(metric.baseline)})" if metric.baseline else ""
        parts.append(f"{metric.label} {shown(key)}{baseline}")
    return ", ".join(parts)


def cmd_make_dataset(args: argparse.Namespace) -> int:
    # Each kind's defaults: shapes is the CPU demo (64 px), photos the real-photo benchmark (128 px).
    defaults = {"shapes": ("datasets/shapes", 400, 64), "photos": ("datasets/photos", 300, 128)}[args.kind]
    out, n_train, size = (given if given is not None else default
                          for given, default in zip((args.out, args.n_train, args.size), defaults))
    options = dict(n_train=n_train, n_test=args.n_test, size=size, seed=args.seed, overwrite=args.overwrite)
    if args.kind == "photos":
        from .data.photos import make_photos_dataset as make
        options["style"] = args.style or "painterly"
    else:
        if args.style:
            raise ConfigError("--style is for --kind photos (the shapes dataset has one pair of styles)")
        from .data.synthetic import make_dataset as make
    written = make(out, **options)
    print(f"wrote the {args.kind} dataset to {written} (trainA, trainB, testA, testB, gt/AtoB, gt/BtoA)")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    from .app.server import serve
    from .app.settings import settings_from_args

    serve(settings_from_args(args))
    return 0


class _Parser(argparse.ArgumentParser):
    """A command-line mistake is one ``error:`` line and status 1, like every other user mistake
    (argparse's own way is a usage block and status 2). Subcommands' parsers are of this class too."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = " ".join(message.split())
        self.exit(1, f"error: {message} (see `{self.prog} --help`)\n")


def _pixel_count(text: str) -> int:
    """``--max-pixels``: a pixel count (4194304) or a size (2048x2048)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x×*]\s*(\d+)\s*)?", text, re.IGNORECASE)
    value = int(match.group(1)) * int(match.group(2) or 1) if match else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a pixel count (4194304) or WxH (2048x2048), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cyclegan", description="Unpaired image-to-image translation (CycleGAN).")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    # The global flags again on every subcommand, so `cyclegan translate ... -q` works too; SUPPRESS
    # keeps a subcommand from resetting a flag given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and errors")
    sub = _Subcommands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), common)

    p = sub.add_parser("train", help="train a run on two image folders, or resume one",
                       description="Train a CycleGAN. Example: cyclegan train --data datasets/shapes "
                                   "--run checkpoints/shapes --preset tiny")
    p.add_argument("--data", help="dataset folder holding trainA/ and trainB/ (and optionally testA/, testB/)")
    p.add_argument("--run", "--run-dir", dest="run",
                   help="new run folder to create, e.g. checkpoints/NAME (under torchrun, spell it --run-dir: "
                        "torchrun reads --run as its own --run-path)")
    p.add_argument("--resume", metavar="RUN", help="continue this run folder exactly where it stopped")
    p.add_argument("--preset", choices=PRESETS, help="starting configuration (default: paper, the published settings)")
    p.add_argument("--model", choices=FAMILIES,
                   help="what to train (default cyclegan): cut or fastcut train CUT (Park et al., 2020) each way, "
                        "with its published defaults on top of the preset's sizes and schedule (docs/cut.md)")
    p.add_argument("--channels", type=int, metavar="N",
                   help="both domains' image channels (shorthand for --channels-a N --channels-b N)")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("translate", help="translate an image, a video or a folder of them with a trained run",
                       description="Example: cyclegan translate --run checkpoints/shapes --direction AtoB "
                                   "--input datasets/shapes/testA --output outputs/shapes_AtoB. Sizes are kept; "
                                   "existing outputs are skipped; unreadable files are reported, not fatal (exit "
                                   "status 2 when some files failed, 1 when nothing could be translated or with "
                                   "--strict).")
    p.add_argument("--run", required=True, help="run folder made by `cyclegan train` or `cyclegan import-official`")
    p.add_argument("--direction", required=True, choices=("AtoB", "BtoA", "both"),
                   help="both: into OUTPUT/AtoB and OUTPUT/BtoA")
    p.add_argument("--input", required=True, help="one image or video, or a folder of them (searched recursively; "
                                                  "videos: .mp4 .mov .mkv .webm .avi .m4v, with cyclegan[video])")
    p.add_argument("--output", required=True, help="folder for the translations (subfolders mirrored; videos become "
                                                   "NAME.mp4), or for one video the output file, e.g. out.mp4")
    p.add_argument("--stats", default="shared", choices=("shared", "per-frame"),
                   help="videos: normalise every frame with instance-norm statistics shared over the clip (default; "
                        "no flicker), or each frame with its own")
    p.add_argument("--best", action="store_true", help="use the best epoch's generators instead of the latest")
    p.add_argument("--epoch", type=int, metavar="K", help="use epoch K's generators (kept with --keep-epochs)")
    p.add_argument("--size", type=int, help="resize so the shorter side is SIZE pixels (default: keep the size)")
    p.add_argument("--format", default="png", choices=("png", "jpg", "webp"),
                   help="output format (default png; jpg cannot keep transparency)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist (default: skip)")
    p.add_argument("--cycle", action="store_true", help="also write the reconstruction NAME.cycle.<format> "
                                                        "(translated and back)")
    p.add_argument("--batch-size", type=int, default=4, help="images of equal size translated together (default 4)")
    p.add_argument("--workers", type=int, help="threads decoding and encoding images (default: up to 4)")
    p.add_argument("--max-pixels", type=_pixel_count, metavar="N|WxH",
                   help="images with more pixels are translated in tiles: a pixel count or WxH "
                        "(default 4194304, i.e. 2048x2048)")
    p.add_argument("--tile-size", type=int, help="tile side for large images (default 1024)")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast: faster on CUDA and on a CPU with native bf16, slower on one without "
                        "(docs/cpu.md); slightly different output")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 (not 2) if any file could not be translated")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("import-official", help="turn an official CycleGAN generator .pth into a run folder",
                       description="Example: cyclegan import-official --pth horse2zebra.pth --out "
                                   "checkpoints/horse2zebra --direction AtoB. One file is one direction; import "
                                   "latest_net_G_B.pth with --direction BtoA into the same folder for the other.")
    p.add_argument("--pth", required=True, help="generator file saved by junyanz/pytorch-CycleGAN-and-pix2pix")
    p.add_argument("--out", required=True, help="run folder to create or add to, e.g. checkpoints/NAME")
    p.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"),
                   help="which way this generator translates (official G_A: AtoB, G_B: BtoA; default AtoB)")
    p.add_argument("--overwrite", action="store_true", help="replace that direction's generator if present")
    p.set_defaults(func=cmd_import_official)

    p = sub.add_parser("download", help="download a standard dataset or a published pretrained model",
                       description="Examples: cyclegan download list; cyclegan download dataset horse2zebra; "
                                   "cyclegan download model horse2zebra (a run folder with both directions). "
                                   "Interrupted downloads resume; without a network, download the file by hand "
                                   "and pass --from-file.")
    what = _Subcommands(p.add_subparsers(dest="what", required=True, metavar="WHAT"), common)
    mirror = argparse.ArgumentParser(add_help=False)
    mirror.add_argument("--base-url", metavar="URL",
                        help="server or mirror holding datasets/NAME.zip and pretrained_models/NAME.pth (default: "
                             "$CYCLEGAN_DOWNLOAD_URL, else the official server)")
    q = what.add_parser("list", help="the datasets and models there are", parents=[mirror])
    q.set_defaults(func=cmd_download_list)
    q = what.add_parser("dataset", help="a standard CycleGAN dataset into OUT/NAME", parents=[mirror],
                        description="Example: cyclegan download dataset horse2zebra (-> datasets/horse2zebra)")
    q.add_argument("name", metavar="NAME", help="e.g. horse2zebra (cyclegan download list shows them all)")
    q.add_argument("--out", default="datasets", help="folder to put the dataset in (default: datasets)")
    q.add_argument("--from-file", metavar="ZIP", help="install this zip, downloaded by hand, instead of downloading")
    q.add_argument("--overwrite", action="store_true", help="replace the dataset folder if it exists")
    q.set_defaults(func=cmd_download_dataset)
    q = what.add_parser("model", help="a published pretrained generator (with its reverse, where published) as a "
                                      "run folder", parents=[mirror],
                        description="Example: cyclegan download model horse2zebra (-> checkpoints/horse2zebra, "
                                    "horse2zebra as AtoB and zebra2horse as BtoA)")
    q.add_argument("name", metavar="NAME", help="e.g. horse2zebra or style_monet (cyclegan download list)")
    q.add_argument("--out", help="run folder to create (default: checkpoints/NAME)")
    q.add_argument("--from-file", metavar="PTH",
                   help="import this .pth, downloaded by hand, instead of downloading (the reverse direction's "
                        "file, e.g. zebra2horse.pth, is used too if it is beside it)")
    q.add_argument("--one-direction", action="store_true", help="only NAME, not the reverse direction's generator")
    q.add_argument("--overwrite", action="store_true", help="replace the run folder if it exists")
    q.set_defaults(func=cmd_download_model)

    p = sub.add_parser("export", help="export a generator as ONNX or TorchScript",
                       description="Example: cyclegan export --run checkpoints/shapes --direction AtoB --format onnx "
                                   "--out shapes_AtoB.onnx. Input 'image': float32 (N, C, H, W) in [-1, 1], H and W "
                                   "any size >= 8 (dynamic); output 'translated': the same shape.")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--direction", required=True, choices=("AtoB", "BtoA"))
    p.add_argument("--format", choices=("onnx", "torchscript"), help="default: from the --out suffix (.onnx, .pt)")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--best", action="store_true", help="export the best epoch's generator")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("evaluate", help="score a run on held-out images (SWD, cycle, diversity, D; ground truth "
                                        "and FID/KID when available)",
                       description="Example: cyclegan evaluate --run checkpoints/shapes --data datasets/shapes. "
                                   "Images are scored at the run's crop size.")
    p.add_argument("--run", required=True, help="run folder made by `cyclegan train`")
    p.add_argument("--data", help="dataset folder with testA/ and testB/ (and gt/AtoB/, gt/BtoA/ for ground-truth "
                                  "scores); default: the run's own held-out images")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--best", action="store_true", help="use the best epoch's generators")
    p.add_argument("--epoch", type=int, metavar="K", help="use epoch K's generators (kept with --keep-epochs)")
    p.add_argument("--fid", action="store_true", help="also FID and KID (needs cyclegan[metrics]; downloads "
                                                     "torch-fidelity's Inception weights unless --inception-weights)")
    p.add_argument("--inception-weights", metavar="PATH", help="local Inception weights for FID/KID (implies --fid)")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="summarise a run: epochs, best epoch, warnings; redraw its plots",
                       description="Example: cyclegan report --run checkpoints/shapes (plots go to RUN/plots/)")
    p.add_argument("--run", required=True, help="run folder made by `cyclegan train`")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="which of several runs to use: held-out tables side by side, and a pick",
                       description="Example: cyclegan compare checkpoints/mine_cyclegan checkpoints/mine_cut. Each "
                                   "run is shown by the epoch it chose (best/); the pick follows best/'s rule: a "
                                   "run that translates beats one worse than its input, which beats one translating "
                                   "nothing, then the lower held-out score; runs closer than their sampling noise "
                                   "are a tie.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders trained on the same folders and crop size")
    p.add_argument("--select-by", default="swd", choices=[r for r in SELECTABLE if r != "last"],
                   help="held-out score to pick by (default swd, as best/)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("make-dataset", help="write an embedded dataset with ground truth (shapes or photos)",
                       description="Example: cyclegan make-dataset --out datasets/shapes. "
                                   "--kind photos (the real-photo benchmark) needs the bench extra: "
                                   ".venv/bin/pip install -e '.[bench]'")
    p.add_argument("--kind", choices=("shapes", "photos"), default="shapes",
                   help="shapes: drawn scenes in two styles, 64 px (the demo); photos: crops of scikit-image's "
                        "sample photos and a painterly style of them, 128 px (the quality benchmark)")
    p.add_argument("--style", default=None,
                   help="domain B's style for --kind photos: painterly (structural, the default), grade (a global "
                        "colour grade), rose (oranges turn rose, other hues kept), grain (softening, vignette "
                        "and film grain); datasets/README.md describes each")
    p.add_argument("--out", default=None, help="folder to create (default: datasets/KIND)")
    p.add_argument("--n-train", type=int, default=None, help="training images per domain (default 400 shapes, "
                                                             "300 photos)")
    p.add_argument("--n-test", type=int, default=50, help="test images per domain, with ground truth (default 50)")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default 64 shapes, 128 photos)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the folder if it exists")
    p.set_defaults(func=cmd_make_dataset)

    p = sub.add_parser("app", help="start the web app (translate, browse runs, train) on 127.0.0.1",
                       description="Example: cyclegan app --checkpoints checkpoints --datasets datasets --port 7860")
    add_app_arguments(p)
    p.set_defaults(func=cmd_app)
    return parser


class _Subcommands:
    """``add_parser`` that gives every subcommand the global flags as well."""

    def __init__(self, subparsers: Any, common: argparse.ArgumentParser) -> None:
        self.subparsers, self.common = subparsers, common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return self.subparsers.add_parser(name, parents=[self.common, *kwargs.pop("parents", ())], **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Under torchrun only rank 0 reports progress; the other ranks still print warnings and errors.
    quiet = args.quiet or os.environ.get("RANK", "0") != "0"
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s: %(message)s")
    logging.getLogger("cyclegan").setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        return args.func(args)
    except TrainingInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return exc.exit_status  # 130 for Ctrl-C, 143 for SIGTERM, as a shell reports them
    except CycleGANError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk where no writer of ours named the file (a library's own writes)
        full = DiskFullError.of(exc, exc.filename or "a file")
        if full is None:
            raise
        print(f"error: {full}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
