"""The Gradio web app: translate uploads with a trained run, browse runs, train from the browser.

The handlers live on ``WebApp`` and take and return plain values, so they are tested without a
server; ``build_ui`` only wires them to components. Safety rests on three things here: names from
the browser go through ``app_runs.safe_child``; every upload is size-checked and decoded before a
model sees it (one bad file is reported, never fatal); models sit in a small LRU cache and
translations run under a concurrency limit, so parallel users cannot exhaust memory.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import shutil
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from . import checkpoint as ckpt
from .app_jobs import JobStatus, TrainingJobs, preset_epochs
from .app_runs import NOT_KNOWN, RunCatalog, RunInfo, list_datasets, safe_child, sample_grids, \
    save_uploaded_dataset
from .config import PRESETS
from .data import to_rgb
from .errors import CheckpointError, ConfigError, CycleGANError, DataError
from .metrics_log import METRICS_FILE, read_metrics
from .translate import Translator

log = logging.getLogger(__name__)

DIRECTION_CHOICES = [("A → B", "AtoB"), ("B → A", "BtoA"), ("both", "both")]
_OPPOSITE = {"AtoB": "BtoA", "BtoA": "AtoB"}
_ARROW = {"AtoB": "A→B", "BtoA": "B→A"}
NO_RUNS = ("**No trained runs yet** in `{root}`. Make one with `make demo` (the synthetic shapes dataset, a few "
           "minutes on a CPU), or train on your own images in the **Train** tab; then press *Refresh runs*.")
_WORK_MAX_AGE_S = 3600.0


@dataclass
class AppSettings:
    """Everything ``cyclegan app`` / ``python app.py`` can be told."""

    checkpoints: Path = Path("checkpoints")
    datasets: Path = Path("datasets")
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    device: str = "auto"
    max_models: int = 2
    concurrency: int = 2
    queue_size: int = 64
    max_side: int = 1024
    max_upload_mb: float = 20.0
    max_megapixels: float = 40.0
    poll_seconds: float = 1.5


class ModelCache:
    """Translators loaded once and kept, at most ``capacity`` of them, least recently used evicted.

    Keyed by run folder and weights (latest/best); an entry whose weight files changed on disk
    (a run trained further) is reloaded. Concurrent requests for one model load it once.
    """

    def __init__(self, capacity: int, loader: Callable[[Path, bool], Any]) -> None:
        if capacity < 1:
            raise ConfigError(f"the model cache needs room for at least 1 model, got {capacity}")
        self.capacity = capacity
        self._loader = loader
        self._entries: OrderedDict[tuple[str, bool], tuple[tuple, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, bool], threading.Lock] = {}
        self.loads = 0

    @staticmethod
    def _signature(run_dir: Path, best: bool) -> tuple:
        stamps = []
        for name in ckpt.GENERATORS:
            try:
                st = ckpt.generator_path(run_dir, name, best).stat()
                stamps.append((st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def _cached(self, key: tuple[str, bool], signature: tuple) -> Any | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == signature:
            self._entries.move_to_end(key)
            return entry[1]
        return None

    def get(self, run_dir: Path, best: bool) -> Any:
        key = (str(Path(run_dir).resolve()), bool(best))
        signature = self._signature(Path(run_dir), best)
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
            model = self._loader(Path(run_dir), best)
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
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{name} could not be read ({exc}); upload it again") from None
    if size == 0:
        raise DataError(f"{name} is empty (0 bytes); upload an image file")
    if size > limits.max_bytes:
        raise DataError(f"{name} is {size / 2**20:.1f} MB, over the {limits.max_bytes / 2**20:.0f} MB upload limit; "
                        "upload a smaller file")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > limits.max_pixels:
                raise DataError(f"{name} is {w}x{h} ({w * h / 1e6:.0f} megapixels), over the "
                                f"{limits.max_pixels / 1e6:.0f} megapixel limit; downscale it first")
            img.load()
            img = ImageOps.exif_transpose(img)
            has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
            image = img.convert("RGBA") if has_alpha else to_rgb(img)
    except UnidentifiedImageError:
        raise DataError(f"{name} is not an image (expected PNG, JPEG, WebP, BMP, TIFF...)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{name} is truncated or corrupt ({exc}); upload it again") from None
    w, h = image.size
    if max(w, h) <= limits.max_side:
        return image, None
    if not resize:
        return image, f"{name}: translated at full size {w}x{h} (in tiles when large; slower)"
    image.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    return image, f"{name}: resized from {w}x{h} to {image.width}x{image.height} (max side {limits.max_side} px)"


@dataclass
class BatchResult:
    """What one Translate click produced: gallery rows, files to download, notes and failures."""

    gallery: list[tuple[str, str]] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    columns: int = 2


def translate_uploads(translator: Callable[[Image.Image, str], Image.Image], files: Sequence[str | Path],
                      directions: Sequence[str], cycle: bool, limits: UploadLimits, out_dir: Path,
                      full_size: bool = False) -> BatchResult:
    """Translate each uploaded file in each direction (and back, with ``cycle``) into PNGs in ``out_dir``.

    A file that cannot be used is recorded in ``failures`` and the others go on.
    """
    result = BatchResult(columns=1 + len(directions) * (2 if cycle else 1))
    results: list[Path] = []
    used_stems: set[str] = set()
    for i, file in enumerate(files):
        path = Path(file)
        try:
            image, note = open_upload(path, limits, resize=not full_size)
        except DataError as exc:
            result.failures.append(str(exc))
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


def _escape(text: str) -> str:
    """Markdown and gr.Error render HTML: neutralise tags in file names and messages, keep quotes readable."""
    return html.escape(text, quote=False)


def _user_error(exc: Exception) -> Exception:
    """A CycleGANError as the message the UI shows (gr.Error renders HTML, so the text is escaped)."""
    import gradio as gr

    return gr.Error(_escape(str(exc)), print_exception=False)


def losses_frame(rows: list[dict[str, str]]):
    """metrics.csv rows as a long table (step, value, series) of the loss columns, for gr.LinePlot."""
    import pandas as pd

    records = [{"step": float(r["step"]), "value": float(v), "series": k.removeprefix("loss_")}
               for r in rows if r.get("step") for k, v in r.items() if k.startswith("loss_") and _is_number(v)]
    return pd.DataFrame(records, columns=["step", "value", "series"])


def metrics_frame(rows: list[dict[str, str]]):
    """The held-out SWD columns of metrics.csv per epoch (``val_swd*``: each direction, their mean,
    and the input-unchanged baselines). One scale on one chart; the other held-out metrics, on their
    own scales, are in the run's plots/heldout.png, shown in the gallery below."""
    import pandas as pd

    records = [{"epoch": float(r["epoch"]), "value": float(v), "series": k.removeprefix("val_")}
               for r in rows if _is_number(r.get("epoch"))
               for k, v in r.items() if k.startswith("val_swd") and _is_number(v)]
    return pd.DataFrame(records, columns=["epoch", "value", "series"])


