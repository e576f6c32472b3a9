"""Training from the web app: one ``cyclegan train`` subprocess at a time, watched and stoppable.

The job runs the same command a user would type, so a run started in the browser is an ordinary
run folder that the CLI can resume. Stopping sends one SIGINT: the trainer finishes its step,
saves a resumable checkpoint and exits. Progress comes from what the trainer already writes: its
progress bar (epoch, it/s), metrics.csv (losses) and samples/ (the latest grid); nothing here
reaches into the training process.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import runfolder
from ..config import FAMILIES, PRESETS, preset
from ..errors import CheckpointError, ConfigError, CycleGANError, DataError
from ..evaluate.timing import spent_and_left
from .catalog import check_new_name, safe_child

log = logging.getLogger(__name__)

_TQDM = re.compile(r"epoch (\d+)/(\d+):\s*(?:\d+%\|[^|]*\|\s*)?(\d+)/(\d+)\s*\[[^\]]*?([\d.]+|\?)(it/s|s/it)")
_LOG_TAIL_BYTES = 64 * 1024
STOP_WAIT_S = 60.0


class JobBusy(CycleGANError):
    """A second training job was asked for while one runs."""


def train_command(python: str, data_dir: Path, run_dir: Path, preset_name: str, epochs: int,
                  epochs_decay: int, device: str, model: str = "cyclegan", one_way: bool = False) -> list[str]:
    """The exact `cyclegan train` command line for a new run (shown to the user, too)."""
    return [python, "-m", "cyclegan", "train", "--data", str(data_dir), "--run", str(run_dir),
            "--preset", preset_name, "--model", model, "--epochs", str(epochs), "--epochs-decay", str(epochs_decay),
            "--device", device, *(["--one-way"] if one_way else [])]


def resume_command(python: str, run_dir: Path) -> list[str]:
    return [python, "-m", "cyclegan", "train", "--resume", str(run_dir)]


@dataclass
class Progress:
    """What the progress bar last said: the epoch in progress, its batches and the speed."""

    epoch: int | None = None
    epochs: int | None = None
    batch: int | None = None
    batches: int | None = None
    rate: str | None = None


def parse_progress(text: str) -> Progress:
    """The last progress-bar state in a log (tqdm redraws with carriage returns)."""
    last = None
    for last in _TQDM.finditer(text):
        pass
    if last is None:
        return Progress()
    epoch, epochs, batch, batches, value, unit = last.groups()
    rate = None if value == "?" else f"{float(value):.2f} {unit}"
    return Progress(int(epoch), int(epochs), int(batch), int(batches), rate)


def log_lines(text: str, count: int = 12) -> str:
    """The last ``count`` lines of a log, with progress-bar redraws collapsed to their latest state."""
    lines = []
    for raw in text.split("\n"):
        parts = [p for p in raw.split("\r") if p.strip()]
        if parts:
            lines.append(parts[-1].rstrip())
    return "\n".join(lines[-count:])


def last_error(text: str) -> str | None:
    """The CLI's one-line ``error: ...`` message, if the log has one."""
    errors = [line for line in log_lines(text, 10_000).splitlines() if line.startswith("error:")]
    return errors[-1].removeprefix("error:").strip() if errors else None


@dataclass
class JobStatus:
    """One look at the training job, for the UI."""

    state: str  # idle, running, stopping, finished, stopped, failed
    message: str
    run: str | None = None
    progress: Progress = field(default_factory=Progress)
    epochs_done: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    seconds_spent: float | None = None  # the trainer's own figures, from metrics.csv (evaluate/timing.py)
    seconds_left: float | None = None
    sample: Path | None = None
    log: str = ""

    @property
    def active(self) -> bool:
        return self.state in ("running", "stopping")


@dataclass
class _Job:
    run: str
    run_dir: Path
    process: subprocess.Popen
    log_path: Path
    command: list[str]
    started: float
    stop_requested: bool = False


