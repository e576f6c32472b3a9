"""What the web app can offer: run folders under the checkpoints folder, datasets under the datasets
folder, each checked and described, and nothing outside those two folders.

Pure filesystem logic with no Gradio in it, so the listing, the labels and the path checks are
tested without a server. A run is described from cheap reads only (config.json, safetensors
headers, file names), so the app can re-list runs every few seconds.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from safetensors import SafetensorError

from .. import runfolder
from ..config import Config
from ..errors import CheckpointError, CycleGANError, DataError
from ..images import load_image
from ..models.generators import build_generator

log = logging.getLogger(__name__)

NOT_KNOWN = "not known"
_SPLIT_NAMES = {"trainA", "trainB", "testA", "testB"}
_DIRECTION_GENERATOR = {"AtoB": "G_AB", "BtoA": "G_BA"}


class PathRefused(CycleGANError):
    """A run or dataset name that would reach outside its folder."""


def safe_child(root: str | Path, name: str, what: str = "run") -> Path:
    """``root/name`` resolved, refusing anything that is not a plain folder name inside ``root``.

    Names come from the browser, so they are untrusted: ``..``, separators, absolute paths, hidden
    names and symlinks that resolve outside ``root`` are all refused.
    """
    if not isinstance(name, str) or not name.strip():
        raise PathRefused(f"choose a {what} (the name was empty)")
    if name in (".", "..") or "/" in name or "\\" in name or "\x00" in name or name.startswith("."):
        raise PathRefused(f"{what} name {name!r} is refused: use a plain folder name, no '..', '/' or leading '.'")
    base = Path(root).resolve()
    target = (base / name).resolve()
    if target.parent != base:
        raise PathRefused(f"{what} {name!r} is refused: it resolves to {target}, outside {base}")
    return target


def check_new_name(name: str, what: str = "run") -> str:
    """A name for a folder the app will create: letters, digits, '-', '_' and '.', not starting with '.'."""
    name = (name or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}", name):
        raise PathRefused(f"{what} name {name!r} is refused: use 1-64 letters, digits, '-', '_' or '.', "
                          "not starting with '.'")
    return name


@dataclass
class RunInfo:
    """One run folder as the app shows it."""

    name: str
    path: Path
    usable: bool
    reason: str = ""
    domain_a: str = NOT_KNOWN
    domain_b: str = NOT_KNOWN
    epochs_done: int = 0
    epochs_total: int | None = None
    best: str = NOT_KNOWN
    has_best: bool = False
    resumable: bool = False
    directions: tuple[str, ...] = ()
    preset: str = NOT_KNOWN
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The dropdown text: name, domains, epochs trained and best held-out metric, or why it is unusable."""
        if not self.usable:
            return f"{self.name} (unusable: {self.reason})"
        total = f"/{self.epochs_total}" if self.epochs_total else ""
        only = "" if len(self.directions) != 1 else f" | {self.directions[0]} only"
        return (f"{self.name} | {self.domain_a} <-> {self.domain_b} | {self.epochs_done}{total} epochs | "
                f"best: {self.best}{only}")


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/[^\s:;,'\"()\[\]]+")  # not a URL's, not a relative path's


def hide_server_paths(text: str) -> str:
    """``text`` with each absolute path cut to its last two parts (``run/config.json``): a message
    shown in the browser names the file without telling the world how the server's disk is laid out."""
    return _ABSOLUTE_PATH.sub(lambda m: "/".join(m.group(0).rstrip("/").split("/")[-2:]), text)


def domain_name(folder: str) -> str:
    """A short name for a training folder: ``shapes/trainA`` for split folders, else the folder's name."""
    if not folder:
        return NOT_KNOWN
    path = Path(folder)
    if path.name in _SPLIT_NAMES and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name or str(path)


def _expected_shapes(config: Config, direction: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        net = build_generator(config.model, direction)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def check_weights_header(path: Path, expected: dict[str, tuple[int, ...]]) -> str | None:
    """None when ``path`` is a complete safetensors file with the expected keys and shapes, else why not.

    Reads only the header (safetensors also checks that the data fills the file, so a truncated
    file is caught here without loading the tensors).
    """
    if not path.exists():
        return f"{path.name} is missing"
    try:
        shapes = runfolder.weights_shapes(path)
    except (SafetensorError, OSError, ValueError) as exc:
        return f"{path.name} is not a readable safetensors file ({exc})"
    if shapes != expected:
        missing = sorted(set(expected) - set(shapes))
        wrong = sorted(k for k in expected if k in shapes and shapes[k] != expected[k])
        return f"{path.name} does not match config.json (missing {len(missing)} keys, {len(wrong)} shapes differ)"
    return None


def describe_best(run_dir: Path) -> str:
    """The best held-out metric as text, from the trainer's ``best/meta.json``; "not known" without one."""
    meta = runfolder.read_best(run_dir)
    if meta is None or not isinstance(meta["value"], (int, float)):
        return NOT_KNOWN
    return f"{meta['metric']} {meta['value']:.4g} (epoch {meta['epoch']})"


def inspect_run(run_dir: Path) -> RunInfo:
    """Describe one run folder; a broken one comes back unusable with the reason, never raises."""
    info = RunInfo(name=run_dir.name, path=run_dir, usable=False)
    try:
        config = runfolder.load_config(run_dir)
    except CycleGANError as exc:
        info.reason = "config.json is missing" if not runfolder.has_config(run_dir) else hide_server_paths(str(exc))
        return info
    t = config.train
    info.domain_a, info.domain_b = domain_name(t.domain_a), domain_name(t.domain_b)
    info.epochs_total = t.epochs + t.epochs_decay
    info.epochs_done = runfolder.epochs_done(run_dir)
    info.preset = config.preset
    info.resumable = runfolder.is_resumable(run_dir)
    info.warnings = [str(w.get("message", "")) for w in runfolder.read_warnings(run_dir)]
    present = [n for n in runfolder.GENERATORS if runfolder.generator_path(run_dir, n).exists()]
    if not present:
        info.reason = "no generator weights (G_AB.safetensors, G_BA.safetensors are missing)"
        return info
    # A run imported from official weights may hold one direction; a present but broken file is fatal.
    direction_of = {g: d for d, g in _DIRECTION_GENERATOR.items()}
    problems = [p for name in present
                if (p := check_weights_header(runfolder.generator_path(run_dir, name),
                                              _expected_shapes(config, direction_of[name])))]
    if problems:
        info.reason = "; ".join(problems)
        return info
    info.directions = tuple(d for d, g in _DIRECTION_GENERATOR.items() if g in present)
    info.has_best = any(runfolder.generator_path(run_dir, n, best=True).exists() for n in present)
    info.best = describe_best(run_dir)
    info.usable = True
    return info


class RunCatalog:
    """The run folders under one checkpoints folder, re-described only when their files change."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._cache: dict[Path, tuple[tuple, RunInfo]] = {}

    def _signature(self, run_dir: Path) -> tuple:
        """Stamps of every file a description reads (files are replaced by rename, so mtimes move)."""
        stamps = []
        for path in runfolder.watched_paths(run_dir):
            try:
                st = path.stat()
                stamps.append((str(path), st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append((str(path), None, None))
        return tuple(stamps)

    def _folders(self) -> list[tuple[Path, str | None]]:
        """Every visible entry under the root that is or points to a folder, with why it is skipped (None: listed).

        A symlink is followed when it resolves to a folder directly inside the root (``latest ->
        shapes_tiny``: what its owner means); one that leads outside is skipped, since the app serves
        files only from inside ``--checkpoints``, and so is a broken one. Hidden entries (a leading
        ``.``: the tool's own temporary folders among them) and plain files are not runs and not reported.
        """
        if not self.root.is_dir():
            return []
        base = self.root.resolve()
        entries = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(".") or not (entry.is_dir() or entry.is_symlink()):
                continue
            target = entry.resolve()
            if not target.is_dir():
                entries.append((entry, f"a symlink to {target}, which is not a folder (broken link?)"))
            elif target.parent != base:
                entries.append((entry, f"a symlink to {target}, outside {base}: the app serves runs only from "
                                       "inside its --checkpoints folder; move the run there or start the app "
                                       "with --checkpoints set to the folder that holds it"))
            else:
                entries.append((entry, None))
        return entries

    def skipped(self) -> list[tuple[str, str]]:
        """(name, reason) of every folder under the root that is not listed as a run."""
        return [(entry.name, reason) for entry, reason in self._folders() if reason]

    def runs(self) -> list[RunInfo]:
        """Every run folder under the root (see ``_folders``), newest first."""
        found = []
        for entry, reason in self._folders():
            if reason:
                continue
            signature = self._signature(entry)
            cached = self._cache.get(entry)
            if cached is None or cached[0] != signature:
                cached = (signature, inspect_run(entry))
                self._cache[entry] = cached
            found.append(cached[1])
        found.sort(key=lambda r: (-_mtime(r.path / runfolder.CONFIG_FILE), r.name))
        return found

    def get(self, name: str) -> RunInfo:
        """The named run, after the path checks; raises PathRefused or CheckpointError."""
        path = safe_child(self.root, name, "run")
        if not path.is_dir():
            raise CheckpointError(f"run {name!r} does not exist under {self.root}")
        return inspect_run(path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def list_datasets(root: str | Path) -> list[str]:
    """Dataset names under ``root``: folders holding trainA/ and trainB/ (symlinks out are skipped)."""
    root = Path(root)
    if not root.is_dir():
        return []
    base = root.resolve()
    names = [d.name for d in root.iterdir()
             if not d.name.startswith(".") and d.is_dir() and d.resolve().parent == base
             and (d / "trainA").is_dir() and (d / "trainB").is_dir()]
    return sorted(names)


@dataclass
class SavedDataset:
    path: Path
    kept: dict[str, int]
    skipped: list[str]


@dataclass
class DatasetUploadLimits:
    """What one dataset upload may hold: files in all, bytes in all, and pixels in one image (as the
    Translate tab's uploads)."""

    max_files: int = 5000
    max_total_bytes: int = 2 << 30
    max_pixels: int = 40_000_000


def save_uploaded_dataset(root: str | Path, name: str, files_a: list[str | Path], files_b: list[str | Path],
                          limits: DatasetUploadLimits | None = None) -> SavedDataset:
    """Copy two sets of uploaded images into ``root/name/trainA`` and ``trainB``.

    An upload over ``limits`` (files, total bytes) is refused before anything is copied; every file
    is then checked (its pixel count from the header, before it is decoded) and decoded, and
    unreadable or oversized ones are skipped (and named); the folder is built under a hidden
    temporary name and renamed into place, so a half-saved dataset never appears.
    """
    limits = limits or DatasetUploadLimits()
    everything = [Path(f) for f in [*(files_a or []), *(files_b or [])]]
    if len(everything) > limits.max_files:
        raise DataError(f"{len(everything)} files uploaded, over the app's {limits.max_files}; train on a larger "
                        "folder with `cyclegan train --data DIR`")
    total = sum(p.stat().st_size for p in everything if p.is_file())
    if total > limits.max_total_bytes:
        raise DataError(f"the upload holds {total / 2**20:.0f} MB, over the app's {limits.max_total_bytes / 2**20:.0f} "
                        "MB; train on a larger folder with `cyclegan train --data DIR`")
    name = check_new_name(name, "dataset")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = safe_child(root, name, "dataset")
    if target.exists():
        raise DataError(f"dataset {name!r} already exists in {root}; choose another name or pick it from the list")
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".upload", dir=root))
    try:
        kept, skipped = {}, []
        for split, files in (("trainA", files_a), ("trainB", files_b)):
            folder = staging / split
            folder.mkdir()
            for i, src in enumerate(files or []):
                src = Path(src)
                try:
                    _check_pixels(src, limits.max_pixels)
                    load_image(src)
                except CycleGANError as exc:
                    skipped.append(f"{src.name}: {exc}")
                    continue
                shutil.copyfile(src, folder / f"{i:05d}_{_safe_file_name(src.name)}")
            kept[split] = len(list(folder.iterdir()))
            if kept[split] == 0:
                raise DataError(f"no readable image for {split} (domain {split[-1]}); upload JPEG/PNG/WebP images")
        staging.rename(target)
        return SavedDataset(target, kept, skipped)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _check_pixels(path: Path, max_pixels: int) -> None:
    """DataError for an image over ``max_pixels``, read from its header before it is decoded."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return  # not an image: decoding it says so, in its own words
    if w * h > max_pixels:
        raise DataError(f"{w}x{h} ({w * h / 1e6:.0f} megapixels), over the {max_pixels / 1e6:.0f} megapixel limit; "
                        "downscale it first")


def _safe_file_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "_", Path(name).name).lstrip(".")
    return cleaned[-80:] or "image"