def _is_number(value: str | None) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError):
        return False


def describe_run(info: RunInfo) -> str:
    """Markdown about one run for the Translate and Runs tabs."""
    if not info.usable:
        return f"**{_escape(info.name)}** cannot be used: {_escape(info.reason)}"
    total = info.epochs_total or NOT_KNOWN
    lines = [f"**{_escape(info.name)}**: domain A = `{info.domain_a}`, domain B = `{info.domain_b}`; "
             f"{info.epochs_done} of {total} epochs trained; preset `{info.preset}`.",
             f"Best held-out metric: {info.best}. Best weights: {'available' if info.has_best else 'not yet'}."]
    if info.resumable and info.epochs_total and info.epochs_done < info.epochs_total:
        lines.append("Training stopped early: resume it from the Train tab.")
    if info.warnings:
        lines.append("Warnings from training:\n" + "\n".join(f"- {_escape(w)}" for w in info.warnings))
    return "\n\n".join(lines)


class WebApp:
    """The app's state (settings, run catalog, model cache, training job) and its handlers."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.catalog = RunCatalog(settings.checkpoints)
        self.models = ModelCache(settings.max_models, self._load)
        self.jobs = TrainingJobs(settings.checkpoints, settings.datasets, device=settings.device)
        self.limits = UploadLimits(int(settings.max_upload_mb * 2**20), int(settings.max_megapixels * 1e6),
                                   settings.max_side)
        self.work = Path(tempfile.gettempdir()) / "cyclegan-app"
        self.work.mkdir(parents=True, exist_ok=True)

    def _load(self, run_dir: Path, best: bool) -> Translator:
        log.info("loading %s (%s weights)", run_dir, "best" if best else "latest")
        return Translator.from_run(run_dir, device=self.settings.device, best=best)

    # Translate tab -----------------------------------------------------------------------------

    def run_choices(self, usable_only: bool) -> list[tuple[str, str]]:
        return [(r.label, r.name) for r in self.catalog.runs() if r.usable or not usable_only]

    def run_info(self, name: str | None) -> str:
        if not name:
            return ""
        try:
            return describe_run(self.catalog.get(name))
        except CycleGANError as exc:
            return _escape(str(exc))

    def translate(self, run: str | None, weights: str, files: list[str] | None, direction: str,
                  cycle: bool = False, full_size: bool = False) -> tuple[list[tuple[str, str]], list[str], str]:
        """The Translate button: (gallery, downloads, status markdown); a user mistake raises gr.Error."""
        try:
            return self._translate(run, weights, files, direction, cycle, full_size)
        except CycleGANError as exc:
            raise _user_error(exc) from None

    def _translate(self, run, weights, files, direction, cycle, full_size):
        if not run:
            raise ConfigError("choose a run first (none is selected)")
        if not files:
            raise DataError("upload one or more images first")
        directions = {"AtoB": ["AtoB"], "BtoA": ["BtoA"], "both": ["AtoB", "BtoA"]}.get(direction)
        if directions is None:
            raise ConfigError(f"direction must be AtoB, BtoA or both, got {direction!r}")
        info = self.catalog.get(run)
        if not info.usable:
            raise CheckpointError(f"run {run!r} cannot be used: {info.reason}")
        best = weights == "best"
        if best and not info.has_best:
            raise CheckpointError(f"run {run!r} has no best weights yet; choose latest")
        translator = self.models.get(info.path, best)
        sweep_old(self.work)
        out_dir = Path(tempfile.mkdtemp(prefix="request-", dir=self.work))
        files = [str(f) for f in files]
        batch = translate_uploads(translator, files, directions, bool(cycle), self.limits, out_dir, bool(full_size))
        if not batch.downloads:
            raise DataError("; ".join(batch.failures) or "nothing was translated")
        size_rule = ("at full size (large ones in tiles)" if full_size else
                     f"resized to at most {self.limits.max_side} px on a side")
        lines = [f"Translated {len(files) - len(batch.failures)} of {len(files)} image(s) with `{run}` "
                 f"({'best' if best else 'latest'} weights), {size_rule}."]
        lines += [f"- {_escape(n)}" for n in batch.notes]
        lines += [f"- **not translated:** {_escape(f)}" for f in batch.failures]
        return batch.gallery, batch.downloads, "\n".join(lines)

    # Runs tab ----------------------------------------------------------------------------------

    def show_run(self, name: str | None):
        """(info markdown, config json, losses table, metrics table, sample grids) for the Runs tab."""
        empty = ("", "", losses_frame([]), metrics_frame([]), [])
        if not name:
            return empty
        try:
            run_dir = safe_child(self.settings.checkpoints, name, "run")
            info = self.catalog.get(name)
        except CycleGANError as exc:
            return (_escape(str(exc)),) + empty[1:]
        try:
            config = json.dumps(json.loads((run_dir / ckpt.CONFIG_FILE).read_text()), indent=2)
        except (OSError, ValueError) as exc:
            config = f"config.json cannot be read: {exc}"
        rows = read_metrics(run_dir / METRICS_FILE)
        pictures = [(_open_picture(p), f"epoch {epoch}") for epoch, p in sample_grids(run_dir)]
        pictures += [(_open_picture(p), p.stem) for p in sorted((run_dir / "plots").glob("*.png"))]
        pictures = [(img, caption) for img, caption in pictures if img is not None]
        return describe_run(info), config, losses_frame(rows), metrics_frame(rows), pictures

    # Train tab ---------------------------------------------------------------------------------

    def save_dataset(self, name: str, files_a: list[str] | None, files_b: list[str] | None):
        """Save two uploaded image sets as datasets/NAME; returns (message, dataset dropdown update)."""
        import gradio as gr

        try:
            saved = save_uploaded_dataset(self.settings.datasets, name, files_a or [], files_b or [])
        except CycleGANError as exc:
            raise _user_error(exc) from None
        message = (f"Saved dataset `{saved.path.name}`: {saved.kept['trainA']} images in trainA, "
                   f"{saved.kept['trainB']} in trainB.")
        if saved.skipped:
            message += "\n\nSkipped (not readable images):\n" + "\n".join(f"- {_escape(s)}" for s in saved.skipped)
        return message, gr.update(choices=list_datasets(self.settings.datasets), value=saved.path.name)

    def start_training(self, dataset: str | None, run: str, preset_name: str, epochs: float, decay: float) -> str:
        try:
            if not dataset:
                raise ConfigError("choose a dataset first (or upload two sets of images and save them)")
            return self._job_text(self.jobs.start(dataset, run, preset_name, epochs, decay))
        except CycleGANError as exc:
            raise _user_error(exc) from None

    def resume_training(self, run: str) -> str:
        try:
            return self._job_text(self.jobs.resume((run or "").strip()))
        except CycleGANError as exc:
            raise _user_error(exc) from None

    def stop_training(self) -> str:
        try:
            return self._job_text(self.jobs.stop())
        except CycleGANError as exc:
            raise _user_error(exc) from None

    @staticmethod
    def _job_text(status: JobStatus) -> str:
        lines = [f"**{status.state}**: {_escape(status.message)}"]
        p = status.progress
        if status.run and (p.epoch or status.epochs_done):
            where = f"epoch {p.epoch} of {p.epochs}" if p.epoch else f"{status.epochs_done} epochs done"
            if p.batch is not None:
                where += f", batch {p.batch}/{p.batches}"
            lines.append(f"Progress: {where}; {status.epochs_done} epoch(s) complete; speed {p.rate or NOT_KNOWN}.")
        if status.losses:
            lines.append("Losses: " + ", ".join(f"{k} {v:.3f}" for k, v in status.losses.items()))
        return "\n\n".join(lines)

    def poll(self, current: str | None, seen_runs: str, seen_sample: str):
        """The Train tab's timer: job text, latest grid, log, and the run lists when they changed."""
        import gradio as gr

        status = self.jobs.status()
        sample = str(status.sample) if status.sample else ""
        sample_update = gr.skip() if sample == seen_sample else (_open_picture(status.sample) if sample else None)
        usable = self.run_choices(usable_only=True)
        every = self.run_choices(usable_only=False)
        signature = json.dumps([usable, every])
        if signature == seen_runs:
            run_updates = (gr.skip(), gr.skip(), gr.skip())
        else:
            run_updates = self._run_updates(usable, every, current)
        return (self._job_text(status), sample_update, status.log, *run_updates, signature, sample)

    def refresh_runs(self, current: str | None = None):
        """(translate dropdown, no-runs notice, runs dropdown) for the current run folders."""
        return self._run_updates(self.run_choices(True), self.run_choices(False), current)

    def _run_updates(self, usable, every, current: str | None = None):
        import gradio as gr

        names = [v for _, v in usable]
        value = current if current in names else (names[0] if names else None)
        notice = NO_RUNS.format(root=self.settings.checkpoints)
        return (gr.update(choices=usable, value=value, visible=bool(usable)),
                gr.update(value=notice, visible=not usable),
                gr.update(choices=every))


