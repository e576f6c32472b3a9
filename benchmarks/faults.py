"""Faults injected for real, each several times: did anything get lost, did the user see a traceback,
and what exit status did the command give?

One table: fault, trials, data lost, tracebacks shown, exit status. "Data lost" counts trials
after which a file that was good before the fault was changed or unreadable (the checkpoint, the
generators, best/, the input photo, the trained run), a download came out spliced from two versions
of its file, the app served the network without a password, or a temporary file or ``.part`` was
left behind. Commands run as a user runs them: ``cyclegan.cli.main`` in this process (a fault's own
hook, such as the NaN gradient, needs it) or ``python -m cyclegan`` in another process where the
fault is about processes (the lock, SIGTERM, kill -9). The full-disk rows need root to mount a
small tmpfs and are marked "not run" without it.

    python benchmarks/faults.py              # 3 trials of each fault
    python benchmarks/faults.py --trials 5
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: its bars would fill stderr

import torch  # noqa: E402

from cyclegan import runfolder  # noqa: E402
from cyclegan.cli import main  # noqa: E402
from cyclegan.config import Config, ModelConfig, TrainConfig  # noqa: E402
from cyclegan.data.synthetic import make_dataset  # noqa: E402
from cyclegan.train import loop  # noqa: E402
from cyclegan.train.step import Models, Optimizers  # noqa: E402

FREE_BYTES = 16 * 1024  # what the full disk leaves: room for the lock and a log row, not for weights


class Outcome:
    """One trial: the command's exit status, whether a traceback was shown, whether data was lost."""

    def __init__(self, status: int | str, stderr: str, lost: bool) -> None:
        self.status, self.traceback, self.lost = status, "Traceback" in stderr, lost


def machine() -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        cpu = "unknown CPU"
    return f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}"


