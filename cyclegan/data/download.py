"""The standard CycleGAN datasets, one command each: a resumable, checked download and a safe extraction.

The names are those the official code publishes (junyanz/pytorch-CycleGAN-and-pix2pix,
``datasets/download_cyclegan_dataset.sh``); the files live under one base URL, laid out as the
official server lays them out (``BASE/datasets/NAME.zip``, ``BASE/pretrained_models/NAME.pth``),
so a mirror copies that tree and is named with ``--base-url`` or ``$CYCLEGAN_DOWNLOAD_URL``.

``fetch`` downloads any file: into ``NAME.part`` beside the target, resumed with an HTTP Range
request after a dropped connection (with If-Range, so a file that changed on the server starts
over instead of being spliced from two versions) (a few times on its own, and again by running the same command
later), its size checked against what the server announced and the catalogue's size and SHA-256
where they are known, and only then renamed to its final name. ``download_dataset`` then extracts
the zip into a temporary folder in the same place, refusing any member that would land outside it
(an absolute path, ``..``, a link), and renames it into place; an existing dataset is replaced only
with ``overwrite``, and only one that this command made (folders.MADE_BY). A damaged archive leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError, DiskFullError, DownloadError
from .folders import check_replaceable, mark_made

log = logging.getLogger(__name__)

BASE_URL_ENV = "CYCLEGAN_DOWNLOAD_URL"
DEFAULT_BASE_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan"
DOWNLOADS = ".download"  # the folder, beside the datasets or runs, that holds downloads until they are used
RETRIES = 3  # resumptions after a dropped connection, within one command
RETRY_WAIT = 1.0  # seconds before the first resumption (doubling)
TIMEOUT = 30.0  # seconds without a byte before a connection counts as dropped
MAX_BYTES = 8 << 30  # no file the catalogue names comes near this; a larger body is refused, announced or not
_CHUNK = 1 << 20
_SPLITS = ("trainA", "trainB", "testA", "testB")
DATASET_COMMAND = "download dataset"  # the command whose --overwrite may replace a folder it made


@dataclass(frozen=True)
class Entry:
    """A file the official server publishes; ``size`` (bytes) and ``sha256`` are checked where known."""

    name: str
    about: str
    size: int | None = None
    sha256: str | None = None


DATASETS = {e.name: e for e in (
    Entry("apple2orange", "apples and oranges (ImageNet)"),
    Entry("summer2winter_yosemite", "Yosemite in summer and in winter (Flickr)"),
    Entry("horse2zebra", "horses and zebras (ImageNet)"),
    Entry("monet2photo", "Monet paintings and landscape photos (Flickr)"),
    Entry("cezanne2photo", "Cezanne paintings and landscape photos"),
    Entry("ukiyoe2photo", "Ukiyo-e prints and landscape photos"),
    Entry("vangogh2photo", "Van Gogh paintings and landscape photos"),
    Entry("maps", "aerial photos and Google Maps tiles of New York"),
    Entry("cityscapes", "street photos and their semantic label maps (Cityscapes)"),
    Entry("facades", "building facades and their labels (CMP Facades)"),
    Entry("iphone2dslr_flower", "flower photos from phones and from DSLRs (shallow depth of field)"),
    Entry("ae_photos", "a few test photos for the painting-style models"),
)}


def base_url(explicit: str | None = None) -> str:
    """``explicit`` (``--base-url``), else ``$CYCLEGAN_DOWNLOAD_URL``, else the official server."""
    return (explicit or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


def dataset_url(name: str, base: str | None = None) -> str:
    return f"{base_url(base)}/datasets/{name}.zip"


def lookup(catalogue: dict[str, Entry], name: str, what: str) -> Entry:
    """The catalogue entry for ``name``; an error listing the names there are."""
    if name not in catalogue:
        raise DownloadError(f"no {what} called {name!r}; there are: {', '.join(catalogue)} "
                            "(`cyclegan download list`)")
    return catalogue[name]


class _Dropped(Exception):
    """The connection ended before the whole file arrived: resume it."""


class _TooLarge(Exception):
    """More bytes arrived than a download may be."""


def _validator_path(part: Path) -> Path:
    """Beside ``NAME.part``: the server's ETag / Last-Modified and size when the download began."""
    return part.with_name(part.name + ".json")


def _read_validator(part: Path) -> dict:
    try:
        data = json.loads(_validator_path(part).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_validator(part: Path, headers: Any, total: int | None) -> None:
    values = {"etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified"), "total": total}
    try:
        _validator_path(part).write_text(json.dumps({k: v for k, v in values.items() if v is not None}))
    except OSError as exc:
        raise DiskFullError.of(exc, _validator_path(part)) or DownloadError(
            f"cannot write {_validator_path(part)} ({exc})") from None