def _open_picture(path: Path | None) -> Image.Image | None:
    """A PNG from a run folder as an image (served from Gradio's cache, so the run folder stays private)."""
    if path is None:
        return None
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (OSError, ValueError):
        return None


def build_ui(app: WebApp):
    """The three tabs, wired to ``app``'s handlers."""
    import gradio as gr

    s = app.settings
    usable = app.run_choices(usable_only=True)
    every = app.run_choices(usable_only=False)
    first = usable[0][1] if usable else None
    datasets = list_datasets(s.datasets)
    epochs, decay = preset_epochs("tiny")

    with gr.Blocks(title="cyclegan", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# cyclegan\nUnpaired image-to-image translation: translate images with a trained run, "
                    "look at how runs trained, or train a new one.")
        with gr.Tabs():
            with gr.Tab("Translate", id="translate"):
                no_runs = gr.Markdown(NO_RUNS.format(root=s.checkpoints), visible=not usable, elem_id="no-runs")
                with gr.Row():
                    # Custom values let API clients name runs made after the page loaded; the name is
                    # checked by safe_child either way.
                    run = gr.Dropdown(usable, value=first, label="Run", visible=bool(usable), scale=5,
                                      allow_custom_value=True, elem_id="run-select",
                                      info="run folders under the checkpoints folder")
                    refresh = gr.Button("Refresh runs", scale=1, size="sm")
                info = gr.Markdown(app.run_info(first), elem_id="run-info")
                with gr.Row():
                    weights = gr.Radio(["latest", "best"], value="latest", label="Weights")
                    direction = gr.Radio(DIRECTION_CHOICES, value="AtoB", label="Direction")
                    with gr.Column():
                        cycle = gr.Checkbox(False, label="Also show the cycle reconstruction (translated back)")
                        full_size = gr.Checkbox(False, label=f"Translate images larger than {s.max_side} px at full "
                                                "size (in tiles; slower) instead of resizing them")
                uploads = gr.File(file_count="multiple", label=f"Images: one or many (at most {s.max_upload_mb:g} MB "
                                  f"each; larger than {s.max_side} px on a side are resized to {s.max_side} px "
                                  "unless full size is ticked)",
                                  elem_id="uploads")
                go = gr.Button("Translate", variant="primary", elem_id="translate-button")
                status = gr.Markdown(elem_id="translate-status")
                gallery = gr.Gallery(label="Each input, then its results", columns=2, format="png",
                                     elem_id="results", object_fit="contain", height="auto")
                downloads = gr.File(label="Download: each result as PNG, all as a zip", file_count="multiple",
                                    interactive=False, elem_id="downloads")
            with gr.Tab("Runs", id="runs"):
                runs = gr.Dropdown(every, value=every[0][1] if every else None, label="Run", allow_custom_value=True,
                                   elem_id="runs-select")
                runs_info = gr.Markdown()
                with gr.Row():
                    loss_plot = gr.LinePlot(x="step", y="value", color="series", label="Losses (metrics.csv)")
                    metric_plot = gr.LinePlot(x="epoch", y="value", color="series",
                                              label="Held-out SWD per epoch, lower is better "
                                                    "(swd_identity: the input unchanged)")
                grids = gr.Gallery(label="Sample grids, newest first: real A, A→B, A→B→A, real B, B→A, B→A→B",
                                   columns=1, format="png", object_fit="contain", height="auto")
                config = gr.Code(language="json", label="config.json")
            with gr.Tab("Train", id="train"):
                gr.Markdown("Train a new run in the background (one job at a time). Stopping saves a "
                            "resumable checkpoint; *Resume* continues the run named below.")
                with gr.Row():
                    dataset = gr.Dropdown(datasets, value=datasets[0] if datasets else None, scale=5,
                                          allow_custom_value=True,
                                          label="Dataset (folders with trainA/ and trainB/ under the datasets folder)",
                                          elem_id="dataset-select")
                    refresh_data = gr.Button("Refresh datasets", scale=1, size="sm")
                with gr.Accordion("Or upload two sets of images as a new dataset", open=False):
                    with gr.Row():
                        files_a = gr.File(file_count="multiple", label="Domain A images")
                        files_b = gr.File(file_count="multiple", label="Domain B images")
                    with gr.Row():
                        new_name = gr.Textbox(label="New dataset name", placeholder="e.g. horses_zebras")
                        save = gr.Button("Save as dataset")
                    saved = gr.Markdown()
                with gr.Row():
                    preset_dd = gr.Dropdown(list(PRESETS), value="tiny", label="Preset",
                                            info="tiny: CPU demo; fast: one GPU; paper: the published settings")
                    run_name = gr.Textbox(label="Run name", placeholder="e.g. shapes_tiny", elem_id="run-name")
                    n_epochs = gr.Number(epochs, precision=0, minimum=1, label="Epochs at full learning rate",
                                         elem_id="epochs")
                    n_decay = gr.Number(decay, precision=0, minimum=0, label="Epochs of learning-rate decay",
                                        elem_id="epochs-decay")
                with gr.Row():
                    start = gr.Button("Start training", variant="primary", elem_id="start-training")
                    stop = gr.Button("Stop (saves a resumable checkpoint)", variant="stop", elem_id="stop-training")
                    resume = gr.Button("Resume the run named above", elem_id="resume-training")
                progress = gr.Markdown(app._job_text(app.jobs.status()), elem_id="train-progress")
                latest = gr.Image(label="Latest sample grid", type="pil", format="png", interactive=False)
                log_box = gr.Textbox(label="Log (last lines)", lines=8, max_lines=8, interactive=False)
        seen_runs, seen_sample = gr.State(""), gr.State("")
        timer = gr.Timer(s.poll_seconds)

        run_outputs = [run, no_runs, runs]
        go.click(app.translate, [run, weights, uploads, direction, cycle, full_size], [gallery, downloads, status],
                 api_name="translate", concurrency_limit=s.concurrency, concurrency_id="translate")
        run.change(app.run_info, run, info, api_name=False, concurrency_limit=None)
        refresh.click(app.refresh_runs, run, run_outputs, api_name="refresh_runs", concurrency_limit=None)
        runs.change(app.show_run, runs, [runs_info, config, loss_plot, metric_plot, grids], api_name="show_run",
                    concurrency_limit=None)
        demo.load(app.show_run, runs, [runs_info, config, loss_plot, metric_plot, grids], api_name=False,
                  concurrency_limit=None)
        refresh_data.click(lambda: gr.update(choices=list_datasets(s.datasets)), None, dataset, api_name=False,
                           concurrency_limit=None)
        save.click(app.save_dataset, [new_name, files_a, files_b], [saved, dataset], api_name="save_dataset",
                   concurrency_limit=1)
        preset_dd.change(lambda name: preset_epochs(name), preset_dd, [n_epochs, n_decay], api_name=False,
                         concurrency_limit=None)
        start.click(app.start_training, [dataset, run_name, preset_dd, n_epochs, n_decay], progress,
                    api_name="start_training", concurrency_limit=1, concurrency_id="jobs")
        stop.click(app.stop_training, None, progress, api_name="stop_training", concurrency_limit=1,
                   concurrency_id="jobs")
        resume.click(app.resume_training, run_name, progress, api_name="resume_training", concurrency_limit=1,
                     concurrency_id="jobs")
        timer.tick(app.poll, [run, seen_runs, seen_sample], [progress, latest, log_box, *run_outputs, seen_runs, seen_sample],
                   api_name="poll", concurrency_limit=None, show_progress="hidden")
    return demo


