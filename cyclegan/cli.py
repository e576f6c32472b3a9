"""The ``cyclegan`` command: train, translate, evaluate, report, make-dataset, app, import-official, export.

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
import sys
from pathlib import Path
from typing import Any, Sequence

from .config import PRESETS, Config, ModelConfig, TrainConfig, preset
from .errors import ConfigError, CycleGANError
from .evaluate.metrics import BY_KEY, SELECTABLE, table_rows
from .models.generators import REGISTRY as GENERATORS

log = logging.getLogger("cyclegan")
FAILURES_FILE = "translate_failures.txt"  # written to the output folder: one "path<TAB>reason" line per failed input

_DATA_FIELDS = ("domain_a", "domain_b", "test_a", "test_b")
_FIELD_HELP = {
    "generator": f"generator architecture: {', '.join(GENERATORS)} (models/generators.py)",
    "channels_a": "domain A's image channels: 3 (RGB) or 1 (grayscale, e.g. sketches or thermal)",
    "channels_b": "domain B's image channels: 3 (RGB) or 1 (grayscale)",
    "domain_a": "folder of domain A training images (searched recursively)",
    "domain_b": "folder of domain B training images",
    "test_a": "held-out domain A images (used for sample grids)",
    "test_b": "held-out domain B images",
    "n_blocks": "residual blocks in each generator (9 published, 6 for 128 px)",
    "n_layers_d": "stride-2 layers of the PatchGAN (3 gives 70x70 patches)",
    "upsample": "generator upsampling: transpose (published) or resize (no checkerboard)",
    "epochs": "epochs at the initial learning rate",
    "epochs_decay": "epochs over which the learning rate decays linearly to zero",
    "gan_loss": "adversarial loss: lsgan (published), bce or hinge",
    "lambda_identity": "identity loss weight, relative to lambda_cycle",
    "pool_size": "generated images kept for the discriminators (0: none)",
    "device": "auto (CUDA if present), cpu, cuda or cuda:N",
    "amp": "bf16 autocast (CUDA only)",
    "channels_last": "channels_last memory format (CUDA only)",
    "compile": "torch.compile the networks (falls back to eager, with a warning, where it fails)",
    "cache_images": "decode every image once into a uint8 cache (on the GPU, else pinned memory); "
                    "crops and flips then run on the device",
    "num_workers": "processes decoding training images (0: in the training process)",
    "log_every": "steps between rows of metrics.csv",
    "strict": "stop on an unreadable image instead of skipping it",
    "eval_every": "epochs between held-out evaluations (metrics.csv, best/, warnings, plots/); 0: off",
    "val_fraction": "share of each training folder held out when it has no test folder (at most 200 images)",
    "select_by": f"held-out metric that picks best/, averaged over both directions: {', '.join(SELECTABLE)}",
    "patience": "stop after this many evaluations without improvement (0: never)",
    "fid": "also FID and KID at each evaluation (slow on a CPU; needs cyclegan[metrics] and Inception weights)",
    "inception_weights": "local Inception weights file for FID/KID (default: torch-fidelity's own download)",
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field; defaults are SUPPRESS so only flags the user typed are seen."""
    for section, cls in (("model", ModelConfig), ("train", TrainConfig)):
        group = parser.add_argument_group(f"{section} config (overrides the preset)")
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            help_text = _FIELD_HELP.get(f.name, "") + f" (paper: {f.default!r})"
            if f.type in ("bool", bool):
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
        if args.run or args.preset:
            raise ConfigError("--resume takes the run folder and its saved preset; drop --run and --preset")
        config = merge_resume_config(load_config(args.resume), values)
        run = train(config, args.resume, resume=True)
    else:
        if not args.run:
            raise ConfigError("name the run folder with --run checkpoints/NAME (or continue one with --resume)")
        if not values.get("domain_a") or not values.get("domain_b"):
            raise ConfigError("say what to train on: --data DIR (with trainA/ and trainB/) or --domain-a DIR "
                              "--domain-b DIR")
        config = _apply(preset(args.preset or "paper"), values)
        run = train(config, args.run)
    log.info("Training finished: %s", run)
    log.info("Translate with: cyclegan translate --run %s --direction AtoB --input DIR --output DIR", run)
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from .runfolder import atomic_write_bytes, read_best
    from .translate.translator import DEFAULT_MAX_PIXELS, Translator

    translator = Translator.from_run(args.run, device=args.device, best=args.best, bf16=args.bf16,
                                     max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS, tile_size=args.tile_size)
    if args.best:
        meta = read_best(args.run)
        if meta:
            log.info("Using best/ from epoch %s (%s %.4g)", meta["epoch"], meta["metric"], meta["value"])
    summary = translator.translate_folder(
        args.input, args.output, args.direction, overwrite=args.overwrite, size=args.size,
        batch_size=args.batch_size, image_format=args.format, cycle=args.cycle, workers=args.workers,
        progress=not args.quiet)
    print(summary.line(args.output))
    if summary.failed:
        report = Path(args.output) / FAILURES_FILE
        atomic_write_bytes(report, "".join(f"{path}\t{reason}\n" for path, reason in summary.failed).encode())
        print(f"{len(summary.failed)} file(s) not translated; the reason for each is in {report}", file=sys.stderr)
    # a re-run whose good images all exist already, beside a bad file, has nothing left to do: not an error
    nothing_translated = summary.translated == 0 and summary.skipped == 0 and bool(summary.failed)
    return 1 if nothing_translated or (args.strict and summary.failed) else 0


