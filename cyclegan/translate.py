"""Translator: a trained run folder turned into a function from images to images, both ways.

Loads ``config.json`` and the generators once. Any size: an image is reflect-padded to the
network's multiple of 4 and cropped back; one larger than ``max_pixels`` is translated in
overlapping tiles that share instance-norm statistics (see tiling.py), so memory stays bounded and
no seam shows. Any format Pillow reads: EXIF rotation applied, grayscale, palette, CMYK and 16-bit
converted, an alpha channel set aside and put back on the output unchanged.

``translate_folder`` is the batch tool: it decodes and encodes in worker threads while the model
runs, batches images of equal size, never overwrites an output unless asked, and reports every
file it could not translate with the reason instead of stopping.
"""

from __future__ import annotations

import io
import logging
import math
import os
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

from . import checkpoint as ckpt
from . import tiling
from .config import Config
from .data import _candidate_files, to_rgb
from .errors import CheckpointError, ConfigError, CycleGANError, DataError
from .networks import build_generator

log = logging.getLogger(__name__)

DIRECTIONS = ("AtoB", "BtoA")
OTHER = {"AtoB": "BtoA", "BtoA": "AtoB"}
GENERATOR_FOR = {"AtoB": "G_AB", "BtoA": "G_BA"}
OFFICIAL_PRESET = "official"  # config.json's preset for runs made by `cyclegan import-official`
MULTIPLE = tiling.MULTIPLE
MIN_SIDE = 8  # the residual blocks reflect-pad by 1 at quarter resolution, which needs 2 pixels there
DEFAULT_MAX_PIXELS = 2048 * 2048  # larger images are tiled
DEFAULT_TILE = 1024
# name -> (Pillow format, file suffix, save options, keeps alpha)
FORMATS: dict[str, tuple[str, str, dict[str, Any], bool]] = {
    "png": ("PNG", ".png", {}, True),
    "jpg": ("JPEG", ".jpg", {"quality": 95}, False),
    "webp": ("WEBP", ".webp", {"quality": 95}, True),
}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_ORIENTATION = 0x0112  # the EXIF tag


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be AtoB or BtoA, got {direction!r}")
    return direction


def expand_direction(direction: str) -> tuple[str, ...]:
    """``both`` -> (AtoB, BtoA); a single direction -> itself."""
    return DIRECTIONS if direction == "both" else (check_direction(direction),)


# --------------------------------------------------------------------------- decoding and encoding

@dataclass
class Picture:
    """A decoded image as the network wants it, plus what must survive to the output."""

    pixels: torch.Tensor  # (H, W, C) uint8, C = the model's channels
    alpha: np.ndarray | None = None  # (H, W) uint8, put back on the output unchanged
    icc: bytes | None = None  # colour profile, copied to the output


def _alpha_of(img: Image.Image) -> np.ndarray | None:
    """The image's transparency as an (H, W) uint8 mask, or None when it has none."""
    has_alpha = img.mode in _ALPHA_MODES or "transparency" in img.info
    return np.array(img.convert("RGBA").getchannel("A")) if has_alpha else None


def _resize_shorter(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    w, h = img.size
    scale = size / min(w, h)
    target = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img if target == img.size else img.resize(target, resample, reducing_gap=3.0)


def picture_from_pil(img: Image.Image, channels: int = 3, size: int | None = None) -> Picture:
    """Any Pillow image as a Picture: EXIF rotation applied, alpha set aside, shorter side ``size`` if given."""
    icc = img.info.get("icc_profile") or None
    if img.getexif().get(_ORIENTATION, 1) != 1:
        img = ImageOps.exif_transpose(img)
    alpha = _alpha_of(img)
    target = "L" if channels == 1 else "RGB"
    # Plain RGB (most photos) is used as decoded: each copy of a 24-megapixel photo is 72 MB.
    rgb = img if img.mode == target else to_rgb(img)  # transparency composited on white, as in training
    if rgb.mode != target:
        rgb = rgb.convert(target)
    if size:
        rgb = _resize_shorter(rgb, size, Image.Resampling.BICUBIC)
        if alpha is not None:
            alpha = np.array(_resize_shorter(Image.fromarray(alpha), size, Image.Resampling.BICUBIC))
    pixels = np.array(rgb).reshape(rgb.height, rgb.width, channels)
    return Picture(torch.from_numpy(pixels), alpha, icc)


def read_picture(path: str | Path, channels: int = 3, size: int | None = None) -> Picture:
    """Decode ``path`` (any format Pillow reads), or raise DataError naming it and the reason."""
    try:
        with Image.open(path) as img:
            img.load()
            return picture_from_pil(img, channels, size)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path} is too large to decode safely ({exc}); downscale it first") from None
    except UnidentifiedImageError:
        empty = Path(path).stat().st_size == 0
        raise DataError(f"{path} cannot be read ({'empty file' if empty else 'not an image'})") from None
    except Exception as exc:  # noqa: BLE001  truncated, zero bytes, corrupt: Pillow's decoders raise many types
        raise DataError(f"{path} cannot be read ({str(exc) or type(exc).__name__})") from None


