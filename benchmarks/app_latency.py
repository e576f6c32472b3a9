"""Web app latency and throughput: one 512x512 image per request through the real server.

Starts ``python app.py`` on 127.0.0.1 (a free port) with a run folder of the chosen preset's
architecture (random weights: speed does not depend on training), then measures through
gradio_client, as a user's browser or script would see it:

* latency of sequential requests (p50 / p95), after one warm-up request that loads the model;
* throughput with several concurrent clients, each in its own thread with its own connection.

Example: python benchmarks/app_latency.py --preset tiny --requests 20 --clients 4
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import torch
from PIL import Image

from cyclegan import runfolder as ckpt
from cyclegan.config import preset
from cyclegan.models.generators import build_generator

REPO = Path(__file__).resolve().parents[1]


def make_run(folder: Path, preset_name: str) -> Path:
    """A run folder with the preset's generators, randomly initialised."""
    config = preset(preset_name)
    run = folder / f"bench_{preset_name}"
    run.mkdir(parents=True)
    ckpt.write_config(run, config)
    torch.manual_seed(0)
    for name in ckpt.GENERATORS:
        ckpt.save_weights(build_generator(config.model), run / f"{name}.safetensors", step=0)
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(checkpoints: Path, concurrency: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, str(REPO / "app.py"), "--checkpoints", str(checkpoints), "--datasets",
               str(checkpoints.parent / "datasets"), "--port", str(port), "--concurrency", str(concurrency),
               "--device", "cpu"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                   env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"))
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"app.py exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    sys.exit(f"app.py did not start:\n{log.read_text()}")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with 20 samples p95 is the 19th)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=("tiny", "paper"), help="generator architecture")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    parser.add_argument("--requests", type=int, default=20, help="sequential requests timed (default 20)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--concurrent-requests", type=int, default=20, help="requests in the concurrent phase")
    parser.add_argument("--server-concurrency", type=int, default=2, help="the app's --concurrency (default 2)")
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    with tempfile.TemporaryDirectory(prefix="cyclegan-bench-") as tmp:
        tmp = Path(tmp)
        make_run(tmp / "checkpoints", args.preset)
        image = tmp / "input.png"
        Image.effect_noise((args.size, args.size), 64).convert("RGB").save(image)
        process, url = start_app(tmp / "checkpoints", args.server_concurrency, tmp / "app.log")
        try:
            def request(client: Client) -> float:
                started = time.perf_counter()
                client.predict(f"bench_{args.preset}", "latest", [handle_file(str(image))], "AtoB", False, False,
                               api_name="/translate")
                return time.perf_counter() - started

            client = Client(url, verbose=False)
            warm = request(client)  # loads the model into the cache
            sequential = [request(client) for _ in range(args.requests)]

            latencies: list[float] = []
            lock = threading.Lock()
            per_client = [args.concurrent_requests // args.clients + (i < args.concurrent_requests % args.clients)
                          for i in range(args.clients)]

            def user(count: int) -> None:
                own = Client(url, verbose=False)
                for _ in range(count):
                    seconds = request(own)
                    with lock:
                        latencies.append(seconds)

            threads = [threading.Thread(target=user, args=(n,)) for n in per_client]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)

    print(f"machine: {machine()}")
    print(f"app: {args.preset} architecture, {args.size}x{args.size} PNG, A->B, server --concurrency "
          f"{args.server_concurrency}, device cpu")
    print(f"first request (loads the model): {warm * 1000:.0f} ms")
    print(f"sequential, {len(sequential)} requests: p50 {statistics.median(sequential) * 1000:.0f} ms, "
          f"p95 {percentile(sequential, 95) * 1000:.0f} ms")
    print(f"{args.clients} concurrent clients, {len(latencies)} requests in {wall:.1f} s: "
          f"{len(latencies) / wall:.2f} requests/s; latency p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"p95 {percentile(latencies, 95) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