def cmd_import_official(args: argparse.Namespace) -> int:
    from .translate.official import import_official

    target = import_official(args.pth, args.out, args.direction, overwrite=args.overwrite)
    print(f"imported {args.pth} -> {target}")
    print(f"Translate with: cyclegan translate --run {args.out} --direction {args.direction} --input DIR --output DIR")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .translate.export import export_generator

    out = export_generator(args.run, args.direction, args.out, args.format, best=args.best)
    print(f"exported the {args.direction} generator of {args.run} -> {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate.heldout import evaluate_run
    from .translate.translator import Translator

    translator = Translator.from_run(args.run, device=args.device, best=args.best)
    results, source = evaluate_run(translator, args.run, args.data, best=args.best, fid=args.fid,
                                   inception_weights=args.inception_weights or "")
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"held-out images: {source}")
    _print_table(results, "heldout")
    print("SWD: sliced Wasserstein distance of translated to real target patches (x1e3, lower is better); SWD input: "
          "the same for the input unchanged, the baseline to beat. diversity: spread of the outputs over that of "
          "the inputs (near 0: collapse). D AUC: how well the discriminator tells real from translated (0.5: not at all).")
    if any("fid" in r for r in results.values()):
        _print_table(results, "inception")
    if any("l1" in r for r in results.values()):
        _print_table({d: r for d, r in results.items() if "l1" in r}, "ground_truth")
        print("Against ground truth. L1: mean absolute error on a 0-1 scale (lower is better); identity: the input "
              "unchanged, the baseline to beat.")
    return 0


def _print_table(results: dict[str, dict[str, float]], group: str) -> None:
    """One table of ``evaluate``: a row per direction, a column per metric of ``group`` in the metrics table."""
    columns = table_rows(group)
    print(f"{'direction':<10}" + "".join(f"{m.label:>{m.width}}" for m in columns))
    for direction, r in results.items():
        print(f"{direction:<10}" + "".join(m.cell(r.get(m.key)) for m in columns))


def cmd_report(args: argparse.Namespace) -> int:
    from .evaluate.report import run_report

    report = run_report(args.run)
    if args.json:
        print(json.dumps(report))
        return 0
    best = report["best"]
    rows = [
        ("run", report["run"]),
        ("epochs", f"{report['epochs_done']} of {report['epochs_total']} (step {report['steps']})"),
        ("evaluations", f"{report['evaluations']} (selecting by {report['select_by']}, lower is better)"),
        ("best epoch", f"{best['epoch']}: {best['metric']} {best['value']:.4g} (best/G_AB.safetensors, "
                       "best/G_BA.safetensors; use with --best)" if best else "none yet"),
    ]
    latest = report["latest"]
    if latest:
        for direction in ("AtoB", "BtoA"):
            rows.append((f"latest {direction}", f"epoch {report['latest_epoch']}: "
                         + _latest_line(latest, direction)))
    rows.append(("skipped steps", f"{report['skipped_steps']} (NaN/inf losses)"))
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
    for key in _REPORTED:
        metric = BY_KEY[key]
        baseline = f" (input unchanged {shown(metric.baseline)})" if metric.baseline else ""
        parts.append(f"{metric.label} {shown(key)}{baseline}")
    return ", ".join(parts)


