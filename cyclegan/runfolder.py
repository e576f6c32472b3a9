"""The run folder on disk: the one module that names the files inside it and documents the format.

```
config.json           the full Config: enough to rebuild the networks
G_AB.safetensors      generator A->B (latest); G_BA.safetensors generator B->A
D_A.safetensors       discriminators (latest); D_B.safetensors
F_AB.safetensors      CUT and FastCUT runs only: the PatchNCE heads (latest); F_BA.safetensors
best/                 G_AB/G_BA.safetensors of the best held-out epoch, and meta.json describing it
epochs/epoch_NNN/     G_AB/G_BA.safetensors of evaluated epochs kept with --keep-epochs
train_state.pt        networks, optimizers, pools, position: an exact resume (written last)
train.lock            held (flock) by the one trainer writing the run; it names that trainer's PID
metrics.csv           one row per logged step or evaluation
warnings.json         the warnings training raised: [{kind, epoch, step, message, time}]
samples/epoch_NNN.png the sample grid of each epoch
plots/*.png           curves drawn from metrics.csv
tensorboard/          TensorBoard events (with --tensorboard): losses, lr, held-out metrics, warnings, samples
```

Every file goes to a temporary name in the same folder, is flushed and fsync'd, then renamed over
the old one, so a crash or kill at any moment leaves the previous good file readable. Weights are
safetensors (loading never runs pickled code); train_state.pt holds only tensors and plain values
and is read with ``torch.load(weights_only=True)``. train_state.pt carries its own copy of the four
networks, written last: whatever moment a kill interrupts a save, it and the networks in it agree,
so resuming is exact even when the *.safetensors beside it were already replaced.

One trainer at a time writes a run folder: ``lock_run`` takes an OS lock (``fcntl.flock``) on
train.lock, which the kernel drops when the process ends however it ends, so a lock left by a
kill -9 never blocks. Readers (translate, evaluate, the app) take no lock: atomic renames already
show them the old file or the new one.

A new file is added here, and run folders written by earlier versions keep loading.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

from .config import Config
from .errors import CheckpointError, ConfigError, DiskFullError, RunLockedError

GENERATORS = ("G_AB", "G_BA")
DISCRIMINATORS = ("D_A", "D_B")
CONFIG_FILE = "config.json"
STATE_FILE = "train_state.pt"
LOCK_FILE = "train.lock"
BEST_DIR = "best"
BEST_META = "meta.json"
METRICS_FILE = "metrics.csv"
WARNINGS_FILE = "warnings.json"
SAMPLES_DIR = "samples"
EPOCHS_DIR = "epochs"
PLOTS_DIR = "plots"
TENSORBOARD_DIR = "tensorboard"
_SAMPLE_NAME = re.compile(r"^epoch_(\d+)\.png$")
_EPOCH_DIR_NAME = re.compile(r"^epoch_(\d+)$")
_STATE_KEYS = {"epoch", "batch", "step", "models", "opt_G", "opt_D"}  # what train_state.pt must hold to resume


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


# --------------------------------------------------------------------------- atomic writes

def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    On a full disk the temporary file is removed and DiskFullError names ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DiskFullError.of(exc, path) or exc from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        full = DiskFullError.of(exc, path)
        if full is not None:
            raise full from None
        raise


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` for a writer that needs a file name, not bytes (a video muxer,
    which streams to disk what would not fit in memory); flushed and renamed over ``path`` when the
    block ends, removed if it raises. It ends in ``path``'s suffix: such writers take the format from it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        full = DiskFullError.of(exc, path)
        if full is not None:
            raise full from None
        raise


def _write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2) + "\n").encode())


def _read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- config.json

def check_new_run_folder(run_dir: str | Path) -> None:
    """Refuse a run folder that already has files: a run is never overwritten (its lock file, which
    the new run's trainer holds, does not count)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        raise CheckpointError(f"run folder {run_dir} already exists; resume it with `cyclegan train --resume "
                              f"{run_dir}` or choose another --run name")


def write_config(run_dir: str | Path, config: Config) -> None:
    """config.json (creating the run folder)."""
    atomic_write_bytes(Path(run_dir) / CONFIG_FILE, config.to_json().encode())


def has_config(run_dir: str | Path) -> bool:
    return (Path(run_dir) / CONFIG_FILE).exists()


def load_config(run_dir: str | Path) -> Config:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {run_dir} does not exist; train one with `cyclegan train --run {run_dir}`")
    path = run_dir / CONFIG_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing: is this a run folder made by `cyclegan train`?") from None
    except OSError as exc:
        raise ConfigError(f"{path} is not readable JSON ({exc}); restore it or start a new run") from None
    return Config.from_json(text, source=str(path))