def fetch(url: str, dest: str | Path, *, size: int | None = None, sha256: str | None = None,
          progress: bool = True, hint: str = "") -> Path:
    """Download ``url`` to ``dest`` (via ``dest.part``, resumed where an earlier attempt stopped).

    The file is renamed to ``dest`` only once its size matches what the server announced (and
    ``size`` and ``sha256`` when given); a file that does not match is deleted. A ``dest`` that
    exists already is such a checked file and is used as it is. ``hint`` ends every error message:
    how to place the file by hand.
    """
    dest = Path(dest)
    if dest.is_file():
        log.info("using %s, downloaded earlier", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    suffix = f"; {hint}" if hint else ""
    for attempt in range(RETRIES + 1):
        try:
            total = _transfer(url, part, progress, suffix)
            break
        except DownloadError:
            if not part.exists():  # nothing arrived: leave no empty downloads folder
                discard_download(part)
            raise
        except _Dropped as exc:
            if attempt == RETRIES:
                raise DownloadError(f"download of {url} stopped at {_size(part)} bytes ({exc}); run the same "
                                    f"command again to resume it{suffix}") from None
            wait = RETRY_WAIT * 2**attempt
            log.warning("download of %s stopped at %d bytes (%s); resuming in %.0f s", url, _size(part), exc, wait)
            time.sleep(wait)
    got = _size(part)
    for expected, source in ((total, "the server announced"), (size, "the catalogue expects")):
        if expected is not None and got != expected:
            discard_download(part)
            raise DownloadError(f"{url} gave {got} bytes where {source} {expected}; deleted it, run the command "
                                f"again{suffix}")
    if sha256 is not None:
        digest = _sha256(part)
        if digest != sha256.lower():
            discard_download(part)
            raise DownloadError(f"{url} has SHA-256 {digest}, expected {sha256}: a damaged or different file; "
                                f"deleted it{suffix}")
    os.replace(part, dest)
    _validator_path(part).unlink(missing_ok=True)
    return dest


def _transfer(url: str, part: Path, progress: bool, suffix: str) -> int | None:
    """Append the rest of ``url`` to ``part``; the file's full size when the server says it."""
    from tqdm import tqdm

    offset = _size(part)
    headers = {"User-Agent": "cyclegan", "Accept-Encoding": "identity"}
    known = _read_validator(part) if offset else {}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        # the rest only if the file is still the one the .part began: a server whose file changed
        # answers If-Range with the whole new file, never the new file's tail after the old one's head
        validator = known.get("etag") if not str(known.get("etag", "")).startswith("W/") else None
        validator = validator or known.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part is whole, or the file changed
            total = _range_total(exc.headers.get("Content-Range", ""))
            if total == offset:
                return total
            part.unlink()
            return _transfer(url, part, progress, suffix)
        raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}{suffix}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"cannot download {url}: {reason}{suffix}") from None
    with response:
        length = response.headers.get("Content-Length")
        if offset and response.status == 206:
            match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", "").strip())
            if not match or int(match.group(1)) != offset:
                log.info("the server sent another range than asked; starting %s over", url)
                part.unlink()
                return _transfer(url, part, progress, suffix)
            total = int(match.group(2)) if match.group(2) != "*" else None
            if total is not None and known.get("total") not in (None, total):
                log.info("%s changed size since the download began; starting it over", url)
                discard_download(part)
                return _transfer(url, part, progress, suffix)
            mode = "ab"
            log.info("resuming %s at %d bytes", url, offset)
        else:
            if offset:
                log.info("the server does not resume downloads, or the file changed; starting %s over", url)
            offset, mode = 0, "wb"
            total = int(length) if length and length.isdigit() else None
            _write_validator(part, response.headers, total)
        if total is not None and total > MAX_BYTES:
            discard_download(part)
            raise DownloadError(f"{url} is {total} bytes, more than the {MAX_BYTES} a download may be{suffix}")
        try:
            with open(part, mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                               unit_divisor=1024, desc=part.name.removesuffix(".part"), leave=False,
                                               **({} if progress else {"disable": True})) as bar:  # TQDM_DISABLE too
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (http.client.HTTPException, OSError) as exc:  # reset, timeout, incomplete chunk
                        raise _Dropped(str(exc) or type(exc).__name__) from None
                    if not chunk:
                        break
                    out.write(chunk)
                    bar.update(len(chunk))
                    if out.tell() > MAX_BYTES:  # a body without Content-Length is capped too
                        raise _TooLarge()
                out.flush()
                os.fsync(out.fileno())
        except _TooLarge:
            discard_download(part)
            raise DownloadError(f"{url} sent more than the {MAX_BYTES} bytes a download may be; deleted it{suffix}") \
                from None
        except OSError as exc:  # a write failed: how much of the last chunk reached the disk is not known,
            discard_download(part)  # so the .part is not one to resume from
            raise DiskFullError.of(exc, part) or DownloadError(f"cannot write {part} ({exc}){suffix}") from None
    got = _size(part)
    if total is not None and got < total:
        raise _Dropped(f"connection closed after {got} of {total} bytes")
    return total


