"""Seconds per training iteration and peak memory of the `paper` networks, batch 1.

Each setting runs in its own subprocess so its peak memory (max RSS on the CPU, the CUDA
allocator's peak on a GPU) is its own. Prints one table row per setting and the machine.

    python benchmarks/train_speed.py                     # 128 and 256 px on the CPU (and CUDA if present)
    python benchmarks/train_speed.py --sizes 256 --steps 5
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def measure(size: int, device: str, amp: bool, steps: int, warmup: int) -> dict:
    """Run in a fresh process: time ``steps`` real training steps after ``warmup`` ones."""
    import torch

    from cyclegan.config import preset
    from cyclegan.pool import ImagePool
    from cyclegan.trainer import Models, Optimizers, train_step
    from contextlib import nullcontext

    config = preset("paper")
    config.train.crop_size = config.train.load_size = size
    dev = torch.device(device)
    torch.manual_seed(0)
    models = Models.build(config, dev)
    opt = Optimizers.build(models, config)
    pools = (ImagePool(50, 1), ImagePool(50, 2))
    a = torch.rand(1, 3, size, size, device=dev) * 2 - 1
    b = torch.rand(1, 3, size, size, device=dev) * 2 - 1

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        train_step(models, opt, pools, a, b, config, autocast)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        train_step(models, opt, pools, a, b, config, autocast)
    sync()
    seconds = (time.perf_counter() - start) / steps
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"size": size, "device": device, "amp": amp, "s_per_it": seconds, "peak_mb": peak_mb,
            "threads": torch.get_num_threads()}


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return f"{cpu}, {torch.get_num_threads()} torch threads; {gpu}; torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(**json.loads(args.child))))
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


if __name__ == "__main__":
    main()
