"""Images per second of `cyclegan translate`, batched against one at a time, and the memory of tiling.

Measures the whole folder pipeline (JPEG decoding in worker threads, the network, PNG encoding and
atomic writes), for a ResNet generator with random weights (speed does not depend on training):

* images/s at 256x256 and 1024x768, batch size 1 against ``--batch-size``, side by side;
* one 6000x4000 photo, tiled: seconds and peak memory (the process's peak RSS, reset once the model is
  loaded, from Linux /proc; the CUDA allocator's peak on a GPU), in a process of its own.

Runs on the CPU, and on CUDA too when present. Prints the machine first.

    python benchmarks/translate_speed.py                       # ngf 64, 9 blocks (the published generator)
    python benchmarks/translate_speed.py --large-ngf 16        # a cheaper network for the 6000x4000 case
    python benchmarks/translate_speed.py --threads 1           # steadier on a CPU other work is using
    python benchmarks/translate_speed.py --precision --threads 1  # fp32 against bf16 at 256 px on the CPU

``--precision``: images/s of the same folder of 256x256 JPEGs in fp32 and under bf16 autocast (forced
where the CPU has no native bf16: docs/cpu.md), batch 1, and how far the bf16 outputs are from the
fp32 ones: the mean absolute difference in 8-bit levels and the PSNR between the two sets of PNGs.
``--run RUN`` uses a trained run's generators instead of random ones (their outputs are what a user sees).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def machine() -> str:
    import torch

    from cyclegan.devices import cpu_name

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return f"{cpu_name()}; {torch.get_num_threads()} torch threads; {gpu}; torch {torch.__version__}"


def random_run(folder: Path, ngf: int, n_blocks: int, family: str = "cyclegan") -> Path:
    """A run folder with untrained generators of the given size (CUT's generator for family cut)."""
    import torch

    from cyclegan import runfolder as ckpt
    from cyclegan.config import Config, ModelConfig, with_family
    from cyclegan.models.generators import build_generator

    config = with_family(Config(model=ModelConfig(ngf=ngf, n_blocks=n_blocks)), family)
    torch.manual_seed(0)
    for name in ckpt.GENERATORS:
        ckpt.save_weights(build_generator(config.model), ckpt.generator_path(folder, name), step=0)
    ckpt.write_config(folder, config)
    return folder


def photos(folder: Path, count: int, width: int, height: int) -> Path:
    """``count`` different JPEGs of one size, textured like photos (so decoding and encoding cost what they do)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        rgb = np.stack([128 + 90 * np.sin(xx / (9 + i)), 128 + 90 * np.cos(yy / 7), (xx + yy + 40 * i) % 256], -1)
        rgb += rng.normal(0, 10, rgb.shape)
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(folder / f"photo{i:03d}.jpg", quality=92)
    return folder


def folder_rate(run: Path, images: Path, out: Path, device: str, batch_size: int, bf16: bool = False) -> float:
    """Images/s of translate_folder over ``images`` (after one warm-up image), in bf16 autocast with ``bf16``."""
    import torch

    from cyclegan.translate.translator import Translator

    translator = Translator.from_run(run, device=device, bf16=bf16)
    first = next(images.iterdir())
    translator(first, "AtoB")  # warm-up: kernels chosen, memory allocated
    summary = translator.translate_folder(images, out, "AtoB", batch_size=batch_size)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    assert summary.translated == len(list(images.iterdir())) and not summary.failed
    return summary.translated / summary.seconds


def output_difference(first: Path, second: Path) -> tuple[float, float]:
    """Mean absolute difference (8-bit levels) and PSNR (dB) between two folders of same-named images."""
    names = sorted(p.name for p in first.iterdir())
    assert names and names == sorted(p.name for p in second.iterdir()), "the two folders hold different images"
    a = np.stack([np.asarray(Image.open(first / n).convert("RGB"), dtype=np.float64) for n in names])
    b = np.stack([np.asarray(Image.open(second / n).convert("RGB"), dtype=np.float64) for n in names])
    mse = float(np.mean((a - b) ** 2))
    return float(np.mean(np.abs(a - b))), (float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse))


def precision_table(args: argparse.Namespace) -> None:
    """fp32 against bf16 autocast on the CPU: images/s at 256x256, batch 1, and the outputs' difference."""
    from cyclegan.devices import cpu_has_native_bf16

    native = "has native bf16" if cpu_has_native_bf16() else "has no native bf16: bf16 is emulated (forced)"
    print(f"CPU {native}; 256x256, batch 1, {args.images} images")
    print(f"{'precision':>10} {'img/s':>8} {'vs fp32':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = Path(args.run) if args.run else random_run(root / "run", args.ngf, args.n_blocks)
        images = photos(root / "in256", args.images, 256, 256)
        rates = {}
        for label, bf16 in (("fp32", False), ("bf16", True)):
            rates[label] = folder_rate(run, images, root / f"out_{label}", "cpu", 1, bf16=bf16)
            print(f"{label:>10} {rates[label]:>8.3f} {rates[label] / rates['fp32']:>7.2f}x", flush=True)
        mad, psnr = output_difference(root / "out_fp32", root / "out_bf16")
    print(f"bf16 against fp32 outputs: mean absolute difference {mad:.2f} levels (of 255), PSNR {psnr:.1f} dB")


def big_photo(folder: Path) -> Path:
    """A 6000x4000 JPEG (made here, in the parent, so its making does not count against the child's peak)."""
    size = (6000, 4000)
    bands = [Image.linear_gradient("L").resize(size), Image.radial_gradient("L").resize(size),
             Image.linear_gradient("L").rotate(90).resize(size)]
    folder.mkdir(parents=True)
    Image.merge("RGB", bands).save(folder / "big.jpg", quality=92)
    return folder


def large_child(spec: dict) -> dict:
    """In a fresh process: translate the 6000x4000 JPEG, tiled; seconds and peak memory."""
    import torch

    from cyclegan.translate.translator import Translator

    translator = Translator.from_run(spec["run"], device=spec["device"])
    if spec["device"].startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    # Reset the peak-RSS mark to the current size (ru_maxrss would include the parent's, inherited at fork).
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    summary = translator.translate_folder(spec["input"], spec["output"], "AtoB")
    peak = _status_kb("VmHWM")
    cuda_mb = torch.cuda.max_memory_allocated() / 2**20 if spec["device"].startswith("cuda") else None
    return {"seconds": summary.seconds, "translated": summary.translated, "rss_before_mb": before / 1024,
            "rss_peak_mb": peak / 1024, "cuda_peak_mb": cuda_mb, "tile": translator.tile_size,
            "max_pixels": translator.max_pixels}


def _status_kb(key: str) -> int:
    """A memory figure of this process from /proc/self/status (Linux), in KiB."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(key + ":"))
    return int(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--n-blocks", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--images", type=int, default=8, help="images per size at 256x256 (4 at 1024x768)")
    parser.add_argument("--large-ngf", type=int, help="ngf for the 6000x4000 case (default: --ngf)")
    parser.add_argument("--skip-speed", action="store_true", help="only the 6000x4000 case")
    parser.add_argument("--skip-large", action="store_true", help="only the images/s table")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--precision", action="store_true",
                        help="only fp32 against bf16 on the CPU at 256 px: speed and the outputs' difference")
    parser.add_argument("--run", help="with --precision: a trained run folder (default: random generators)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(large_child(json.loads(args.child))))
        return

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"machine: {machine()}")
    generator = f"the generators of {args.run}" if args.run and args.precision else \
        f"ResNet, ngf {args.ngf}, {args.n_blocks} blocks (random weights)"
    print(f"generator: {generator}; whole pipeline: JPEG decode in threads -> network -> PNG encode -> atomic write")
    if args.precision:
        precision_table(args)
        return
    if not args.skip_speed:
        speed_table(args, devices)
    if not args.skip_large:
        large_case(args, devices)


def speed_table(args: argparse.Namespace, devices: list[str]) -> None:
    print(f"{'device':>7} {'size':>10} {'images':>7} {'batch 1 img/s':>14} {f'batch {args.batch_size} img/s':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = random_run(root / "run", args.ngf, args.n_blocks)
        for width, height, count in ((256, 256, args.images), (1024, 768, max(args.batch_size, args.images // 2))):
            images = photos(root / f"in{width}", count, width, height)
            for device in devices:
                single = folder_rate(run, images, root / f"out_{device}_{width}_1", device, 1)
                batched = folder_rate(run, images, root / f"out_{device}_{width}_b", device, args.batch_size)
                print(f"{device:>7} {f'{width}x{height}':>10} {count:>7} {single:>14.3f} {batched:>14.3f}",
                      flush=True)


def large_case(args: argparse.Namespace, devices: list[str]) -> None:
    ngf = args.large_ngf or args.ngf
    print(f"6000x4000 JPEG, tiled (generator ngf {ngf}, {args.n_blocks} blocks):")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run, images = random_run(root / "run", ngf, args.n_blocks), big_photo(root / "big")
        for device in devices:
            spec = json.dumps({"run": str(run), "input": str(images), "output": str(root / f"out_{device}"),
                               "device": device})
            threads = ["--threads", str(args.threads)] if args.threads else []
            done = subprocess.run([sys.executable, __file__, "--child", spec, *threads], capture_output=True,
                                  text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            cuda = f", CUDA allocator peak {r['cuda_peak_mb']:.0f} MB" if r["cuda_peak_mb"] is not None else ""
            print(f"{device:>7}: {r['seconds']:.1f} s; max RSS {r['rss_peak_mb']:.0f} MB "
                  f"({r['rss_before_mb']:.0f} MB with the model loaded, before translating){cuda}; "
                  f"tile {r['tile']}, images over {r['max_pixels']} pixels tiled", flush=True)


if __name__ == "__main__":
    main()
