"""Seconds per training iteration and peak memory of the `paper` networks, batch 1.

Each setting runs in its own subprocess so its peak memory (max RSS on the CPU, the CUDA
allocator's peak on a GPU) is its own. Prints one table row per setting and the machine.

    python benchmarks/train_speed.py                     # 128 and 256 px on the CPU (and CUDA if present)
    python benchmarks/train_speed.py --sizes 256 --steps 5
    python benchmarks/train_speed.py --compare            # fp32 eager vs the fast path, 256 px, batch 1
    python benchmarks/train_speed.py --compare --profile  # and the top ops of one fast-path step
    python benchmarks/train_speed.py --cpu                # the CPU's options side by side, 128 px, batch 1
    python benchmarks/train_speed.py --cpu --with-compile # and torch.compile (about 80 s of compiling)

``--compare`` puts side by side (a) the published setting, fp32 eager, batch 1, and (b) the fast
path (bf16 autocast, channels_last, torch.compile, fused Adam, cudnn benchmark; autocast and
channels_last only act on CUDA), plus translation images/s of one generator in each precision.

``--cpu`` puts side by side, on the CPU: the official code's step written out (fp32, eager, the
reference), and the project's ``train_step`` in fp32, under bf16 autocast (forced where the CPU has
no native bf16: docs/cpu.md) and, with ``--with-compile``, torch.compile'd. Every row says whether
bf16 and compile were used; the header names the CPU and whether it runs bf16 natively.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Iterator


def measure(size: int, device: str, amp: bool, steps: int, warmup: int, fast: bool = False,
            profile: bool = False, batch: int = 1, cache: bool = False, model: dict | None = None,
            trace: str | None = None, compiled: bool = True, official: bool = False, translate: bool = True,
            threads: int = 0) -> dict:
    """Run in a fresh process: time ``steps`` real training steps after ``warmup`` ones.

    ``fast`` is the trainer's fast path (``prepare_for_training`` with channels_last and compile,
    fused Adam on CUDA, cudnn benchmark); otherwise the plain modules are stepped eagerly.
    ``compiled=False`` leaves torch.compile out of the fast path (a dry run that cannot wait for it).
    ``cache``: batches are cut on the device from the on-device image cache of JPEGs (as
    ``cache_images`` trains), not one fixed random batch. ``model``: ModelConfig fields that replace
    the paper networks' (smaller networks for a dry run). ``profile``: also torch.profiler's view of
    one more step (its chrome trace written to ``trace`` when given).
    ``official``: the official code's step (``official_step``) instead of the project's.
    ``translate``: also time one generator translating; ``threads``: torch CPU threads (0: torch's choice).
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    from cyclegan.config import preset
    from cyclegan.devices import autocast_for
    from cyclegan.train.pool import ImagePool
    from cyclegan.train.step import Models, Optimizers, prepare_for_training, train_step

    config = preset("paper")
    for name, value in (model or {}).items():
        setattr(config.model, name, value)
    config.train.crop_size = config.train.load_size = size
    config.train.batch_size = batch  # what compile's trial step is shaped like, as in training
    config.train.channels_last = fast
    config.train.compile = fast and compiled
    dev = torch.device(device)
    torch.backends.cudnn.benchmark = fast
    torch.manual_seed(0)
    models = Models.build(config, dev)
    opt = Optimizers.build(models, config)
    if not fast:
        for optimizer in (opt.G, opt.D):  # the eager baseline: torch's default (unfused) Adam
            for group in optimizer.param_groups:
                group["fused"] = None
    pools = (ImagePool(50, 1), ImagePool(50, 2))
    batches = _cached_batches(size, batch, dev) if cache else None
    a = torch.rand(batch, 3, size, size, device=dev) * 2 - 1
    b = torch.rand(batch, 3, size, size, device=dev) * 2 - 1

    autocast = autocast_for(dev, amp)
    step = (lambda *args: official_step(*args[:-1])) if official else train_step  # official: fp32, no autocast

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def inputs() -> tuple:
        x, y = next(batches) if batches is not None else (a, b)
        if fast and dev.type == "cuda":  # as the training loop hands batches to the step
            x = x.contiguous(memory_format=torch.channels_last)
            y = y.contiguous(memory_format=torch.channels_last)
        return x, y

    compile_start = time.perf_counter()
    nets = prepare_for_training(models, config, dev, autocast) if fast else models
    for _ in range(warmup):
        step(nets, opt, pools, *inputs(), config, autocast)
    sync()
    warmup_s = time.perf_counter() - compile_start
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        losses = step(nets, opt, pools, *inputs(), config, autocast)
    sync()
    seconds = (time.perf_counter() - start) / steps
    finite = losses is None or all(bool(torch.isfinite(v).all()) for v in losses.values())  # official: None
    summary = {}
    if profile:
        prof, wall_s = profile_step(nets, opt, pools, *inputs(), config, autocast, dev)
        if trace:
            prof.export_chrome_trace(trace)
        summary = {"top_ops": prof.key_averages().table(sort_by=_self_time_key(dev), row_limit=12),
                   "kernels": top_kernels(prof, dev), "launch_share": launch_share(prof, wall_s, dev),
                   "profiled_s": wall_s}
    translate_ips = generator_rate(models.G_AB, a, autocast, dev, steps) if translate else float("nan")
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = peak_rss_mb()
    return {"size": size, "device": device, "amp": amp, "fast": fast, "official": official, "batch": batch, "cache": cache,
            "s_per_it": seconds, "images_per_s": batch / seconds, "peak_mb": peak_mb, "warmup_s": warmup_s,
            "translate_ips": translate_ips, "threads": torch.get_num_threads(), "finite": finite,
            "top_ops": "", **summary}


def _cached_batches(size: int, batch: int, dev) -> Iterator:
    """Endless training batches cut on ``dev`` from the on-device image cache (``cache_images``), of
    JPEGs loaded at 286/256 of the crop size as published. The cache is built here, before any timing."""
    import tempfile
    from pathlib import Path

    from cyclegan.data.dataset import ImageCache, UnpairedDataset
    from cyclegan.data.folders import find_images
    from translate_speed import photos

    load = round(size * 286 / 256)
    with tempfile.TemporaryDirectory() as tmp:  # decoded into the cache, then no longer needed
        paths = find_images(photos(Path(tmp), max(2 * batch, 8), load, load))
        dataset = UnpairedDataset(paths, paths, load, size, flip=True)
        cache = ImageCache.build(dataset, dev)
    if cache is None:
        raise RuntimeError(f"the image cache of {len(paths)} images at {load} px did not fit on {dev}")
    return _epochs(dataset, cache, batch, dev)


def _epochs(dataset, cache, batch: int, dev) -> Iterator:
    """The cache's batches, epoch after epoch, as the training loop cuts them."""
    from cyclegan.data.dataset import DeviceBatches, epoch_indices

    epoch = 0
    while True:
        dataset.set_epoch(epoch)
        yield from DeviceBatches(dataset, cache, epoch_indices(len(dataset) - len(dataset) % batch), batch, dev)
        epoch += 1


def peak_rss_mb() -> float:
    """This process's peak resident memory: /proc's VmHWM (which writing 5 to /proc/self/clear_refs
    resets between measurements), else getrusage's lifetime peak."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def profile_step(nets, opt, pools, a, b, config, autocast, dev) -> tuple:
    """torch.profiler over one training step: (the profile, the step's wall seconds under it)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from cyclegan.train.step import train_step

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        train_step(nets, opt, pools, a, b, config, autocast)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        wall_s = time.perf_counter() - start
    return prof, wall_s


def _self_time_key(dev) -> str:
    return "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"


# The host calls that launch work on the GPU: the runtime's (eager kernels, cuDNN, cuBLAS) and the
# driver's (Triton kernels of compiled graphs).
LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")


def top_kernels(prof, dev, count: int = 10) -> list[dict]:
    """The ``count`` GPU kernels with the most time in the profile (on a CPU: the ops with the most
    self time): name, milliseconds, share of all of them, calls."""
    import torch

    events = [e for e in prof.key_averages()
              if dev.type != "cuda" or e.device_type == torch.autograd.DeviceType.CUDA]
    key = _self_time_key(dev)
    total = sum(getattr(e, key) for e in events) or 1.0
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    return [{"name": e.key, "ms": getattr(e, key) / 1000, "share": getattr(e, key) / total, "calls": e.count}
            for e in events[:count]]


def launch_share(prof, wall_s: float, dev) -> float | None:
    """The share of the step's wall time the host spent in kernel-launch calls (None on a CPU)."""
    if dev.type != "cuda":
        return None
    launch_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in LAUNCH_CALLS)
    return launch_us / 1e6 / wall_s


def generator_rate(generator, a, autocast, dev, steps: int) -> float:
    """Images/s of one generator at inference (what `cyclegan translate` runs per image)."""
    import torch

    with torch.inference_mode(), autocast():
        generator(a)  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            generator(a)
        if dev.type == "cuda":
            torch.cuda.synchronize()
    return steps * a.shape[0] / (time.perf_counter() - start)


def machine() -> str:
    """The CPU by name and whether it runs bf16 natively (devices.py's detection), threads, GPU, torch."""
    import os

    import torch

    from cyclegan.devices import cpu_has_native_bf16, cpu_name

    native = "native bf16" if cpu_has_native_bf16() else "no native bf16: bf16 only emulated"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return (f"{cpu_name()} ({native}), {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; {gpu}; "
            f"torch {torch.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compare", action="store_true",
                        help="fp32 eager (published setting) against the fast path, side by side (default 256 px)")
    parser.add_argument("--profile", action="store_true", help="with --compare: print the top ops of one step")
    parser.add_argument("--cpu", action="store_true",
                        help="on the CPU: the official step against the project's in fp32 and bf16 (default 128 px)")
    parser.add_argument("--with-compile", action="store_true", help="with --cpu: also a torch.compile'd row")
    parser.add_argument("--threads", type=int, default=0,
                        help="with --cpu: torch CPU threads (default: torch's choice; 1 is steadier on a shared CPU)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(**json.loads(args.child))))
        return
    if args.compare:
        compare(args)
        return
    if args.cpu:
        cpu_rows(args)
        return

    import torch

    settings = [(s, "cpu", False) for s in args.sizes]
    if torch.cuda.is_available():
        settings += [(s, "cuda", amp) for s in args.sizes for amp in (False, True)]
    print(f"machine: {machine()}")
    print("paper networks (ResNet-9 generators, 70x70 PatchGAN), batch 1, one step = G update + D update")
    print(f"{'size':>5} {'device':>7} {'precision':>10} {'s/iter':>9} {'iter/s':>8} {'peak MB':>9}")
    for size, device, amp in settings:
        spec = json.dumps({"size": size, "device": device, "amp": amp, "steps": args.steps, "warmup": args.warmup})
        out = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        precision = "bf16" if amp else "fp32"
        print(f"{size:>5} {device:>7} {precision:>10} {r['s_per_it']:>9.3f} {1 / r['s_per_it']:>8.2f} "
              f"{r['peak_mb']:>9.0f}")
    print("peak MB: max resident set size of the process on the CPU; CUDA allocator peak on a GPU")


def _child(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmark child {spec} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> None:
    """(a) fp32 eager vs (b) the fast path, each in its own process, on the GPU when there is one."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sizes = args.sizes if "--sizes" in sys.argv else [256]
    print(f"machine: {machine()}")
    print(f"paper networks, batch 1, {args.steps} timed steps after {args.warmup} warm-up, device {device}")
    print(f"{'size':>5} {'setting':<34} {'s/iter':>8} {'iter/s':>8} {'peak MB':>8} {'warm-up s':>10} "
          f"{'translate img/s':>16}")
    for size in sizes:
        rows = []
        for label, amp, fast in (("(a) fp32 eager (published)", False, False),
                                 ("(b) fast: bf16+CL+compile+fused", device == "cuda", True)):
            r = _child({"size": size, "device": device, "amp": amp, "fast": fast, "steps": args.steps,
                        "warmup": args.warmup, "profile": args.profile and fast})
            rows.append(r)
            print(f"{size:>5} {label:<34} {r['s_per_it']:>8.3f} {1 / r['s_per_it']:>8.2f} {r['peak_mb']:>8.0f} "
                  f"{r['warmup_s']:>10.1f} {r['translate_ips']:>16.2f}")
        print(f"{size:>5} speed-up of (b) over (a): {rows[0]['s_per_it'] / rows[1]['s_per_it']:.2f}x train, "
              f"{rows[1]['translate_ips'] / rows[0]['translate_ips']:.2f}x translate")
        if args.profile:
            share = rows[1]["launch_share"]
            launches = f"; {share:.0%} of its wall time in kernel launches" if share is not None else ""
            print(f"top ops of one fast-path step at {size} px{launches}:\n{rows[1]['top_ops']}")
    if device == "cpu":
        print("no CUDA device: channels_last does not act on the CPU, and the fast preset's amp (auto) keeps the "
              "CPU in fp32, so (b) differs from (a) by torch.compile (inductor) only; --cpu puts bf16 beside it")


def cpu_rows(args: argparse.Namespace) -> None:
    """The official-style fp32 step against the project's step in fp32, bf16 and compiled, on the CPU."""
    sizes = args.sizes if "--sizes" in sys.argv else [128]
    settings = [("official-style step", False, False, True), ("project train_step", False, False, False),
                ("project train_step", True, False, False)]
    if args.with_compile:
        settings.append(("project train_step", False, True, False))
    print(f"machine: {machine()}")
    print(f"paper networks, batch 1, {args.steps} timed steps after {args.warmup} warm-up, CPU, each row in its "
          f"own process, {args.threads or 'default'} torch threads")
    print(f"{'size':>5} {'step':<20} {'bf16':>5} {'compile':>8} {'s/iter':>8} {'vs official':>12} {'peak MB':>8} "
          f"{'warm-up s':>10}")
    for size in sizes:
        reference = None
        for label, amp, fast, official in settings:
            r = _child({"size": size, "device": "cpu", "amp": amp, "fast": fast, "official": official,
                        "steps": args.steps, "warmup": args.warmup, "translate": False, "threads": args.threads})
            reference = reference or r["s_per_it"]
            print(f"{size:>5} {label:<20} {'yes' if amp else 'no':>5} {'yes' if fast else 'no':>8} "
                  f"{r['s_per_it']:>8.3f} {reference / r['s_per_it']:>11.2f}x {r['peak_mb']:>8.0f} "
                  f"{r['warmup_s']:>10.1f}", flush=True)
    print("vs official: the official-style fp32 step's s/iter over the row's (above 1: faster)")


if __name__ == "__main__":
    main()
