"""What one held-out evaluation costs, in seconds and as a fraction of a training epoch.

Two measurements, printed with the machine they ran on:

1. ``paper`` networks, ``--images`` held-out images per domain at ``--size`` px (default 200 at
   256, the issue's setting). The metric work (SWD, diversity, L1s on all images, the one-off SWD
   reference and baselines) is timed in full with pass-through generators; the network work of an
   evaluation (per image pair: 6 generator and 4 discriminator forwards) is timed on
   ``--net-images`` images and scaled to ``--images``, since running the full set through ResNet-9
   on a 2-core CPU would take about half an hour. A training step (batch 1) is timed the same way,
   and an epoch is ``--train-images`` steps (default 1,000, the size of the usual CycleGAN sets).

2. End to end: the ``tiny`` preset trained for ``--tiny-epochs`` epochs on a synthetic dataset of
   ``--tiny-train`` images per domain (64 px, 50 held out), reading each epoch's wall time and its
   evaluation time from the run's metrics.csv.

    python benchmarks/eval_cost.py
    python benchmarks/eval_cost.py --images 50 --size 128 --skip-tiny
"""

from __future__ import annotations

import argparse
import csv
import platform
import subprocess
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn


def machine() -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {torch.get_num_threads()} torch threads, {gpu}, torch {torch.__version__}"


def _timed(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def paper_cost(images: int, size: int, net_images: int, train_images: int, steps: int) -> None:
    from cyclegan.config import preset
    from cyclegan.evaluate.heldout import HeldOut, evaluate_heldout
    from cyclegan.images import to_uint8
    from cyclegan.train.pool import ImagePool
    from cyclegan.train.step import Models, Optimizers, train_step

    torch.manual_seed(0)
    config = preset("paper")
    config.train.crop_size = config.train.load_size = size
    models = Models.build(config, torch.device("cpu"))
    # Held-out stand-ins: smooth random images (the metrics' cost does not depend on content).
    coarse = torch.rand(2 * images, 3, size // 16, size // 16) * 2 - 1
    pictures = to_uint8(nn.functional.interpolate(coarse, size=(size, size), mode="bilinear"))
    held = HeldOut(pictures[:images], pictures[images:])

    first = _timed(lambda: evaluate_heldout(nn.Identity(), nn.Identity(), held))
    metrics = _timed(lambda: evaluate_heldout(nn.Identity(), nn.Identity(), held))
    x = torch.rand(net_images, 3, size, size) * 2 - 1
    with torch.inference_mode():
        g = _timed(lambda: models.G_AB(x)) / net_images
        d = _timed(lambda: models.D_A(x)) / net_images
    networks = images * (6 * g + 4 * d)

    opt = Optimizers.build(models, config)
    pools = (ImagePool(50, 1), ImagePool(50, 2))
    a, b = torch.rand(1, 3, size, size) * 2 - 1, torch.rand(1, 3, size, size) * 2 - 1
    train_step(models, opt, pools, a, b, config, nullcontext)  # warm-up
    step = _timed(lambda: train_step(models, opt, pools, a, b, config, nullcontext), steps)
    epoch = train_images * step
    evaluation = metrics + networks
    print(f"paper networks, {images} held-out images per domain at {size} px, CPU")
    print(f"  metrics (SWD, diversity, L1s), measured on all {images}: {metrics:.1f} s per evaluation "
          f"(+{first - metrics:.1f} s once per run for the SWD references and baselines)")
    print(f"  networks: G forward {g:.2f} s/image, D forward {d:.2f} s/image (timed on {net_images}); "
          f"6 G + 4 D per image pair -> {networks:.0f} s for {images}")
    print(f"  one evaluation: {evaluation:.0f} s ({evaluation / 60:.1f} min)")
    print(f"  training step (batch 1): {step:.1f} s (mean of {steps}); epoch of {train_images} images: "
          f"{epoch / 3600:.1f} h")
    print(f"  evaluation / epoch: {100 * evaluation / epoch:.1f}%")


def tiny_cost(train_images: int, epochs: int) -> None:
    from cyclegan.config import preset
    from cyclegan.data.synthetic import make_dataset
    from cyclegan.train.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "shapes", n_train=train_images, n_test=50, size=64)
        config = preset("tiny")
        t = config.train
        t.domain_a, t.domain_b, t.test_a, t.test_b = (str(data / n) for n in ("trainA", "trainB", "testA", "testB"))
        t.device, t.epochs, t.epochs_decay = "cpu", epochs, 0
        started = time.perf_counter()
        run = train(config, Path(tmp) / "run")
        total = time.perf_counter() - started
        rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("eval_seconds")]
    evals = [float(r["eval_seconds"]) for r in rows]
    print(f"tiny preset, {train_images} training + 50 held-out images per domain at 64 px, {epochs} epochs, CPU")
    print(f"  evaluations: {', '.join(f'{e:.2f}' for e in evals)} s; whole run {total:.1f} s")
    print(f"  evaluation / epoch (mean): {100 * sum(evals) / (total - sum(evals)):.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--net-images", type=int, default=4)
    parser.add_argument("--train-images", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tiny-train", type=int, default=400)
    parser.add_argument("--tiny-epochs", type=int, default=2)
    parser.add_argument("--skip-tiny", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    paper_cost(args.images, args.size, args.net_images, args.train_images, args.steps)
    if not args.skip_tiny:
        tiny_cost(args.tiny_train, args.tiny_epochs)


if __name__ == "__main__":
    main()