def cmd_make_dataset(args: argparse.Namespace) -> int:
    from .data.synthetic import make_dataset

    out = make_dataset(args.out, n_train=args.n_train, n_test=args.n_test, size=args.size, seed=args.seed,
                       overwrite=args.overwrite)
    print(f"wrote the synthetic shapes dataset to {out} (trainA, trainB, testA, testB, gt/AtoB, gt/BtoA)")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    from .app.server import serve, settings_from_args

    serve(settings_from_args(args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cyclegan", description="Unpaired image-to-image translation (CycleGAN).")
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
    p.add_argument("--channels", type=int, metavar="N",
                   help="both domains' image channels (shorthand for --channels-a N --channels-b N)")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("translate", help="translate an image or a folder of images with a trained run",
                       description="Example: cyclegan translate --run checkpoints/shapes --direction AtoB "
                                   "--input datasets/shapes/testA --output outputs/shapes_AtoB. Sizes are kept; "
                                   "existing outputs are skipped; unreadable files are reported, not fatal (exit "
                                   "status 1 only if nothing could be translated, or with --strict).")
    p.add_argument("--run", required=True, help="run folder made by `cyclegan train` or `cyclegan import-official`")
    p.add_argument("--direction", required=True, choices=("AtoB", "BtoA", "both"),
                   help="both: into OUTPUT/AtoB and OUTPUT/BtoA")
    p.add_argument("--input", required=True, help="one image, or a folder of images (searched recursively)")
    p.add_argument("--output", required=True, help="folder for the translations (subfolders mirrored)")
    p.add_argument("--best", action="store_true", help="use the best epoch's generators instead of the latest")
    p.add_argument("--size", type=int, help="resize so the shorter side is SIZE pixels (default: keep the size)")
    p.add_argument("--format", default="png", choices=("png", "jpg", "webp"),
                   help="output format (default png; jpg cannot keep transparency)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist (default: skip)")
    p.add_argument("--cycle", action="store_true", help="also write the reconstruction NAME.cycle.<format> "
                                                        "(translated and back)")
    p.add_argument("--batch-size", type=int, default=4, help="images of equal size translated together (default 4)")
    p.add_argument("--workers", type=int, help="threads decoding and encoding images (default: up to 4)")
    p.add_argument("--max-pixels", type=int, help="images with more pixels are translated in tiles "
                                                  "(default 4194304, i.e. 2048x2048)")
    p.add_argument("--tile-size", type=int, help="tile side for large images (default 1024)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast: faster on CUDA, slightly different output")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any file could not be translated")
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

    p = sub.add_parser("make-dataset", help="write the synthetic two-style shapes dataset",
                       description="Example: cyclegan make-dataset --out datasets/shapes")
    p.add_argument("--out", default="datasets/shapes", help="folder to create (default: datasets/shapes)")
    p.add_argument("--n-train", type=int, default=400, help="training images per domain (default 400)")
    p.add_argument("--n-test", type=int, default=50, help="test images per domain, with ground truth (default 50)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the folder if it exists")
    p.set_defaults(func=cmd_make_dataset)

    from .app.server import add_app_arguments

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
        return self.subparsers.add_parser(name, parents=[self.common], **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Under torchrun only rank 0 reports progress; the other ranks still print warnings and errors.
    quiet = args.quiet or os.environ.get("RANK", "0") != "0"
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s: %(message)s")
    logging.getLogger("cyclegan").setLevel(logging.WARNING if quiet else logging.INFO)
    from .train.loop import TrainingInterrupted

    try:
        return args.func(args)
    except TrainingInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    except CycleGANError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