def add_app_arguments(parser: argparse.ArgumentParser) -> None:
    """The app's flags, shared by ``python app.py`` and ``cyclegan app``."""
    d = AppSettings()
    parser.add_argument("--checkpoints", type=Path, default=d.checkpoints, help="folder of run folders (default: checkpoints)")
    parser.add_argument("--datasets", type=Path, default=d.datasets, help="folder of datasets (default: datasets)")
    parser.add_argument("--host", default=d.host, help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=d.port, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link (off by default)")
    parser.add_argument("--device", default=d.device, help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--max-models", type=int, default=d.max_models, help="models kept loaded (default 2)")
    parser.add_argument("--concurrency", type=int, default=d.concurrency,
                        help="translations run at once; more requests wait in the queue (default 2)")
    parser.add_argument("--max-side", type=int, default=d.max_side,
                        help="larger uploads are resized to this many pixels on their long side (default 1024)")
    parser.add_argument("--max-upload-mb", type=float, default=d.max_upload_mb, help="upload size limit (default 20)")


def settings_from_args(args: argparse.Namespace) -> AppSettings:
    for name, minimum in (("max_models", 1), ("concurrency", 1), ("max_side", 16), ("port", 1)):
        if getattr(args, name) < minimum:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {minimum}, got {getattr(args, name)}")
    return AppSettings(checkpoints=args.checkpoints, datasets=args.datasets, host=args.host, port=args.port,
                       share=args.share, device=args.device, max_models=args.max_models,
                       concurrency=args.concurrency, max_side=args.max_side, max_upload_mb=args.max_upload_mb)


def serve(settings: AppSettings) -> None:
    """Build the app and serve it until interrupted; a running training job is stopped cleanly."""
    import signal

    from .trainer import select_device

    select_device(settings.device)  # a bad --device fails here, before the server starts
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup probes, one line each
    app = WebApp(settings)
    demo = build_ui(app)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    # SIGTERM (a service manager, a test) takes the same clean path as Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        demo.launch(server_name=settings.host, server_port=settings.port, share=settings.share,
                    max_file_size=int(settings.max_upload_mb * 2**20), footer_links=["api", "settings"],
                    show_error=True)
    except KeyboardInterrupt:
        pass
    finally:
        app.jobs.shutdown()
        demo.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python app.py``: the web app's own entry point (``cyclegan app`` takes the same flags)."""
    import sys

    parser = argparse.ArgumentParser(prog="app.py", description="The cyclegan web app (Gradio).")
    add_app_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        serve(settings_from_args(args))
    except CycleGANError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
