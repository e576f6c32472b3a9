"""The Translate tab: upload images or short videos, translate them with a trained run, download the results.

Every upload is size-checked and decoded before a model sees it (one bad file is reported, never
fatal); models sit in a small LRU cache and translations run under a concurrency limit, so parallel
users cannot exhaust memory. A video (mp4, webm, mov) is translated with statistics shared over its
frames (translate/video.py) into an H.264 mp4 the gallery plays; it needs the ``video`` extra.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from .. import runfolder
from ..errors import CheckpointError, ConfigError, CycleGANError, DataError
from ..images import has_alpha, to_rgb
from ..translate.translator import DEFAULT_MAX_PIXELS, Translator, missing_direction_hint
from ..translate.video import translate_video
from ..video import OUTPUT_SUFFIX, is_video, probe
from .catalog import RunCatalog, hide_server_paths
from .common import describe_run, escape, run_choices, runs_notice, user_error

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger(__name__)
# The Translator tiles an image above DEFAULT_MAX_PIXELS; full size below that is one pass.
TILED_ABOVE = f"{DEFAULT_MAX_PIXELS / 1e6:.1f} MP ({round(DEFAULT_MAX_PIXELS ** 0.5)}x{round(DEFAULT_MAX_PIXELS ** 0.5)})"

DIRECTION_CHOICES = [("A → B", "AtoB"), ("B → A", "BtoA"), ("both", "both")]
_OPPOSITE = {"AtoB": "BtoA", "BtoA": "AtoB"}
_ARROW = {"AtoB": "A→B", "BtoA": "B→A"}
_WORK_MAX_AGE_S = 3600.0
MAX_VIDEO_FRAMES = 300  # what "a short video" means here: 10 s at 30 frames/s; longer ones go to `cyclegan translate`


def parse_weights(choice: str) -> tuple[bool, int | None]:
    """The Weights menu's choice as (best, epoch): "latest", "best" or "epoch K" (a kept epoch)."""
    if choice in ("latest", "best"):
        return choice == "best", None
    name, _, number = str(choice).partition(" ")
    if name == "epoch" and number.isdigit():
        return False, int(number)
    raise ConfigError(f"weights must be latest, best or 'epoch K' (a kept epoch), got {choice!r}")


def weights_choices(run_dir: Path, has_best: bool) -> list[str]:
    """What the Weights menu offers for a run: latest, best (once there is one) and each kept epoch."""
    return ["latest"] + (["best"] if has_best else []) + [f"epoch {k}" for k in runfolder.kept_epochs(run_dir)]


def load_translator(run_dir: Path, weights: str, device: str) -> Translator:
    """The ``ModelCache`` loader: a run's generators (``weights`` as the menu names them) on ``device``."""
    log.info("loading %s (%s weights)", run_dir, weights)
    best, epoch = parse_weights(weights)
    return Translator.from_run(run_dir, device=device, best=best, epoch=epoch)