def cli_here(*args: object) -> tuple[int | str, str]:
    """``cyclegan ARGS`` in this process: (exit status, stderr); an escaping exception is a traceback."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(["-q", *map(str, args)])
        except BaseException:  # noqa: BLE001  (what the user would have seen)
            traceback.print_exc()
            status = "crash"
    return status, err.getvalue()


def cli_process(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cyclegan", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def digests(run: Path) -> dict[str, bytes]:
    """The weights, best/, kept epochs and the training state (config.json is left out: a resume with
    more --epochs rewrites it on purpose)."""
    files = sorted(run.rglob("*.safetensors")) + [run / runfolder.STATE_FILE]
    return {str(p.relative_to(run)): p.read_bytes() for p in files if p.exists()}


def leftovers(folder: Path) -> bool:
    return any(".tmp" in p.name or p.name.endswith(".part") for p in folder.rglob("*"))


def small_config(data: Path) -> Config:
    train = TrainConfig(domain_a=str(data / "trainA"), domain_b=str(data / "trainB"), test_a=str(data / "testA"),
                        test_b=str(data / "testB"), load_size=36, crop_size=32, batch_size=2, epochs=1,
                        epochs_decay=0, device="cpu", log_every=2, pool_size=4)
    return Config(model=ModelConfig(ngf=8, ndf=8, n_blocks=1, n_layers_d=2), train=train, preset="bench")


@contextlib.contextmanager
def small_disk(folder: Path):
    """A 64 MiB tmpfs at ``folder`` (None when it cannot be mounted here)."""
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], capture_output=True).returncode == 0
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path) -> Path:
    stats = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (stats.f_bavail * stats.f_frsize - FREE_BYTES))
    return filler


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = make_dataset(root / "shapes", n_train=12, n_test=4, size=32)
        self.trained = root / "trained"
        with contextlib.redirect_stderr(io.StringIO()):
            loop.train(small_config(self.data), self.trained)
        self.count = itertools.count()

    def fresh(self, under: Path | None = None) -> Path:
        return Path(shutil.copytree(self.trained, (under or self.root) / f"run{next(self.count)}"))

    # ----------------------------------------------------------------------------------------- faults

    def cpu_state_on_fused_adam(self) -> Outcome:
        """A CPU run's optimizer state resumed where Adam is fused (CUDA's choice; fused CPU Adam here)."""
        config = small_config(self.data)
        models = Models.build(config, torch.device("cpu"))
        plain = Optimizers(*(torch.optim.Adam(itertools.chain(a.parameters(), b.parameters()))
                             for a, b in ((models.G_AB, models.G_BA), (models.D_A, models.D_B))))
        for optimizer in (plain.G, plain.D):
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = torch.full_like(p, 0.01)
            optimizer.step()
        fused = Optimizers(*(torch.optim.Adam(itertools.chain(a.parameters(), b.parameters()), fused=True)
                             for a, b in ((models.G_AB, models.G_BA), (models.D_A, models.D_B))))
        try:
            fused.load_state_dict(plain.G.state_dict(), plain.D.state_dict())
            fused.G.step()
        except Exception:  # noqa: BLE001
            return Outcome("crash", traceback.format_exc(), True)
        lost = not all(s["step"].device == p.device and s["step"].dtype == torch.float32
                       for p, s in fused.G.state.items())
        return Outcome("n/a (library)", "", lost)

    def second_trainer(self) -> Outcome:
        """A second `train --resume` while one trains; then the first is killed with kill -9 and the
        run resumed: the stale lock must not block it."""
        run = self.fresh()
        first = cli_process("train", "--resume", run, "--epochs", "1000", "-q")
        deadline = time.monotonic() + 180
        lock = run / runfolder.LOCK_FILE
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        status, err = cli_here("train", "--resume", run, "--epochs", "1000")
        first.kill()
        first.wait()
        resumed, err2 = self._resume_one_step(run)
        refused = status == 1 and f"PID {first.pid}" in err  # anything else would have mixed two trainers' files
        return Outcome(status, err + err2, resumed != 0 or not refused)

    def _resume_one_step(self, run: Path) -> tuple[int | str, str]:
        """Resume ``run`` for one more step (the app's and the CLI's way), to show its lock is free."""
        config = runfolder.load_config(run)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                loop.train(config, run, resume=True, should_stop=lambda step: True)
            except loop.TrainingInterrupted:
                return 0, err.getvalue()
            except Exception:  # noqa: BLE001
                return "crash", traceback.format_exc()
        return 0, err.getvalue()

    def nan_gradient(self) -> Outcome:
        """A finite loss with a NaN gradient on the last step of an epoch: the end-of-epoch save."""
        run = self.fresh()
        before = digests(run)
        real, calls = loop.train_step, {"n": 0}

        def train_step(models, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] != 6:
                return real(models, *args, **kwargs)
            handle = next(models.G_AB.parameters()).register_hook(lambda grad: grad * float("nan"))
            try:
                return real(models, *args, **kwargs)
            finally:
                handle.remove()

        loop.train_step = train_step
        try:
            status, err = cli_here("train", "--resume", run, "--epochs", "2")
        finally:
            loop.train_step = real
        return Outcome(status, err, digests(run) != before)

    def disk_full_training(self) -> Outcome | None:
        with small_disk(self.root / f"disk{next(self.count)}") as disk:
            if disk is None:
                return None
            run = self.fresh(disk)
            before = digests(run)
            filler = fill(disk)
            status, err = cli_here("train", "--resume", run, "--epochs", "2")
            lost = digests(run) != before or leftovers(run)
            filler.unlink()
            again, err2 = cli_here("train", "--resume", run, "--epochs", "2")  # space back: it continues
            return Outcome(status, err + err2, lost or again != 0)

    def disk_full_translate(self) -> Outcome | None:
        with small_disk(self.root / f"disk{next(self.count)}") as disk:
            if disk is None:
                return None
            out = disk / "out"
            out.mkdir()
            fill(disk)
            status, err = cli_here("translate", "--run", self.trained, "--direction", "AtoB", "--input",
                                   self.data / "trainA", "--output", out)
            return Outcome(status, err, leftovers(out))

    def disk_full_download(self) -> Outcome | None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        body = os.urandom(256 * 1024)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with small_disk(self.root / f"disk{next(self.count)}") as disk:
                if disk is None:
                    return None
                out = disk / "datasets"
                out.mkdir()
                fill(disk)
                status, err = cli_here("download", "dataset", "horse2zebra", "--out", out, "--base-url",
                                       f"http://127.0.0.1:{server.server_port}")
                return Outcome(status, err, any(out.iterdir()))
        finally:
            server.shutdown()
            server.server_close()

    def download_changed_on_the_server(self) -> Outcome:
        """A download cut off halfway; the file changes on the server (new ETag) before the resume."""
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        versions, served = [os.urandom(128 * 1024), os.urandom(128 * 1024)], {"n": 0}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # honours If-Range as RFC 9110 says
                version = min(served["n"], 1)
                data, tag = versions[version], f'"v{version}"'
                asked, condition = self.headers.get("Range"), self.headers.get("If-Range")
                start = int(asked.removeprefix("bytes=").rstrip("-")) if asked and condition in (None, tag) else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("ETag", tag)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:] if served["n"] else data[:len(data) // 2])
                self.close_connection = True
                served["n"] += 1

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        from cyclegan.data import download as dl

        dl.RETRY_WAIT = 0.0
        target = self.root / f"download{next(self.count)}" / "file.bin"
        try:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                dl.fetch(f"http://127.0.0.1:{server.server_port}/file.bin", target, progress=False)
            status = 0
        except Exception:  # noqa: BLE001
            return Outcome("crash", traceback.format_exc(), True)
        finally:
            server.shutdown()
            server.server_close()
        return Outcome(status, err.getvalue(), target.read_bytes() != versions[1] or leftovers(target.parent))

    def app_on_the_network_without_auth(self) -> Outcome:
        status, err = cli_here("app", "--host", "0.0.0.0", "--checkpoints", self.root, "--datasets", self.root)
        return Outcome(status, err, status == 0)  # a served app would have been the exposure

    def best_pair_cut_short(self) -> Outcome:
        run = self.fresh()
        meta = runfolder.read_best(run)
        net = Models.build(runfolder.load_config(run), torch.device("cpu")).G_AB  # the next best epoch's G_AB only
        runfolder.save_weights(net, runfolder.weights_path(run, "G_AB", best=True), meta["step"])
        out = self.root / f"out{next(self.count)}"
        status, err = cli_here("translate", "--run", run, "--direction", "both", "--best", "--input",
                               self.data / "testA", "--output", out)
        return Outcome(status, err, out.exists())  # outputs from a mixed pair would be the loss

    def sigterm(self) -> Outcome:
        run = self.fresh()
        trainer = cli_process("train", "--resume", run, "--epochs", "1000")
        deadline = time.monotonic() + 180
        while not any(int(r["step"]) > 6 for r in runfolder.read_metrics(run)) and time.monotonic() < deadline:
            time.sleep(0.1)
        trainer.send_signal(signal.SIGTERM)
        _, err = trainer.communicate(timeout=180)
        try:
            step = runfolder.load_state(run)["step"]
            lost = not (step > 6 and runfolder.weights_step(runfolder.weights_path(run, "G_AB")) == step)
        except Exception:  # noqa: BLE001
            lost = True
        return Outcome(trainer.returncode, err, lost)

    def malformed_config(self) -> Outcome:
        run = self.fresh()
        path = run / runfolder.CONFIG_FILE
        path.write_text(path.read_text().replace('"ngf": 8', '"ngf": "8"'))
        status, err = cli_here("translate", "--run", run, "--direction", "AtoB", "--input", self.data / "testA",
                               "--output", self.root / f"out{next(self.count)}")
        return Outcome(status, err, False)

    def malformed_state(self) -> Outcome:
        run = self.fresh()
        state = runfolder.load_state(run)
        state["opt_G"] = {"state": {}, "param_groups": []}
        torch.save(state, run / runfolder.STATE_FILE)
        before = digests(run)
        status, err = cli_here("train", "--resume", run, "--epochs", "2")
        return Outcome(status, err, digests(run) != before)

    def translate_over_input(self) -> Outcome:
        folder = Path(shutil.copytree(self.data / "testA", self.root / f"photos{next(self.count)}"))
        photo = sorted(folder.iterdir())[0]
        original = photo.read_bytes()
        status, err = cli_here("translate", "--run", self.trained, "--direction", "AtoB", "--input", photo,
                               "--output", folder, "--overwrite")
        return Outcome(status, err, photo.read_bytes() != original)

    def overwrite_a_trained_run(self) -> Outcome:
        run = self.fresh()
        before = digests(run)
        status, err = cli_here("make-dataset", "--out", run, "--n-train", "1", "--n-test", "0", "--size", "32",
                               "--overwrite")
        return Outcome(status, err, not run.exists() or digests(run) != before)


FAULTS: list[tuple[str, Callable[[Bench], Outcome | None]]] = [
    ("CPU run's optimizer state into fused Adam", Bench.cpu_state_on_fused_adam),
    ("second trainer on a run; then kill -9", Bench.second_trainer),
    ("NaN gradient, finite loss, at epoch end", Bench.nan_gradient),
    ("disk full while training (tmpfs)", Bench.disk_full_training),
    ("disk full while translating (tmpfs)", Bench.disk_full_translate),
    ("disk full while downloading (tmpfs)", Bench.disk_full_download),
    ("download resumed after the file changed", Bench.download_changed_on_the_server),
    ("best/ pair cut short, translate --best", Bench.best_pair_cut_short),
    ("SIGTERM while training", Bench.sigterm),
    ("malformed config.json", Bench.malformed_config),
    ("malformed train_state.pt", Bench.malformed_state),
    ("translate --output over its input", Bench.translate_over_input),
    ("make-dataset --overwrite on a trained run", Bench.overwrite_a_trained_run),
    ("app --host 0.0.0.0 without --auth", Bench.app_on_the_network_without_auth),
]


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        for name, fault in FAULTS:
            outcomes = [fault(bench) for _ in range(args.trials)]
            if any(o is None for o in outcomes):
                rows.append((name, "0", "-", "-", "not run (needs root to mount a tmpfs)"))
                continue
            statuses = sorted({str(o.status) for o in outcomes})
            rows.append((name, str(len(outcomes)), str(sum(o.lost for o in outcomes)),
                         str(sum(o.traceback for o in outcomes)), ", ".join(statuses)))
    header = ("fault", "trials", "data lost", "tracebacks shown", "exit status")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"machine: {machine()}; {time.time() - started:.0f} s")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |")


if __name__ == "__main__":
    main_()
