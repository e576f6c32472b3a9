"""Translating a folder (or one file) of images into another folder: the batch pipeline.

Decoding and encoding run in worker threads while the model runs; images of equal size are
batched; an output that exists is never overwritten unless asked; every file that cannot be
translated is reported with the reason, and the others go on; a full disk stops the run (every
output after it would fail too), keeping the outputs written so far. Video files are translated
after the images, one clip at a time (video.py), under the same rules.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import runfolder
from ..data.folders import candidate_files
from ..errors import ConfigError, CycleGANError, DataError, DiskFullError
from ..images import FORMATS, Picture, encode, read_picture
from ..video import OUTPUT_SUFFIX, check_output_suffix, is_video, require_av
from .video import check_stats, translate_video

if TYPE_CHECKING:  # the translator uses this module, not the other way round
    from .translator import Translator

log = logging.getLogger(__name__)


def stack_batch(images: list[torch.Tensor]) -> torch.Tensor:
    """A batch of equal-sized images; a single one as a view, not a copy (it may be a 24-megapixel photo)."""
    return images[0][None] if len(images) == 1 else torch.stack(images)


@dataclass
class FolderSummary:
    """What ``translate_folder`` did, counted per input image."""

    translated: int = 0
    skipped: int = 0  # every requested output already existed
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    def line(self, output: str | Path) -> str:
        rate = self.translated / self.seconds if self.seconds > 0 else 0.0
        return (f"translated {self.translated}, skipped (exists) {self.skipped}, failed {len(self.failed)} "
                f"in {self.seconds:.1f}s ({rate:.2f} images/s) -> {output}")


@dataclass
class FolderOptions:
    directions: tuple[str, ...]
    overwrite: bool
    size: int | None
    batch_size: int
    image_format: str
    cycle: bool
    workers: int
    progress: bool
    video_stats: str = "shared"  # instance-norm statistics of a video's frames: shared or per-frame

    def check(self) -> None:
        check_stats(self.video_stats)
        if self.image_format not in FORMATS:
            raise ConfigError(f"output format must be one of {', '.join(FORMATS)}, got {self.image_format!r}")
        if self.batch_size < 1 or self.workers < 1:
            raise ConfigError(f"batch size and workers must be 1 or more, got {self.batch_size} and {self.workers}")
        if self.size is not None and self.size < 1:
            raise ConfigError(f"--size must be a positive number of pixels, got {self.size}")


@dataclass
class _Job:
    """One input image and the outputs still to write for it: direction -> (translation, reconstruction)."""

    source: Path
    outputs: dict[str, tuple[Path, Path | None]]


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder)


def list_inputs(input_path: Path, output_dir: Path) -> list[tuple[Path, Path]]:
    """(file, path relative to the input) for one image or every file under a folder, outputs left out."""
    if not input_path.exists():
        raise DataError(f"input {input_path} does not exist; check the path")
    if input_path.is_file():
        return [(input_path, Path(input_path.name))]
    output = output_dir.resolve()
    if output == input_path.resolve():
        raise DataError(f"--output {output_dir} is the input folder; choose another folder so that no "
                        "original can be replaced")
    files = [f for f in candidate_files(input_path) if not _inside(f, output)]
    if not files:
        raise DataError(f"input folder {input_path} is empty; put images in it (searched recursively)")
    return [(f, f.relative_to(input_path)) for f in files]


def output_names(relatives: list[Path], suffix: str) -> list[Path]:
    """Output names mirroring ``relatives`` with ``suffix``; inputs that would collide keep their own suffix too.

    ``a.jpg`` and ``a.png`` both become ``a.png`` otherwise, and one would be lost.
    """
    plain = [rel.with_suffix(suffix) for rel in relatives]
    seen: dict[Path, int] = defaultdict(int)
    for name in plain:
        seen[name] += 1
    return [rel.with_name(rel.name + suffix) if seen[name] > 1 else name for rel, name in zip(relatives, plain)]


def plan_jobs(input_path: Path, output_dir: Path, options: FolderOptions) -> tuple[list[_Job], int]:
    """The jobs to run and how many images are skipped because all their outputs exist."""
    one_video = input_path.is_file() and is_video(input_path)
    if one_video:
        require_av(input_path)  # one clip and no PyAV: a one-line error, not a failed-files report
    named_file = one_video and is_video(output_dir)  # `--input clip.mp4 --output out.mp4`
    if named_file:
        check_output_suffix(output_dir)
        if len(options.directions) > 1:
            raise ConfigError(f"--direction both writes two videos; pass an output folder instead of {output_dir}")
    elif output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"--output {output_dir} is a file; pass a folder")
    inputs = list_inputs(input_path, output_dir)
    suffix = FORMATS[options.image_format][1]
    names: dict[int, Path] = {}
    for videos, kind_suffix in ((False, suffix), (True, OUTPUT_SUFFIX)):
        indices = [i for i, (source, _) in enumerate(inputs) if is_video(source) == videos]
        names.update(zip(indices, output_names([inputs[i][1] for i in indices], kind_suffix)))
    jobs, skipped = [], 0
    sources = {source.resolve() for source, _ in inputs}
    for i, (source, _) in enumerate(inputs):
        outputs = {}
        for direction in options.directions:
            folder = output_dir / direction if len(options.directions) > 1 else output_dir
            target = output_dir if named_file else folder / names[i]
            # a video's reconstruction is not written: --cycle is for checking a model on images
            rec = target.with_name(f"{target.stem}.cycle{suffix}") if options.cycle and not is_video(source) else None
            for path in (target, rec):
                if path is not None and path.resolve() in sources:
                    raise DataError(f"the output {path} would replace an input of this translation; choose another "
                                    "--output so that no original can be lost")
            if options.overwrite or not target.exists() or (rec is not None and not rec.exists()):
                outputs[direction] = (target, rec)
        if outputs:
            jobs.append(_Job(source, outputs))
        else:
            skipped += 1
    return jobs, skipped


def _ordered_results(pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Iterable[Any],
                     window: int) -> Iterator[tuple[Any, Any]]:
    """(item, fn(item) or the exception it raised), in order, with at most ``window`` running ahead."""
    pending: deque[tuple[Any, Future]] = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= window:
            yield _result(*pending.popleft())
    while pending:
        yield _result(*pending.popleft())


def _result(item: Any, future: Future) -> tuple[Any, Any]:
    try:
        return item, future.result()
    except CycleGANError as exc:
        return item, exc


class _FolderRun:
    """One ``translate_folder`` call: decode ahead in threads, batch by size, translate, save in threads."""

    def __init__(self, translator: "Translator", options: FolderOptions) -> None:
        self.translator, self.options = translator, options
        self.summary = FolderSummary()
        self.saves: deque[tuple[_Job, Future]] = deque()
        self.alpha_dropped = 0
        self.bar: Any = None

    def run(self, input_path: Path, output_dir: Path) -> FolderSummary:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        start = time.perf_counter()
        jobs, self.summary.skipped = plan_jobs(input_path, output_dir, self.options)
        if self.summary.skipped:
            log.info("%d image(s) already translated in %s; skipped (use --overwrite to redo them)",
                     self.summary.skipped, output_dir)
        redirect = logging_redirect_tqdm() if self.options.progress else nullcontext()
        with ThreadPoolExecutor(self.options.workers) as pool, redirect, \
                tqdm(total=len(jobs), unit="img", disable=not self.options.progress, desc="translating") as bar:
            self.pool, self.bar = pool, bar
            self._translate_all([job for job in jobs if not is_video(job.source)])
            while self.saves:
                self._finish_save()
            for job in jobs:
                if is_video(job.source):
                    self._translate_video(job)
        if self.alpha_dropped:
            log.warning("%d image(s) had transparency, which JPEG cannot store; use --format png or webp to keep it",
                        self.alpha_dropped)
        self.summary.seconds = time.perf_counter() - start
        return self.summary

    def _decode(self, job: _Job) -> Picture:
        # both directions read the input alike: Translator.translate_folder refuses "both" when the
        # two domains' channel counts differ
        direction = next(iter(job.outputs))
        return read_picture(job.source, self.translator.input_channels(direction), self.options.size)

    def _translate_all(self, jobs: list[_Job]) -> None:
        """Group decoded images by size into batches; flush the fullest group when too many wait."""
        batch_size, window = self.options.batch_size, 2 * self.options.batch_size + self.options.workers
        groups: dict[tuple[int, ...], list[tuple[_Job, Picture]]] = defaultdict(list)
        waiting = 0
        for job, picture in _ordered_results(self.pool, self._decode, jobs, window):
            if isinstance(picture, CycleGANError):
                self._fail(job, picture)
                continue
            h, w, _ = picture.pixels.shape
            group = groups[(h, w)]
            group.append((job, picture))
            waiting += 1
            if len(group) >= min(batch_size, max(1, self.translator.max_pixels // (h * w))):
                waiting -= len(group)
                self._translate_batch(groups.pop((h, w)))
            elif waiting > 4 * batch_size:
                fullest = max(groups, key=lambda key: len(groups[key]))
                waiting -= len(groups[fullest])
                self._translate_batch(groups.pop(fullest))
        for group in groups.values():
            self._translate_batch(group)

    def _translate_batch(self, items: list[tuple[_Job, Picture]]) -> None:
        """Translate equal-sized images together; if the batch fails, retry them one by one."""
        results: dict[int, dict[Path, torch.Tensor]] = {i: {} for i in range(len(items))}
        try:
            for direction in self.options.directions:
                members = [i for i, (job, _) in enumerate(items) if direction in job.outputs]
                if not members:
                    continue
                batch = stack_batch([items[i][1].pixels for i in members])
                outs, recs = self.translator.translate_pixels(batch, direction, self.options.cycle)
                for k, i in enumerate(members):
                    target, rec_target = items[i][0].outputs[direction]
                    results[i][target] = outs[k]
                    if recs is not None:
                        results[i][rec_target] = recs[k]
        except RuntimeError as exc:  # out of memory and the like: isolate the image at fault
            if len(items) == 1:
                self._fail(items[0][0], exc)
                return
            log.warning("a batch of %d failed (%s); translating them one at a time", len(items), exc)
            for item in items:
                self._translate_batch([item])
            return
        for i, (job, picture) in enumerate(items):
            self._save(job, picture, results[i])

    def _translate_video(self, job: _Job) -> None:
        """One clip, each direction, in batches of frames (translate/video.py); a failure is reported as for images."""
        try:
            for direction, (target, _) in job.outputs.items():
                translate_video(self.translator, job.source, target, direction, stats=self.options.video_stats,
                                size=self.options.size, batch_size=self.options.batch_size,
                                progress=self.options.progress)
        except (CycleGANError, RuntimeError) as exc:  # RuntimeError: out of memory and the like
            self._fail(job, exc)
            return
        self.summary.translated += 1
        self.bar.update(1)

    def _save(self, job: _Job, picture: Picture, outputs: dict[Path, torch.Tensor]) -> None:
        if picture.alpha is not None and not FORMATS[self.options.image_format][3]:
            self.alpha_dropped += 1
        self.saves.append((job, self.pool.submit(self._write, picture, outputs)))
        while len(self.saves) > 2 * self.options.workers:
            self._finish_save()

    def _write(self, picture: Picture, outputs: dict[Path, torch.Tensor]) -> None:
        for target, pixels in outputs.items():
            try:
                data = encode(pixels.numpy(), picture.alpha, picture.icc, self.options.image_format)
                runfolder.atomic_write_bytes(target, data)
            except (OSError, ValueError) as exc:  # disk full, permissions, a size the format cannot hold
                raise DataError(f"cannot write {target} ({exc})") from None

    def _finish_save(self) -> None:
        job, future = self.saves.popleft()
        try:
            future.result()
        except CycleGANError as exc:
            self._fail(job, exc)
            return
        self.summary.translated += 1
        self.bar.update(1)

    def _fail(self, job: _Job, exc: Exception) -> None:
        if isinstance(exc, DiskFullError):  # every output after it would fail alike: stop, with one line
            raise exc
        reason = str(exc)
        log.warning("not translated: %s", reason if str(job.source) in reason else f"{job.source}: {reason}")
        self.summary.failed.append((job.source, reason))
        self.bar.update(1)


def run_folder(translator: "Translator", options: FolderOptions, input_path: Path, output_dir: Path) -> FolderSummary:
    """Translate ``input_path`` (a file or a folder) into ``output_dir`` with checked ``options``."""
    return _FolderRun(translator, options).run(input_path, output_dir)
