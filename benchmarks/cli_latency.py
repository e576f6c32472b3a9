"""How long `cyclegan --help` and every `cyclegan COMMAND --help` take, beside `python -c pass`.

Each command is run as a fresh process (as a user runs it), ``--repeat`` times; the table gives the
median and the slowest in seconds, and what the command adds over starting Python itself. The
parser imports no torch, torchvision or gradio (tests/test_cli.py checks that), so every row should
be a small fraction of a second above the ``python -c pass`` row.

    python benchmarks/cli_latency.py
    python benchmarks/cli_latency.py --repeat 10
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

COMMANDS = [[], ["train"], ["translate"], ["evaluate"], ["report"], ["make-dataset"], ["export"],
            ["import-official"], ["download"], ["download", "model"], ["app"]]


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def seconds(argv: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (default 5)")
    args = parser.parse_args()
    print(f"machine: {machine()}; {args.repeat} runs each; load average {os.getloadavg()[0]:.1f}")
    baseline = statistics.median(seconds([sys.executable, "-c", "pass"], args.repeat))
    print(f"{'command':<34}{'median s':>10}{'slowest s':>11}{'over python':>13}")
    print(f"{'python -c pass':<34}{baseline:>10.3f}{'':>11}{'':>13}")
    for command in COMMANDS:
        times = seconds([sys.executable, "-m", "cyclegan", *command, "--help"], args.repeat)
        label = " ".join(["cyclegan", *command, "--help"])
        median = statistics.median(times)
        print(f"{label:<34}{median:>10.3f}{max(times):>11.3f}{median - baseline:>+13.3f}")


if __name__ == "__main__":
    main()