def _range_total(content_range: str) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", content_range.strip())
    return int(match.group(1)) if match else None


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _refusal(info: zipfile.ZipInfo) -> str:
    """Why this member may not be extracted ('' if it may)."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    if ".." in name.split("/"):
        return "a '..' path"
    if "\x00" in name:
        return "a NUL in its name"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    return ""


def safe_extract(archive: Path, folder: Path) -> None:
    """Extract zip ``archive`` into ``folder``; DataError for a damaged archive or a member that
    would land outside ``folder`` (checked for every member before anything is written)."""
    root = folder.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                why = _refusal(info)
                target = (root / info.filename.replace("\\", "/")).resolve()
                if not why and target != root and root not in target.parents:
                    why = "a path outside the folder"
                if why:
                    raise DataError(f"{archive} is refused: its member {info.filename!r} is {why}, which could "
                                    "write outside the dataset folder")
            for info in members:
                target = root / info.filename.replace("\\", "/")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        raise DataError(f"{archive} is damaged or not a zip archive ({exc}); delete it and download it "
                        "again") from None
    except OSError as exc:  # a member that is both a file and a folder, a full disk
        raise DiskFullError.of(exc, folder) or DataError(f"cannot extract {archive} ({exc})") from None


def move_into_place(new: Path, target: Path, overwrite: bool, command: str) -> None:
    """Rename folder ``new`` to ``target`` (same file system), marked as made by ``cyclegan COMMAND``;
    an existing ``target`` only with ``overwrite``, and only one that the same command made."""
    mark_made(new, command)
    if not target.exists():
        os.rename(new, target)
        return
    if not overwrite:
        raise DataError(f"{target} exists; pass --overwrite to replace it")
    check_replaceable(target, command)
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.rename(target, old / target.name)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _dataset_root(extracted: Path, archive: Path) -> Path:
    """The folder in ``extracted`` that is the dataset: the archive's one top folder (official zips
    hold NAME/trainA, ...), or ``extracted`` itself when the splits sit at the top."""
    entries = [p for p in extracted.iterdir() if p.name != "__MACOSX" and not p.name.startswith(".")]
    if not entries:
        raise DataError(f"{archive} holds no files")
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() and entries[0].name not in _SPLITS \
        else extracted
    if not any((root / s).is_dir() for s in _SPLITS):
        log.warning("%s has no trainA/, trainB/, testA/ or testB/ folder; it holds: %s", archive,
                    ", ".join(sorted(p.name for p in root.iterdir())[:8]))
    return root


def install_archive(archive: str | Path, target: str | Path, overwrite: bool = False) -> Path:
    """Extract the dataset zip ``archive`` to the folder ``target``, all or nothing."""
    archive, target = Path(archive), Path(target)
    if target.exists() and not overwrite:
        raise DataError(f"{target} exists; pass --overwrite to replace it")
    if target.exists():
        check_replaceable(target, DATASET_COMMAND)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        extracted = work / "extracted"
        extracted.mkdir()
        safe_extract(archive, extracted)
        move_into_place(_dataset_root(extracted, archive), target, overwrite, DATASET_COMMAND)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def download_dataset(name: str, out: str | Path = "datasets", *, base: str | None = None,
                     from_file: str | Path | None = None, overwrite: bool = False, progress: bool = True) -> Path:
    """Download the official dataset ``name`` (or use the zip ``from_file``) into ``out/NAME``."""
    entry = lookup(DATASETS, name, "dataset")
    out = Path(out)
    target = out / name
    if target.exists() and not overwrite:
        raise DataError(f"{target} exists; pass --overwrite to replace it")
    if target.exists():
        check_replaceable(target, DATASET_COMMAND)  # before a download that could not be used
    if from_file is not None:
        archive = Path(from_file)
        if not archive.is_file():
            raise DataError(f"{archive} does not exist; pass the dataset's zip file, e.g. {name}.zip")
        return install_archive(archive, target, overwrite)
    url = dataset_url(name, base)
    hint = (f"download it by other means and run: cyclegan download dataset {name} --from-file {name}.zip"
            + (f" --out {out}" if out != Path("datasets") else ""))
    archive = fetch(url, out / DOWNLOADS / f"{name}.zip", size=entry.size, sha256=entry.sha256, progress=progress,
                    hint=hint)
    try:
        install_archive(archive, target, overwrite)
    except DataError:
        discard_download(archive)  # a damaged download is fetched anew next time, not resumed
        raise
    discard_download(archive)
    return target


def discard_download(downloaded: Path) -> None:
    """Delete a downloaded file once used (or found bad), with its validator, and the downloads
    folder once empty."""
    downloaded.unlink(missing_ok=True)
    _validator_path(downloaded).unlink(missing_ok=True)
    if downloaded.parent.name == DOWNLOADS:
        try:
            downloaded.parent.rmdir()
        except OSError:  # other downloads are still there
            pass
