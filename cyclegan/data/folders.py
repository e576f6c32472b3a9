"""Finding the images of a domain and setting some aside as held-out images.

Images are found recursively and recognised by content (Pillow), not by extension, and each is
decoded once up front, so a broken file is reported before training starts rather than crashing
it an hour in. The held-out choice is a pure function of the seed and the sorted paths, so a
resumed run, and a later ``cyclegan evaluate``, see exactly the same images.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from ..images import unreadable_reason

if TYPE_CHECKING:
    from ..config import TrainConfig

log = logging.getLogger(__name__)

_SHOWN_SKIPS = 3  # how many skipped files a warning names
MADE_BY = ".made-by-cyclegan"  # in a folder a command made (it names the command): what --overwrite may delete
MAX_HELDOUT = 200  # held-out images per domain: enough for stable SWD, cheap enough to run every epoch
_DOMAIN_SALT = {"A": 1, "B": 2}  # keeps the two domains' seeded choices independent


def candidate_files(folder: Path) -> list[Path]:
    """Every regular file under ``folder``, hidden files and folders left out, in a stable order.

    Symlinked folders are followed, but each real folder is visited once, so a link loop ends.
    """
    found = []
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
    return found


def find_images(folder: str | Path, *, strict: bool = False, label: str = "image folder") -> list[Path]:
    """The decodable images under ``folder``, sorted; unreadable files are skipped with a warning.

    Raises DataError when the folder is missing, holds no files or no decodable image, or (with
    ``strict``) holds any unreadable file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{label} {folder} does not exist; check the path")
    if not folder.is_dir():
        raise DataError(f"{label} {folder} is not a folder; pass a folder of images")
    files = candidate_files(folder)
    if not files:
        raise DataError(f"{label} {folder} is empty; put images in it (searched recursively)")
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        reasons = list(pool.map(unreadable_reason, files))
    good = [f for f, r in zip(files, reasons) if r is None]
    bad = [(f, r) for f, r in zip(files, reasons) if r is not None]
    if bad and strict:
        path, reason = bad[0]
        raise DataError(f"{path} cannot be read ({reason}); remove it, or drop --strict to skip such files")
    if not good:
        raise DataError(f"{label} {folder} has no readable image among its {len(files)} file(s) "
                        f"(first: {bad[0][0].name}: {bad[0][1]}); add JPEG/PNG/WebP/BMP/TIFF images")
    if bad:
        named = ", ".join(f"{p.name} ({r})" for p, r in bad[:_SHOWN_SKIPS])
        more = f" and {len(bad) - _SHOWN_SKIPS} more" if len(bad) > _SHOWN_SKIPS else ""
        log.warning("%s %s: skipped %d unreadable file(s): %s%s", label, folder, len(bad), named, more)
    return good


def heldout_split(paths: list[Path], fraction: float, seed: int, salt: int) -> tuple[list[Path], list[Path]]:
    """(training, held-out) paths: ``fraction`` of ``paths`` (at least 1, at most MAX_HELDOUT) set aside.

    The choice depends only on ``seed``, ``salt`` (one per domain) and the sorted paths, so a
    resumed run holds out exactly the images it held out before. A folder of one image cannot be
    split; it is then returned as both (and the caller says so).
    """
    paths = sorted(paths)
    if len(paths) < 2:
        return paths, list(paths)
    count = min(MAX_HELDOUT, len(paths) - 1, max(1, round(len(paths) * fraction)))
    chosen = set(np.random.default_rng([seed, salt]).permutation(len(paths))[:count].tolist())
    return ([p for i, p in enumerate(paths) if i not in chosen],
            [p for i, p in enumerate(paths) if i in chosen])


def limit_paths(paths: list[Path], seed: int, salt: int, limit: int = MAX_HELDOUT) -> list[Path]:
    """At most ``limit`` of ``paths``, a fixed seeded choice kept in sorted order."""
    paths = sorted(paths)
    if len(paths) <= limit:
        return paths
    chosen = np.sort(np.random.default_rng([seed, salt]).permutation(len(paths))[:limit])
    return [paths[i] for i in chosen]


def heldout_from_test_folder(folder: str | Path, seed: int, domain: str) -> list[Path]:
    """At most MAX_HELDOUT images of domain ``domain``'s test folder: one seeded choice, so that
    training and a later ``cyclegan evaluate --data`` score the same images."""
    return limit_paths(find_images(folder, label=f"test{domain} folder"), seed, _DOMAIN_SALT[domain])


def heldout_for(train: "TrainConfig", domain: str, train_paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(training, held-out) images of one domain ("A" or "B") as a run's config defines them.

    The domain's test folder when it has one (at most MAX_HELDOUT of it), else ``val_fraction`` of
    its training images, which then leave the training set. With evaluation off (``eval_every``
    0) and no test folder nothing is held out, and the training images double as sample images.
    """
    test = train.test_a if domain == "A" else train.test_b
    if test:
        return train_paths, heldout_from_test_folder(test, train.seed, domain)
    if train.eval_every == 0:
        return train_paths, train_paths
    kept, heldout = heldout_split(train_paths, train.val_fraction, train.seed, _DOMAIN_SALT[domain])
    if kept == heldout:
        log.warning("domain %s has a single training image: it is also used as the held-out image", domain)
    else:
        log.info("domain %s: %d of %d training images held out for evaluation (--val-fraction %g)",
                 domain, len(heldout), len(train_paths), train.val_fraction)
    return kept, heldout


def run_heldout_paths(train: "TrainConfig", data: str | Path | None = None) -> tuple[list[Path], list[Path], str]:
    """The held-out images to score a run on, and a note on where they come from.

    With ``data``: its testA/ and testB/. Without: the run's own held-out images, as training chose
    them (its test folders, or the seeded split of its training folders).
    """
    if data is not None:
        folders = [Path(data) / "testA", Path(data) / "testB"]
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise DataError(f"{', '.join(missing)} not found: --data needs testA/ and testB/ (or drop --data to use "
                            "the run's own held-out images)")
        return (heldout_from_test_folder(folders[0], train.seed, "A"),
                heldout_from_test_folder(folders[1], train.seed, "B"), f"{data}/testA, testB")
    if not train.domain_a or not train.domain_b:  # an imported official run: no training folders recorded
        raise DataError("this run records no training folders to take held-out images from (an imported "
                        "model?); pass --data DIR with testA/ and testB/")
    _, held_a = heldout_for(train, "A", find_images(train.domain_a, label="domain A folder"))
    _, held_b = heldout_for(train, "B", find_images(train.domain_b, label="domain B folder"))
    held_out = (train.test_a and train.test_b) or train.eval_every > 0
    note = "the run's held-out images" if held_out else "the run's training images (it holds none out)"
    return held_a, held_b, note


def mark_made(folder: Path, command: str) -> None:
    """Record in ``folder`` that ``cyclegan COMMAND`` made it, so that a later ``--overwrite`` of the
    same command may replace it. Written first, so a folder left half-made can be replaced too."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MADE_BY).write_text(command + "\n")


def check_replaceable(folder: Path, command: str) -> None:
    """Refuse to let ``--overwrite`` delete ``folder`` unless ``cyclegan COMMAND`` made it: a dataset
    of one's own photos, or a trained run, is never deleted by a command that merely shares its name."""
    try:
        made_by = (folder / MADE_BY).read_text().strip()
    except OSError:
        made_by = None
    if made_by != command:
        raise DataError(f"{folder} was not made by `cyclegan {command}` (it has no {MADE_BY} saying so), so "
                        "--overwrite will not delete it; choose another --out, or move it away yourself")