# --------------------------------------------------------------------------- train.lock

@contextmanager
def lock_run(run_dir: str | Path) -> Iterator[None]:
    """Hold the run folder's trainer lock for the block (creating the folder); RunLockedError,
    naming the holder's PID, when another process holds it.

    ``flock`` belongs to the open file, and the kernel releases it when the process dies, so a lock
    file left by a killed trainer is taken over at once. The PID inside is only a message for the
    user: whether the lock is held is the kernel's answer, never the file's contents. The file is
    left in place on release (unlinking it would let two processes lock two different files); a
    new run's folder that holds nothing else then (training failed before its first file) is
    removed, so the retry starts clean.
    """
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise CheckpointError(f"cannot lock {path} ({exc.strerror}); check the folder's permissions, and that its "
                                  "file system supports locks") from None
        raise RunLockedError(f"{run_dir} is being trained by another process (PID {holder}); wait for it to end or "
                             "stop it first (translate, evaluate and the app can read the run meanwhile)") from None
    try:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # a full disk now would lose the training to come: say so before it starts
            raise DiskFullError.of(exc, path) or exc from None
        yield
    finally:
        if created and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
            path.unlink(missing_ok=True)
            run_dir.rmdir()
        os.close(fd)  # releases the lock


# --------------------------------------------------------------------------- weights

def weights_path(run_dir: str | Path, name: str, best: bool = False, epoch: int | None = None) -> Path:
    """Where network ``name`` (G_AB, G_BA, D_A, D_B) is stored; ``best`` for the best epoch's,
    ``epoch`` for a kept epoch's (generators only)."""
    if epoch is not None:
        return epoch_dir(run_dir, epoch) / f"{name}.safetensors"
    return Path(run_dir) / (BEST_DIR if best else "") / f"{name}.safetensors"


def generator_path(run_dir: str | Path, name: str, best: bool = False, epoch: int | None = None) -> Path:
    return weights_path(run_dir, name, best, epoch)


def epoch_dir(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / EPOCHS_DIR / f"epoch_{epoch:03d}"


def kept_epochs(run_dir: str | Path) -> list[int]:
    """The epochs whose generators are kept in epochs/, oldest first."""
    folder = Path(run_dir) / EPOCHS_DIR
    found = [int(m.group(1)) for p in folder.glob("epoch_*") if (m := _EPOCH_DIR_NAME.match(p.name))]
    return sorted(found)


def keep_epoch(run_dir: str | Path, epoch: int, generators: dict[str, nn.Module], step: int, keep: int) -> None:
    """Save ``epoch``'s generators in epochs/ and drop the oldest beyond the last ``keep`` (-1: keep all)."""
    for name, net in generators.items():
        save_weights(net, weights_path(run_dir, name, epoch=epoch), step)
    if keep > 0:
        for old in kept_epochs(run_dir)[:-keep]:
            for file in epoch_dir(run_dir, old).iterdir():
                file.unlink()
            epoch_dir(run_dir, old).rmdir()


def save_weights(net: nn.Module, path: Path, step: int, **metadata: str) -> bytes:
    """One network as safetensors; ``step`` goes into the metadata to check a set is consistent.
    Returns the bytes written."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    data = safetensors_save(state, metadata={"step": str(step), **metadata})
    atomic_write_bytes(path, data)
    return data


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors_load(Path(path).read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the run folder is incomplete (was training stopped before "
                              "its first checkpoint?)") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); restore it or retrain") from None


def weights_step(path: Path) -> int | None:
    """The training step recorded in a weight file's metadata (None if absent)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            step = (f.metadata() or {}).get("step")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); restore it or retrain") from None
    return int(step) if step is not None else None


def weights_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape from a safetensors header alone (safetensors also checks the data fills the file)."""
    with safe_open(str(path), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def load_weights(net: nn.Module, path: Path) -> nn.Module:
    """Load ``path`` into ``net``, or raise CheckpointError saying which keys or shapes differ."""
    state = read_weights(path)
    check_state_dict(net, state, path)
    net.load_state_dict(state)
    return net


def check_state_dict(net: nn.Module, state: dict[str, torch.Tensor], source: str | Path,
                     against: str = "the network in config.json") -> None:
    """Raise CheckpointError naming the missing and unexpected keys and shape mismatches of ``state``."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches {_few(mismatched)}")
        raise CheckpointError(f"{source} does not match {against}: {'; '.join(parts)}")


def _few(items: list[str], shown: int = 3) -> str:
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


# --------------------------------------------------------------------------- train_state.pt

