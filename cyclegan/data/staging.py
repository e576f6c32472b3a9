"""Writing a dataset folder all or nothing (``cyclegan make-dataset``, ``make demo``).

A dataset is written under a hidden temporary name beside its target and renamed into place only
when complete, so an interrupted build (Ctrl-C, a kill, a full disk) leaves nothing that looks
finished: ``make`` would otherwise take a half-written ``datasets/shapes`` for done, and training
would quietly use part of it. The next build of the same target removes what an interrupted one
left behind. Downloads install their archives the same way (download.py's ``move_into_place``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..errors import DataError
from .download import move_into_place
from .folders import check_replaceable

_SUFFIX = ".building"


def stage(target: Path, overwrite: bool, command: str = "make-dataset") -> Path:
    """A new, empty folder beside ``target`` to write the dataset into.

    Refuses a non-empty ``target`` unless ``overwrite``, and even then unless the same command made
    it (folders.check_replaceable: one's own photos are never deleted); checked now, before any work.
    """
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        if not overwrite:
            raise DataError(f"{target} already exists and is not empty; pass --overwrite to replace it "
                            "or choose another --out")
        check_replaceable(target, command)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*{_SUFFIX}"):  # left by an interrupted build
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=_SUFFIX, dir=target.parent))


def publish(work: Path, target: Path, command: str = "make-dataset") -> Path:
    """Rename the finished ``work`` folder to ``target``, marked as made by ``cyclegan COMMAND``,
    replacing what ``stage`` allowed to be replaced."""
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    move_into_place(work, target, overwrite=True, command=command)
    return target