class TrainingJobs:
    """Starts, watches and stops the one background training process of the app."""

    def __init__(self, checkpoints: str | Path, datasets: str | Path, device: str = "auto",
                 python: str = sys.executable) -> None:
        self.checkpoints = Path(checkpoints)
        self.datasets = Path(datasets)
        self.device = device
        self.python = python
        self._lock = threading.Lock()
        self._job: _Job | None = None
        self._logs: Path | None = None  # made at the first job, removed on shutdown

    def start(self, dataset: str, run: str, preset_name: str, epochs: int, epochs_decay: int,
              model: str = "cyclegan", one_way: bool = False) -> JobStatus:
        """Start a new run on a dataset under the datasets folder; refused while another job runs.
        ``one_way``: CUT or FastCUT A->B alone (``--one-way``), refused here for CycleGAN rather than
        in the job's log a moment later."""
        run = check_new_name(run, "run")
        data_dir = safe_child(self.datasets, dataset, "dataset")
        if not (data_dir / "trainA").is_dir() or not (data_dir / "trainB").is_dir():
            raise DataError(f"dataset {dataset!r} needs trainA/ and trainB/ folders of images in {data_dir}")
        if preset_name not in PRESETS:
            raise ConfigError(f"unknown preset {preset_name!r}; choose one of: {', '.join(PRESETS)}")
        if model not in FAMILIES:
            raise ConfigError(f"unknown model {model!r}; choose one of: {', '.join(FAMILIES)}")
        if one_way and model == "cyclegan":
            raise ConfigError("one way trains CUT or FastCUT A->B only (CycleGAN's cycle loss needs both "
                              "generators): choose the model cut or fastcut, or untick one way")
        epochs, epochs_decay = _whole(epochs, "epochs", 1), _whole(epochs_decay, "decay epochs", 0)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        run_dir = safe_child(self.checkpoints, run, "run")
        if run_dir.exists():
            raise CheckpointError(f"run {run!r} already exists; choose another name, or resume it")
        command = train_command(self.python, data_dir, run_dir, preset_name, epochs, epochs_decay, self.device,
                                model, one_way)
        return self._launch(run, run_dir, command)

    def resume(self, run: str) -> JobStatus:
        """Continue a stopped run exactly where it left off (`cyclegan train --resume RUN`)."""
        run_dir = safe_child(self.checkpoints, run, "run")
        if not runfolder.is_resumable(run_dir):
            raise CheckpointError(f"run {run!r} has no resumable checkpoint ({runfolder.STATE_FILE}); start a new run")
        config = runfolder.load_config(run_dir)
        total = config.train.epochs + config.train.epochs_decay
        if runfolder.epochs_done(run_dir) >= total:
            raise CheckpointError(f"run {run!r} has already trained all its {total} epochs; nothing to resume")
        return self._launch(run, run_dir, resume_command(self.python, run_dir))

    def _launch(self, run: str, run_dir: Path, command: list[str]) -> JobStatus:
        with self._lock:
            if self._job is not None and self._job.process.poll() is None:
                raise JobBusy(f"a training job is already running (run {self._job.run!r}); one job at a time: "
                              "stop it or wait for it to finish")
            if self._logs is None or not self._logs.is_dir():
                self._logs = Path(tempfile.mkdtemp(prefix="cyclegan-app-jobs-"))
            log_path = self._logs / f"{run}-{int(time.time() * 1000)}.log"
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            with log_path.open("wb") as log_file:
                # A session of its own: a Ctrl-C in the app's terminal must not reach the trainer
                # as well, or our own SIGINT on shutdown would be its second one (abort, no save).
                process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
            self._job = _Job(run, run_dir, process, log_path, command, time.time())
            log.info("training job started: %s", " ".join(command))
        return self.status()

    def stop(self) -> JobStatus:
        """Ask the running job to stop: one SIGINT, so the trainer saves a resumable checkpoint."""
        with self._lock:
            job = self._job
            if job is None or job.process.poll() is not None:
                raise ConfigError("no training job is running")
            if not job.stop_requested:
                job.process.send_signal(signal.SIGINT)
                job.stop_requested = True
        return self.status()

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Block until the job ends (tests and shutdown use it)."""
        job = self._job
        if job is not None:
            try:
                job.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return self.status()

    def shutdown(self, timeout: float = STOP_WAIT_S) -> None:
        """On app exit: stop a running job cleanly so its run stays resumable, then drop the logs."""
        try:
            self._stop_for_exit(timeout)
        finally:
            if self._logs is not None:
                shutil.rmtree(self._logs, ignore_errors=True)

    def _stop_for_exit(self, timeout: float) -> None:
        job = self._job
        if job is None or job.process.poll() is not None:
            return
        log.warning("stopping training job %s (saving a resumable checkpoint)", job.run)
        try:
            self.stop()
        except ConfigError:
            return
        try:
            job.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("training job %s did not stop within %.0fs; terminating it", job.run, timeout)
            job.process.terminate()

    def status(self) -> JobStatus:
        job = self._job
        if job is None:
            return JobStatus("idle", "No training job is running. One job runs at a time.")
        text = _tail(job.log_path)
        code = job.process.poll()
        status = JobStatus(state="running", message="", run=job.run, progress=parse_progress(text),
                           epochs_done=runfolder.epochs_done(job.run_dir), log=log_lines(text))
        rows = runfolder.read_metrics(job.run_dir)
        if rows:
            status.losses = {k.removeprefix("loss_"): float(v) for k, v in rows[-1].items()
                             if k.startswith("loss_") and v not in ("", None)}
        status.seconds_spent, status.seconds_left = spent_and_left(rows, finished=code == 0)
        grids = runfolder.sample_grids(job.run_dir)
        status.sample = grids[0][1] if grids else None
        if code is None:
            status.state = "stopping" if job.stop_requested else "running"
            status.message = (f"Stopping run {job.run!r}: finishing the current step and saving a resumable checkpoint."
                              if job.stop_requested else f"Training run {job.run!r}. One training job at a time.")
        elif code == 0:
            status.state, status.message = "finished", f"Run {job.run!r} finished; it is in the Translate tab's list."
        elif job.stop_requested or code in (130, 143):  # SIGINT, or SIGTERM from outside the app
            status.state = "stopped"
            status.message = (f"Run {job.run!r} stopped; its checkpoint is saved: press Resume to continue it."
                              if runfolder.is_resumable(job.run_dir) else
                              f"Run {job.run!r} stopped before its first checkpoint; nothing to resume, start it again.")
        else:
            status.state = "failed"
            status.message = f"Run {job.run!r} failed: {last_error(text) or f'exit status {code}, see the log below'}"
        return status


def _whole(value: float | int | None, name: str, minimum: int) -> int:
    if value is None or float(value) != int(value) or int(value) < minimum:
        raise ConfigError(f"{name} must be a whole number of at least {minimum}, got {value!r}")
    return int(value)


def preset_epochs(name: str) -> tuple[int, int]:
    """A preset's (epochs, decay epochs), to pre-fill the form."""
    t = preset(name).train
    return t.epochs, t.epochs_decay


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