def picture_to_pil(pixels: np.ndarray, alpha: np.ndarray | None, keep_alpha: bool = True) -> Image.Image:
    """(H, W, C) uint8 pixels as a Pillow image, with ``alpha`` attached when given and wanted."""
    img = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    if alpha is not None and keep_alpha:
        img.putalpha(Image.fromarray(alpha))
    return img


def encode(pixels: np.ndarray, alpha: np.ndarray | None, icc: bytes | None, image_format: str) -> bytes:
    """The bytes of an output file in ``image_format`` (png, jpg or webp)."""
    pil_format, _, options, keeps_alpha = FORMATS[image_format]
    img = picture_to_pil(pixels, alpha, keeps_alpha)
    extra = {"icc_profile": icc} if icc else {}
    buffer = io.BytesIO()
    img.save(buffer, format=pil_format, **options, **extra)
    return buffer.getvalue()


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    """A batch of equal-sized images; a single one as a view, not a copy (it may be a 24-megapixel photo)."""
    return images[0][None] if len(images) == 1 else torch.stack(images)


def _to_unit(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (..., C, H, W) -> float in [-1, 1]."""
    return pixels.float().div_(127.5).sub_(1.0)


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8, rounded."""
    return images.float().clamp(-1, 1).add(1.0).mul_(127.5).round_().to(torch.uint8)


# --------------------------------------------------------------------------- the translator

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


class Translator:
    """The generators of one run, loaded once, on one device, ready to translate anything."""

    def __init__(self, config: Config, generators: dict[str, nn.Module], device: torch.device, *,
                 bf16: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS, tile_size: int | None = None,
                 run_dir: Path | None = None) -> None:
        """``max_pixels``: the largest image translated in one pass (larger ones are tiled);
        ``tile_size``: the side of a tile; ``bf16``: bfloat16 autocast (made for CUDA, also runs on CPU)."""
        if not generators:
            raise CheckpointError("a Translator needs at least one generator")
        self.config = config
        self.run_dir = run_dir
        self.device = device
        self.generators = {name: net.to(device).eval() for name, net in generators.items()}
        self.bf16 = bf16
        self.margin = tiling.margin_for(config.model.n_blocks)
        self.tile_size = tile_size or max(DEFAULT_TILE, 2 * tiling.overlap_for(self.margin) + MULTIPLE)
        tiling.check_tile_size(self.tile_size, self.margin)
        if max_pixels < MIN_SIDE * MIN_SIDE:
            raise ConfigError(f"max_pixels must be at least {MIN_SIDE * MIN_SIDE}, got {max_pixels}")
        self.max_pixels = max_pixels

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str | torch.device | None = None, best: bool = False,
                 **options: Any) -> Translator:
        """Load a run folder's generators (``best`` for the best held-out epoch's).

        A run imported from official weights may hold one direction only; asking it for the other
        raises a CheckpointError that says so. ``options`` go to the constructor (bf16, max_pixels, tile_size).
        """
        from .trainer import select_device

        run_dir = Path(run_dir)
        config = ckpt.load_config(run_dir)
        device = device if isinstance(device, torch.device) else select_device(device or "auto")
        paths = {name: ckpt.generator_path(run_dir, name, best) for name in GENERATOR_FOR.values()}
        present = {name: path for name, path in paths.items() if path.exists()}
        if not present:
            where = paths["G_AB"].parent
            if best:
                raise CheckpointError(f"{where} has no best weights yet; drop --best to use the latest")
            raise CheckpointError(f"{where} has no generator weights (G_AB.safetensors / G_BA.safetensors); "
                                  "train it further or import weights with `cyclegan import-official`")
        generators = {name: ckpt.load_weights(build_generator(config.model), path) for name, path in present.items()}
        return cls(config, generators, device, run_dir=run_dir, **options)

    @property
    def directions(self) -> tuple[str, ...]:
        """The directions this translator has a generator for."""
        return tuple(d for d in DIRECTIONS if GENERATOR_FOR[d] in self.generators)

    def generator(self, direction: str) -> nn.Module:
        name = GENERATOR_FOR[check_direction(direction)]
        if name not in self.generators:
            where = self.run_dir or "this run"
            hint = (f"; import it with `cyclegan import-official --pth FILE --out {where} --direction {direction}`"
                    if self.config.preset == OFFICIAL_PRESET else "")
            raise CheckpointError(f"{where} has no {name} generator, so it cannot translate {direction} "
                                  f"(it can: {', '.join(self.directions)}){hint}")
        return self.generators[name]

    # -- the network on tensors

    def _forward(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float on the device -> translated, same shape, float32 on the device."""
        h, w = x.shape[-2:]
        pad_h = max(MIN_SIDE, math.ceil(h / MULTIPLE) * MULTIPLE) - h
        pad_w = max(MIN_SIDE, math.ceil(w / MULTIPLE) * MULTIPLE) - w
        if pad_h or pad_w:
            # Reflection needs the pad to be smaller than the side; tiny images fall back to replicate.
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with autocast:
            y = net(x)
        return y[..., :h, :w].float()

    def _tiled(self, net: nn.Module, image: torch.Tensor) -> torch.Tensor:
        """One (C, H, W) image over ``max_pixels`` (uint8 or float) -> (H, W, C) of the same dtype."""
        as_uint8 = image.dtype == torch.uint8
        to_input = (lambda crop: _to_unit(crop[None].to(self.device))) if as_uint8 else \
            (lambda crop: crop[None].to(self.device, torch.float32))
        thumb = to_input(tiling.thumbnail(image, self.max_pixels))
        stats = tiling.instance_norm_stats(net, self._forward, thumb)
        return tiling.translate_tiled(
            tiling.with_fixed_stats(net, stats), self._forward, image, tile=self.tile_size, margin=self.margin,
            out_channels=self.config.model.channels, to_input=to_input,
            to_output=_to_uint8 if as_uint8 else (lambda rows: rows),
            out_dtype=torch.uint8 if as_uint8 else torch.float32)

    def _fits(self, height: int, width: int) -> bool:
        return height * width <= self.max_pixels

    @torch.inference_mode()
    def translate_tensor(self, images: torch.Tensor, direction: str) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1], any H and W -> the same shape, translated, float32 on the CPU."""
        net = self.generator(direction)
        if self._fits(*images.shape[-2:]):
            return self._forward(net, images.to(self.device, torch.float32)).cpu()
        return torch.stack([self._tiled(net, image).permute(2, 0, 1) for image in images])

    @torch.inference_mode()
    def translate_pixels(self, batch: torch.Tensor, direction: str, cycle: bool = False
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, H, W, C) uint8 images of one size -> (translated, reconstruction or None), both (N, H, W, C) uint8.

        The reconstruction (``cycle``) is the translation sent back with the other generator.
        """
        net = self.generator(direction)
        back = self.generator(OTHER[direction]) if cycle else None
        if not self._fits(*batch.shape[1:3]):
            outs = [self._tiled(net, image.permute(2, 0, 1)) for image in batch]
            recs = [self._tiled(back, out.permute(2, 0, 1)) for out in outs] if back is not None else None
            return _stack(outs), (_stack(recs) if recs is not None else None)
        y = self._forward(net, _to_unit(batch.to(self.device).permute(0, 3, 1, 2)))
        rec = _to_uint8(self._forward(back, y)).permute(0, 2, 3, 1).contiguous().cpu() if back is not None else None
        return _to_uint8(y).permute(0, 2, 3, 1).contiguous().cpu(), rec

    def __call__(self, image: Image.Image | str | Path | torch.Tensor, direction: str):
        """Translate one PIL image, image path or (C, H, W) tensor in [-1, 1]; returns the same kind.

        A path gives a PIL image. A PIL image's alpha channel is carried over to the result unchanged.
        """
        if isinstance(image, torch.Tensor):
            return self.translate_tensor(image.unsqueeze(0), direction)[0]
        channels = self.config.model.channels
        picture = read_picture(image, channels) if isinstance(image, (str, Path)) else picture_from_pil(image, channels)
        out, _ = self.translate_pixels(picture.pixels[None], direction)
        return picture_to_pil(out[0].numpy(), picture.alpha)

    def translate_folder(self, input_path: str | Path, output_dir: str | Path, direction: str = "AtoB",
                         overwrite: bool = False, *, size: int | None = None, batch_size: int = 4,
                         image_format: str = "png", cycle: bool = False, workers: int | None = None,
                         progress: bool = False) -> FolderSummary:
        """Translate one image or every image under a folder into ``output_dir``, mirroring subfolders.

        ``direction`` is AtoB, BtoA or both (then into ``output_dir/AtoB`` and ``output_dir/BtoA``).
        Each output is ``NAME.<format>``; with ``cycle`` the reconstruction goes beside it as
        ``NAME.cycle.<format>``. An existing output is skipped unless ``overwrite``; an output folder
        inside the input folder is never read as input; an image that fails is logged with the reason
        and counted, never fatal. Raises DataError only for a missing input or one with no files.
        """
        options = _FolderOptions(expand_direction(direction), overwrite, size, batch_size, image_format, cycle,
                                 workers or min(4, os.cpu_count() or 1), progress)
        options.check(self)
        return _FolderRun(self, options).run(Path(input_path), Path(output_dir))


# --------------------------------------------------------------------------- the folder pipeline

@dataclass
class _FolderOptions:
    directions: tuple[str, ...]
    overwrite: bool
    size: int | None
    batch_size: int
    image_format: str
    cycle: bool
    workers: int
    progress: bool

    def check(self, translator: Translator) -> None:
        if self.image_format not in FORMATS:
            raise ConfigError(f"output format must be one of {', '.join(FORMATS)}, got {self.image_format!r}")
        if self.batch_size < 1 or self.workers < 1:
            raise ConfigError(f"batch size and workers must be 1 or more, got {self.batch_size} and {self.workers}")
        if self.size is not None and self.size < 1:
            raise ConfigError(f"--size must be a positive number of pixels, got {self.size}")
        for direction in self.directions:
            translator.generator(direction)
            if self.cycle:
                translator.generator(OTHER[direction])


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
    files = [f for f in _candidate_files(input_path) if not _inside(f, output)]
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


def plan_jobs(input_path: Path, output_dir: Path, options: _FolderOptions) -> tuple[list[_Job], int]:
    """The jobs to run and how many images are skipped because all their outputs exist."""
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"--output {output_dir} is a file; pass a folder")
    inputs = list_inputs(input_path, output_dir)
    suffix = FORMATS[options.image_format][1]
    names = output_names([rel for _, rel in inputs], suffix)
    jobs, skipped = [], 0
    for (source, _), name in zip(inputs, names):
        outputs = {}
        for direction in options.directions:
            folder = output_dir / direction if len(options.directions) > 1 else output_dir
            target = folder / name
            rec = target.with_name(f"{target.stem}.cycle{suffix}") if options.cycle else None
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

    def __init__(self, translator: Translator, options: _FolderOptions) -> None:
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
            self._translate_all(jobs)
            while self.saves:
                self._finish_save()
        if self.alpha_dropped:
            log.warning("%d image(s) had transparency, which JPEG cannot store; use --format png or webp to keep it",
                        self.alpha_dropped)
        self.summary.seconds = time.perf_counter() - start
        return self.summary

    def _decode(self, job: _Job) -> Picture:
        return read_picture(job.source, self.translator.config.model.channels, self.options.size)

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
                batch = _stack([items[i][1].pixels for i in members])
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
                ckpt.atomic_write_bytes(target, data)
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
        reason = str(exc)
        log.warning("not translated: %s", reason if str(job.source) in reason else f"{job.source}: {reason}")
        self.summary.failed.append((job.source, reason))
        self.bar.update(1)