def save_state(run_dir: str | Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(Path(run_dir) / STATE_FILE, buffer.getvalue())


def is_resumable(run_dir: str | Path) -> bool:
    return (Path(run_dir) / STATE_FILE).exists()


def load_state(run_dir: str | Path) -> dict[str, Any]:
    """train_state.pt, checked to hold what an exact resume needs (networks, optimizers, position)."""
    path = Path(run_dir) / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; this run cannot be resumed (it has no training state)") from None
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"{path} cannot be read ({type(exc).__name__}: {exc}); this run cannot be "
                              "resumed, start a new one") from None
    missing = sorted(_STATE_KEYS - state.keys()) if isinstance(state, dict) else sorted(_STATE_KEYS)
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}; this run cannot be resumed, start a new one")
    malformed = [k for k in ("epoch", "batch", "step")
                 if not isinstance(state[k], int) or isinstance(state[k], bool) or state[k] < 0]
    malformed += [k for k in ("models", "opt_G", "opt_D") if not isinstance(state[k], dict)]
    if malformed:
        raise CheckpointError(f"{path} has malformed {', '.join(malformed)}; this run cannot be resumed, start a new "
                              "one")
    return state


# --------------------------------------------------------------------------- best/

def save_best(run_dir: str | Path, generators: dict[str, nn.Module], meta: dict[str, Any]) -> None:
    """Write the best epoch's generators to ``best/`` and, last, ``best/meta.json`` describing them.

    Each file is replaced atomically, but a kill between them can leave a pair from two epochs, so
    meta.json records what each generator file must be (``files``: name -> size and SHA-256) and
    ``check_best`` refuses any other pair.
    """
    files = {}
    for name, net in generators.items():
        path = weights_path(run_dir, name, best=True)
        data = save_weights(net, path, meta["step"])
        files[path.name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    _write_json(Path(run_dir) / BEST_DIR / BEST_META, {**meta, "files": files})


def read_best(run_dir: str | Path) -> dict[str, Any] | None:
    """``best/meta.json`` (epoch, step, metric, value, metrics, files), or None if there is no usable one."""
    meta = _read_json(Path(run_dir) / BEST_DIR / BEST_META)
    return meta if isinstance(meta, dict) and {"epoch", "metric", "value"} <= meta.keys() else None


def check_best(run_dir: str | Path) -> None:
    """Raise CheckpointError unless best/'s generator files are the ones best/meta.json describes.

    meta.json is written last, so a save cut short leaves files it does not describe. Folders from
    before ``files`` was recorded are checked by the step stored in each weight file.
    """
    folder = Path(run_dir) / BEST_DIR
    meta = read_best(run_dir)
    what = ("delete best/ and use the latest weights (drop --best), or train on: the next best epoch rewrites "
            "best/ whole")
    if meta is None:
        raise CheckpointError(f"{folder / BEST_META} is missing or unreadable, so best/'s generators cannot be told "
                              f"apart from a save cut short; {what}")
    for name in GENERATORS:
        path = folder / f"{name}.safetensors"
        if not path.exists():
            continue
        expected = (meta.get("files") or {}).get(path.name)
        if isinstance(expected, dict):
            data = path.read_bytes()
            good = len(data) == expected.get("size") and hashlib.sha256(data).hexdigest() == expected.get("sha256")
        else:
            good = meta.get("step") is None or weights_step(path) == meta["step"]
        if not good:
            raise CheckpointError(f"{path} is not the file {folder / BEST_META} describes (epoch {meta['epoch']}): "
                                  f"a save of best/ was cut short and the pair is mixed; {what}")


# --------------------------------------------------------------------------- warnings.json

def read_warnings(run_dir: str | Path) -> list[dict[str, Any]]:
    """The warnings a run has raised (empty when none, or when the file is unreadable)."""
    data = _read_json(Path(run_dir) / WARNINGS_FILE)
    return [w for w in data if isinstance(w, dict)] if isinstance(data, list) else []


class RunWarnings:
    """The run folder's warnings.json: appended to (atomically) as warnings arise."""

    def __init__(self, run_dir: str | Path, write: bool = True,
                 also: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.path = Path(run_dir) / WARNINGS_FILE
        self.write = write  # False on the ranks of a distributed run that do not own the run folder
        self.also = also  # handed each new warning too (the TensorBoard log shows them as text)
        self.items: list[dict[str, Any]] = read_warnings(run_dir)
        # True: keep new warnings in memory until ``release`` (the trainer judges an epoch before
        # its checkpoint is saved, and writes nothing else before that checkpoint)
        self.hold = False
        self._held = False  # a warning came while holding

    def add(self, kind: str, epoch: int, step: int, message: str) -> None:
        item = {"kind": kind, "epoch": epoch, "step": step, "message": message,
                "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.items.append(item)
        self._write()
        if self.also is not None:
            self.also(item)

    def truncate_after(self, step: int) -> None:
        """Drop warnings raised after ``step``: on resume, that training is being redone."""
        kept = [w for w in self.items if w.get("step", 0) <= step]
        if len(kept) != len(self.items):
            self.items = kept
            self._write()

    def release(self) -> None:
        """Write the warnings held back since ``hold`` was set, and stop holding."""
        self.hold = False
        if self._held:
            self._held = False
            self._write()

    def _write(self) -> None:
        if self.hold:
            self._held = True
        elif self.write:
            _write_json(self.path, self.items)


# --------------------------------------------------------------------------- metrics.csv

def read_metrics(run_dir: str | Path) -> list[dict[str, str]]:
    """The complete rows of a run's metrics.csv; empty when it does not exist (yet) or cannot be read.

    The app and the report read the file while a trainer may be appending to it, and a killed
    trainer can leave a cut-off last line: a row with fewer fields than the header is dropped
    rather than handed on with holes.
    """
    try:
        return _parse_csv((Path(run_dir) / METRICS_FILE).read_text())[1]
    except (OSError, csv.Error):
        return []


def _parse_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the complete rows of metrics.csv's text."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = [dict(row) for row in reader if None not in row.values() and None not in row]
    return list(reader.fieldnames or []), rows


class MetricsLog:
    """metrics.csv: appended to, and rewritten (atomically) only when a row brings a new column."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.rows: list[dict[str, str]] = []
        self.columns: list[str] = []
        # A file cut off mid-row (a killed run) is rewritten before the next row goes in, or that
        # row would be glued onto the broken one.
        self._damaged = False
        if self.path.exists():
            text = self.path.read_text()
            self.columns, self.rows = _parse_csv(text)
            self._damaged = bool(text) and not text.endswith("\n")

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step``: on resume they belong to training that is being redone."""
        kept = [r for r in self.rows if int(float(r.get("step") or 0)) <= step]
        if len(kept) != len(self.rows):
            self.rows = kept
            self._rewrite()

    def append(self, row: dict[str, Any]) -> None:
        row = {k: _format(v) for k, v in row.items()}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new or self._damaged or not self.path.exists():
            self.columns += new
            self._rewrite()
            return
        try:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, self.columns, lineterminator="\n").writerow(row)
        except OSError as exc:  # a row cut short is dropped by readers and repaired by the next run
            self._damaged = True
            raise DiskFullError.of(exc, self.path) or exc from None

    def append_or_merge(self, row: dict[str, Any]) -> None:
        """Append ``row``, or fill it into the last row when that one is for the same step.

        An epoch's held-out evaluation lands on the step its last losses were logged at; merging
        keeps one row per step.
        """
        if not self.rows or "step" not in row or self.rows[-1].get("step") != _format(row["step"]):
            self.append(row)
            return
        merged = {k: _format(v) for k, v in row.items()}
        self.rows[-1].update(merged)
        self.columns += [k for k in merged if k not in self.columns]
        self._rewrite()

    def _rewrite(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(self.path, buffer.getvalue().encode())
        self._damaged = False


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# --------------------------------------------------------------------------- samples/ and plots/

def sample_path(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / SAMPLES_DIR / f"epoch_{epoch:03d}.png"


def sample_grids(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every sample grid, newest first."""
    found = [(int(m.group(1)), p) for p in (Path(run_dir) / SAMPLES_DIR).glob("epoch_*.png")
             if (m := _SAMPLE_NAME.match(p.name))]
    return sorted(found, reverse=True)


def epochs_done(run_dir: str | Path) -> int:
    """Completed epochs, from the per-epoch sample grids (a cheap, always-written trace)."""
    grids = sample_grids(run_dir)
    return grids[0][0] if grids else 0


def plot_path(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / PLOTS_DIR / f"{name}.png"


def plot_files(run_dir: str | Path) -> list[Path]:
    return sorted((Path(run_dir) / PLOTS_DIR).glob("*.png"))


def tensorboard_dir(run_dir: str | Path) -> Path:
    """The folder of the run's TensorBoard event files (written by TensorBoard's own writer, which
    appends to them: they are the one output here not replaced by rename)."""
    return Path(run_dir) / TENSORBOARD_DIR


def watched_paths(run_dir: str | Path) -> list[Path]:
    """The files and folders whose change means a run's description changed (for cheap re-listing:
    every file is replaced by rename, so their mtimes move)."""
    run_dir = Path(run_dir)
    return [run_dir, run_dir / CONFIG_FILE, *(weights_path(run_dir, g) for g in GENERATORS), run_dir / STATE_FILE,
            run_dir / SAMPLES_DIR, run_dir / BEST_DIR, run_dir / BEST_DIR / BEST_META, run_dir / WARNINGS_FILE]