class ModelCache:
    """Translators loaded once and kept, at most ``capacity`` of them, least recently used evicted.

    Keyed by run folder and weights (latest, best or a kept epoch); an entry whose weight files changed on disk
    (a run trained further) is reloaded. Concurrent requests for one model load it once.
    """

    def __init__(self, capacity: int, loader: Callable[[Path, str], Any]) -> None:
        if capacity < 1:
            raise ConfigError(f"the model cache needs room for at least 1 model, got {capacity}")
        self.capacity = capacity
        self._loader = loader
        self._entries: OrderedDict[tuple[str, str], tuple[tuple, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self.loads = 0

    @staticmethod
    def _signature(run_dir: Path, weights: str) -> tuple:
        best, epoch = parse_weights(weights)
        stamps = []
        for name in runfolder.GENERATORS:
            try:
                st = runfolder.generator_path(run_dir, name, best, epoch).stat()
                stamps.append((st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def _cached(self, key: tuple[str, str], signature: tuple) -> Any | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == signature:
            self._entries.move_to_end(key)
            return entry[1]
        return None

    def get(self, run_dir: Path, weights: str) -> Any:
        key = (str(Path(run_dir).resolve()), weights)
        signature = self._signature(Path(run_dir), weights)
        with self._lock:
            model = self._cached(key, signature)
            if model is not None:
                return model
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:
            with self._lock:
                model = self._cached(key, signature)  # loaded by another request while we waited
                if model is not None:
                    return model
            model = self._loader(Path(run_dir), weights)
            with self._lock:
                self._entries[key] = (signature, model)
                self._entries.move_to_end(key)
                self.loads += 1
                while len(self._entries) > self.capacity:
                    evicted, _ = self._entries.popitem(last=False)
                    log.info("model cache full: unloaded %s", evicted)
            return model

    def keys(self) -> list[tuple[str, bool]]:
        with self._lock:
            return list(self._entries)


@dataclass
class UploadLimits:
    max_bytes: int
    max_pixels: int
    max_side: int


def open_upload(path: Path, limits: UploadLimits, resize: bool = True) -> tuple[Image.Image, str | None]:
    """An uploaded file as an RGB (or RGBA) image, shrunk to ``max_side`` when ``resize``, and a note if it was.

    Raises DataError naming the file for empty, oversized, non-image or truncated uploads; the
    pixel count is checked from the header before anything is decoded. Transparency is kept (the
    translator carries it over to the result); EXIF rotation is applied.
    """
    name = path.name
    check_upload_bytes(path, limits)
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > limits.max_pixels:
                raise DataError(f"{name} is {w}x{h} ({w * h / 1e6:.0f} megapixels), over the "
                                f"{limits.max_pixels / 1e6:.0f} megapixel limit; downscale it first")
            img.load()
            img = ImageOps.exif_transpose(img)
            image = img.convert("RGBA") if has_alpha(img) else to_rgb(img)
    except UnidentifiedImageError:
        raise DataError(f"{name} is not an image (expected PNG, JPEG, WebP, BMP, TIFF...)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{name} is truncated or corrupt ({exc}); upload it again") from None
    w, h = image.size
    if max(w, h) <= limits.max_side:
        return image, None
    if not resize:
        tiles = f"in tiles, being over {TILED_ABOVE}" if w * h > DEFAULT_MAX_PIXELS else "in one pass"
        return image, f"{name}: translated at full size {w}x{h} ({tiles})"
    image.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    return image, f"{name}: resized from {w}x{h} to {image.width}x{image.height} (max side {limits.max_side} px)"


def check_upload_bytes(path: Path, limits: UploadLimits) -> None:
    """Refuse an empty upload or one over the size limit, naming it, before anything decodes it."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{path.name} could not be read ({exc}); upload it again") from None
    if size == 0:
        raise DataError(f"{path.name} is empty (0 bytes); upload an image or video file")
    if size > limits.max_bytes:
        raise DataError(f"{path.name} is {size / 2**20:.1f} MB, over the {limits.max_bytes / 2**20:.0f} MB upload "
                        "limit; upload a smaller file")


@dataclass
class BatchResult:
    """What one Translate click produced: gallery rows, files to download, notes and failures."""

    gallery: list[tuple[str, str]] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    columns: int = 2


def translate_uploads(translator: Translator, files: Sequence[str | Path],
                      directions: Sequence[str], cycle: bool, limits: UploadLimits, out_dir: Path,
                      full_size: bool = False) -> BatchResult:
    """Translate each uploaded file in each direction (and back, with ``cycle``) into PNGs in ``out_dir``;
    videos into mp4s (not back: the reconstruction is for checking a model on images).

    A file that cannot be used is recorded in ``failures`` and the others go on.
    """
    result = BatchResult(columns=1 + len(directions) * (2 if cycle else 1))
    results: list[Path] = []
    used_stems: set[str] = set()
    for i, file in enumerate(files):
        path = Path(file)
        if is_video(path):
            if cycle:
                result.notes.append(f"{path.name}: the cycle reconstruction is made for images only")
            try:
                results += _translate_clip(translator, path, _unique_stem(path.stem, used_stems, i), directions,
                                           limits, out_dir, full_size, result)
            except CycleGANError as exc:
                result.failures.append(hide_server_paths(str(exc)))
            continue
        try:
            image, note = open_upload(path, limits, resize=not full_size)
        except DataError as exc:
            result.failures.append(hide_server_paths(str(exc)))
            continue
        if note:
            result.notes.append(note)
        stem = _unique_stem(path.stem, used_stems, i)
        source = out_dir / f"{stem}_input.png"
        image.save(source, format="PNG")
        result.gallery.append((str(source), f"{path.name} (input, {image.width}x{image.height})"))
        for direction in directions:
            out = translator(image, direction)
            target = out_dir / f"{stem}_{direction}.png"
            out.save(target, format="PNG")
            results.append(target)
            result.gallery.append((str(target), f"{path.name} {_ARROW[direction]}"))
            if cycle:
                back = translator(out, _OPPOSITE[direction])
                target = out_dir / f"{stem}_{direction}_cycle.png"
                back.save(target, format="PNG")
                results.append(target)
                result.gallery.append((str(target), f"{path.name} {_ARROW[direction]} and back"))
    result.downloads = [str(p) for p in results]
    if len(results) > 1:
        result.downloads.append(str(_zip(results, out_dir / "cyclegan_results.zip")))
    return result


def _translate_clip(translator: Translator, path: Path, stem: str, directions: Sequence[str], limits: UploadLimits,
                    out_dir: Path, full_size: bool, result: BatchResult) -> list[Path]:
    """One uploaded video: checked (bytes, frame count, frame size), shown, translated each way into mp4s."""
    check_upload_bytes(path, limits)
    info = probe(path, count_frames=True)  # counted, not taken from the header, which may say anything
    if info.frames > MAX_VIDEO_FRAMES:
        raise DataError(f"{path.name} has {info.frames} frames, over the app's {MAX_VIDEO_FRAMES} (a short clip); "
                        "translate longer videos with `cyclegan translate`")
    w, h = info.width, info.height
    if w * h > limits.max_pixels:
        raise DataError(f"{path.name} is {w}x{h} ({w * h / 1e6:.0f} megapixels a frame), over the "
                        f"{limits.max_pixels / 1e6:.0f} megapixel limit; downscale it first")
    size = None
    if max(w, h) > limits.max_side and not full_size:
        size = round(min(w, h) * limits.max_side / max(w, h))
        result.notes.append(f"{path.name}: frames resized from {w}x{h} (max side {limits.max_side} px)")
    source = out_dir / f"{stem}_input{path.suffix.lower()}"
    shutil.copyfile(path, source)
    result.gallery.append((str(source), f"{path.name} (input, {w}x{h}, {info.frames} frames)"))
    outputs = []
    for direction in directions:
        target = out_dir / f"{stem}_{direction}{OUTPUT_SUFFIX}"
        translate_video(translator, path, target, direction, size=size)
        outputs.append(target)
        result.gallery.append((str(target), f"{path.name} {_ARROW[direction]}"))
    return outputs


def _unique_stem(stem: str, used: set[str], index: int) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60] or "image"
    if stem in used:
        stem = f"{stem}_{index}"
    used.add(stem)
    return stem


def _zip(files: list[Path], target: Path) -> Path:
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for path in files:
            archive.write(path, arcname=path.name)
    tmp.replace(target)
    return target


def sweep_old(root: Path, max_age_s: float = _WORK_MAX_AGE_S) -> None:
    """Remove per-request output folders older than ``max_age_s`` (Gradio keeps its own copies)."""
    cutoff = time.time() - max_age_s
    for entry in root.glob("request-*"):
        try:
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


class TranslateHandlers:
    """The tab's handlers: plain values in and out, so they are tested without a server.

    ``work`` is the folder each request writes its results to (one ``request-*`` folder each).
    """

    def __init__(self, catalog: RunCatalog, models: ModelCache, limits: UploadLimits, work: Path) -> None:
        self.catalog = catalog
        self.models = models
        self.limits = limits
        self.work = work

    def weights_menu_choices(self, name: str | None) -> list[str]:
        """The Weights menu for run ``name`` (just latest when it cannot be read)."""
        if not name:
            return ["latest"]
        try:
            info = self.catalog.get(name)
        except CycleGANError:
            return ["latest"]
        return weights_choices(info.path, info.has_best) if info.usable else ["latest"]

    def weights_menu(self, name: str | None) -> Any:
        """A new run chosen: its weights on offer, latest selected."""
        import gradio as gr

        return gr.update(choices=self.weights_menu_choices(name), value="latest")

    def run_info(self, name: str | None) -> str:
        if not name:
            return ""
        try:
            return describe_run(self.catalog.get(name))
        except CycleGANError as exc:
            return escape(str(exc))

    def translate(self, run: str | None, weights: str, files: list[str] | None, direction: str,
                  cycle: bool = False, full_size: bool = False) -> tuple[list[tuple[str, str]], list[str], str]:
        """The Translate button: (gallery, downloads, status markdown); a user mistake raises gr.Error."""
        try:
            return self._translate(run, weights, files, direction, cycle, full_size)
        except CycleGANError as exc:
            raise user_error(exc) from None

    def _translate(self, run: str | None, weights: str, files: list[str] | None, direction: str, cycle: bool,
                   full_size: bool) -> tuple[list[tuple[str, str]], list[str], str]:
        if not run:
            raise ConfigError("choose a run first (none is selected)")
        if not files:
            raise DataError("upload one or more images or videos first")
        directions = {"AtoB": ["AtoB"], "BtoA": ["BtoA"], "both": ["AtoB", "BtoA"]}.get(direction)
        if directions is None:
            raise ConfigError(f"direction must be AtoB, BtoA or both, got {direction!r}")
        info = self.catalog.get(run)
        if not info.usable:
            raise CheckpointError(f"run {run!r} cannot be used: {info.reason}")
        best, epoch = parse_weights(weights)
        if best and not info.has_best:
            raise CheckpointError(f"run {run!r} has no best weights yet; choose latest")
        if epoch is not None and epoch not in runfolder.kept_epochs(info.path):
            raise CheckpointError(f"run {run!r} keeps no generators of epoch {epoch}; choose one the Weights menu "
                                  "offers (train with --keep-epochs to keep more)")
        translator = self.models.get(info.path, weights)
        # A run with one direction (--one-way, a one-direction import) translates what it has and says,
        # in one line, why the rest is not there.
        absent = [d for d in directions if d not in translator.directions]
        directions = [d for d in directions if d in translator.directions]
        if not directions:
            translator.generator(absent[0])  # raises the CheckpointError that says why
        no_way_back = bool(cycle) and _OPPOSITE[directions[0]] not in translator.directions
        cycle = bool(cycle) and not no_way_back
        sweep_old(self.work)
        out_dir = Path(tempfile.mkdtemp(prefix="request-", dir=self.work))
        files = [str(f) for f in files]
        batch = translate_uploads(translator, files, directions, cycle, self.limits, out_dir, bool(full_size))
        if absent or no_way_back:
            missing = absent[0] if absent else _OPPOSITE[directions[0]]
            what = missing if absent else f"the way back ({missing})"
            batch.notes.insert(0, f"{what}: not made: {run!r} has no {missing} generator"
                                  f"{missing_direction_hint(translator.config, run, missing)}")
        if not batch.downloads:
            raise DataError("; ".join(batch.failures) or "nothing was translated")
        size_rule = (f"at full size (those over {TILED_ABOVE} in tiles)" if full_size else
                     f"resized to at most {self.limits.max_side} px on a side")
        lines = [f"Translated {len(files) - len(batch.failures)} of {len(files)} file(s) with `{run}` "
                 f"({weights} weights), {size_rule}."]
        lines += [f"- {escape(n)}" for n in batch.notes]
        lines += [f"- **not translated:** {escape(f)}" for f in batch.failures]
        return batch.gallery, batch.downloads, "\n".join(lines)


@dataclass
class TranslateTab:
    """The tab's components that are updated from outside it: the run lists and their Refresh button."""

    run: gr.Dropdown
    no_runs: gr.Markdown
    refresh: gr.Button


def build(handlers: TranslateHandlers, max_upload_mb: float, concurrency: int) -> TranslateTab:
    """The Translate tab, wired to ``handlers``; at most ``concurrency`` translations run at once."""
    import gradio as gr

    max_side = handlers.limits.max_side
    usable = run_choices(handlers.catalog, usable_only=True)
    first = usable[0][1] if usable else None
    with gr.Tab("Translate", id="translate"):
        notice = runs_notice(handlers.catalog, bool(usable))
        no_runs = gr.Markdown(notice, visible=bool(notice), elem_id="no-runs")
        with gr.Row():
            # Custom values let API clients name runs made after the page loaded; the name is
            # checked by safe_child either way.
            run = gr.Dropdown(usable, value=first, label="Run", visible=bool(usable), scale=5,
                              allow_custom_value=True, elem_id="run-select",
                              info="run folders under the checkpoints folder")
            refresh = gr.Button("Refresh runs", scale=1, size="sm")
        info = gr.Markdown(handlers.run_info(first), elem_id="run-info")
        with gr.Row():
            # Custom values let API clients name a kept epoch ("epoch 7") the page has not listed.
            weights = gr.Dropdown(handlers.weights_menu_choices(first), value="latest",
                                  label="Weights", allow_custom_value=True, elem_id="weights-select",
                                  info="latest, the best epoch, or a kept epoch (--keep-epochs)")
            direction = gr.Radio(DIRECTION_CHOICES, value="AtoB", label="Direction")
            with gr.Column():
                cycle = gr.Checkbox(False, label="Also show the cycle reconstruction (translated back)")
                full_size = gr.Checkbox(False, label=f"Translate images larger than {max_side} px at full "
                                        f"size instead of resizing them (slower; those over {TILED_ABOVE} "
                                        "in tiles)")
        uploads = gr.File(file_count="multiple", label=f"Images or short videos (mp4, webm, mov; at most "
                          f"{MAX_VIDEO_FRAMES} frames): one or many, at most {max_upload_mb:g} MB each; larger than "
                          f"{max_side} px on a side are resized to {max_side} px unless full size is ticked",
                          elem_id="uploads")
        go = gr.Button("Translate", variant="primary", elem_id="translate-button")
        status = gr.Markdown(elem_id="translate-status")
        gallery = gr.Gallery(label="Each input, then its results", columns=2, format="png",
                             elem_id="results", object_fit="contain", height="auto")
        downloads = gr.File(label="Download: each result as PNG (videos as mp4), all as a zip", file_count="multiple",
                            interactive=False, elem_id="downloads")
    go.click(handlers.translate, [run, weights, uploads, direction, cycle, full_size], [gallery, downloads, status],
             api_name="translate", concurrency_limit=concurrency, concurrency_id="translate")
    run.change(handlers.run_info, run, info, api_name=False, concurrency_limit=None)
    run.change(handlers.weights_menu, run, weights, api_name=False, concurrency_limit=None)
    return TranslateTab(run=run, no_runs=no_runs, refresh=refresh)
