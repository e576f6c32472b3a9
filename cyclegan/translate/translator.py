"""Translator: a trained run folder turned into a function from images to images, both ways.

Loads ``config.json`` and the generators once. Any size: an image is reflect-padded to the
network's size multiple and cropped back; one larger than ``max_pixels`` is translated in
overlapping tiles that share instance-norm statistics (see tiling.py), so memory stays bounded and
no seam shows. Any format Pillow reads (see images.py): EXIF rotation applied, grayscale, palette,
CMYK and 16-bit converted to the generator's input channels, an alpha channel set aside and put
back on the output unchanged.

``translate_folder`` is the batch tool (folders.py): it decodes and encodes in worker threads
while the model runs, batches images of equal size, never overwrites an output unless asked, and
reports every file it could not translate with the reason instead of stopping. Video files among
the inputs become videos (video.py), every frame normalised with statistics shared over the clip.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .. import runfolder
from ..config import Config
from ..devices import EMULATED_BF16_SLOWDOWN, autocast_for, emulated_bf16, select_device
from ..errors import CheckpointError, ConfigError
from ..images import picture_from_pil, picture_to_pil, read_picture, to_float, to_uint8
from ..models.generators import Generator, build_generator
from . import tiling
from .folders import FolderOptions, FolderSummary, run_folder, stack_batch

log = logging.getLogger(__name__)

DIRECTIONS = ("AtoB", "BtoA")
OTHER = {"AtoB": "BtoA", "BtoA": "AtoB"}
GENERATOR_FOR = {"AtoB": "G_AB", "BtoA": "G_BA"}
OFFICIAL_PRESET = "official"  # config.json's preset for runs made by `cyclegan import-official`
MIN_SIDE = 8  # the residual blocks reflect-pad by 1 at quarter resolution, which needs 2 pixels there
DEFAULT_MAX_PIXELS = 2048 * 2048  # larger images are tiled
DEFAULT_TILE = 1024


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be AtoB or BtoA, got {direction!r}")
    return direction


def expand_direction(direction: str) -> tuple[str, ...]:
    """``both`` -> (AtoB, BtoA); a single direction -> itself."""
    return DIRECTIONS if direction == "both" else (check_direction(direction),)


def missing_direction_hint(config: Config, where: str | Path, direction: str) -> str:
    """Why a run has no generator for ``direction`` and what to do, as a clause to end a sentence
    with ("" when there is nothing to add): every place that offers a direction says the same."""
    if config.model.one_way:
        return (f"; it was trained with --one-way ({config.model.family}, A->B only): train a run without "
                f"--one-way for both directions")
    if config.preset == OFFICIAL_PRESET:
        return f"; import it with `cyclegan import-official --pth FILE --out {where} --direction {direction}`"
    return ""


# --------------------------------------------------------------------------- the translator

class Translator:
    """The generators of one run, loaded once, on one device, ready to translate anything."""

    def __init__(self, config: Config, generators: dict[str, nn.Module], device: torch.device, *,
                 bf16: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS, tile_size: int | None = None,
                 run_dir: Path | None = None) -> None:
        """``max_pixels``: the largest image translated in one pass (larger ones are tiled);
        ``tile_size``: the side of a tile; ``bf16``: bfloat16 autocast (faster on CUDA and on a CPU with native bf16, slower on
        one without: docs/cpu.md)."""
        if not generators:
            raise CheckpointError("a Translator needs at least one generator")
        self.config = config
        self.run_dir = run_dir
        self.device = device
        self.generators = {name: net.to(device).eval() for name, net in generators.items()}
        self.bf16 = bf16
        self._autocast = autocast_for(device, bf16)
        if emulated_bf16(device, bf16):
            log.warning("bf16 on this CPU, which has no native bf16: about %.0fx slower than fp32 (docs/cpu.md)",
                        EMULATED_BF16_SLOWDOWN)
        # Tiling and padding ask the networks for their geometry (models/generators.py).
        nets = list(self.generators.values())
        self.multiple = max(getattr(net, "size_multiple", tiling.MULTIPLE) for net in nets)
        self.margin = tiling.margin_for(nets, self.multiple)
        self.tile_size = tile_size or max(DEFAULT_TILE, 2 * tiling.overlap_for(self.margin) + self.multiple)
        tiling.check_tile_size(self.tile_size, self.margin, self.multiple)
        if max_pixels < MIN_SIDE * MIN_SIDE:
            raise ConfigError(f"max_pixels must be at least {MIN_SIDE * MIN_SIDE}, got {max_pixels}")
        self.max_pixels = max_pixels
        self._fixed: tuple[tiling.NormStats, nn.Module, nn.Module] | None = None  # see _with_stats

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str | torch.device | None = None, best: bool = False,
                 epoch: int | None = None, **options: Any) -> Translator:
        """Load a run folder's generators (``best`` for the best held-out epoch's, ``epoch`` for one
        kept with --keep-epochs).

        A run imported from official weights may hold one direction only; asking it for the other
        raises a CheckpointError that says so. ``options`` go to the constructor (bf16, max_pixels, tile_size).
        """
        run_dir = Path(run_dir)
        config = runfolder.load_config(run_dir)
        device = device if isinstance(device, torch.device) else select_device(device or "auto")
        paths = {name: runfolder.generator_path(run_dir, name, best, epoch) for name in GENERATOR_FOR.values()}
        present = {name: path for name, path in paths.items() if path.exists()}
        if not present:
            where = paths["G_AB"].parent
            if epoch is not None:
                kept = ", ".join(map(str, runfolder.kept_epochs(run_dir))) or "none (train with --keep-epochs N)"
                raise CheckpointError(f"{run_dir} has no generators kept for epoch {epoch}; kept epochs: {kept}")
            if best:
                raise CheckpointError(f"{where} has no best weights yet; drop --best to use the latest")
            raise CheckpointError(f"{where} has no generator weights (G_AB.safetensors / G_BA.safetensors); "
                                  "train it further or import weights with `cyclegan import-official`")
        if best:
            runfolder.check_best(run_dir)  # never a pair mixed from two epochs by a save cut short
        direction_of = {name: direction for direction, name in GENERATOR_FOR.items()}
        generators = {name: runfolder.load_weights(build_generator(config.model, direction_of[name]), path)
                      for name, path in present.items()}
        return cls(config, generators, device, run_dir=run_dir, **options)

    def input_channels(self, direction: str) -> int:
        """Channels of the images ``direction`` translates (its source domain's)."""
        m = self.config.model
        return m.channels_a if check_direction(direction) == "AtoB" else m.channels_b

    @property
    def directions(self) -> tuple[str, ...]:
        """The directions this translator has a generator for."""
        return tuple(d for d in DIRECTIONS if GENERATOR_FOR[d] in self.generators)

    def generator(self, direction: str) -> nn.Module:
        name = GENERATOR_FOR[check_direction(direction)]
        if name not in self.generators:
            where = self.run_dir or "this run"
            raise CheckpointError(f"{where} has no {name} generator, so it cannot translate {direction} "
                                  f"(it can: {', '.join(self.directions)}){missing_direction_hint(self.config, where, direction)}")
        return self.generators[name]

    # -- the network on tensors

    def _forward(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float on the device -> translated, same shape, float32 on the device."""
        h, w = x.shape[-2:]
        multiple = getattr(net, "size_multiple", self.multiple)
        pad_h = max(MIN_SIDE, math.ceil(h / multiple) * multiple) - h
        pad_w = max(MIN_SIDE, math.ceil(w / multiple) * multiple) - w
        if pad_h or pad_w:
            # Reflection needs the pad to be smaller than the side; tiny images fall back to replicate.
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        with self._autocast():
            y = net(x)
        return y[..., :h, :w].float()

    def _tiled(self, net: nn.Module, image: torch.Tensor, stats: tiling.NormStats | None = None) -> torch.Tensor:
        """One (C, H, W) image over ``max_pixels`` (uint8 or float) -> (H, W, C) of the same dtype.

        Every tile is normalised with ``stats``, or without them with those of the image's thumbnail."""
        as_uint8 = image.dtype == torch.uint8
        to_input = (lambda crop: to_float(crop[None].to(self.device))) if as_uint8 else \
            (lambda crop: crop[None].to(self.device, torch.float32))
        if stats is None:
            stats = tiling.instance_norm_stats(net, self._forward, to_input(tiling.thumbnail(image, self.max_pixels)))
        return tiling.translate_tiled(
            tiling.with_fixed_stats(net, stats), self._forward, image, tile=self.tile_size, margin=self.margin,
            out_channels=out_channels(net), to_input=to_input,
            to_output=to_uint8 if as_uint8 else (lambda rows: rows),
            out_dtype=torch.uint8 if as_uint8 else torch.float32, multiple=self.multiple)

    def _with_stats(self, net: nn.Module, stats: tiling.NormStats) -> nn.Module:
        """``net`` normalising with ``stats``, built once for the batches that share them (a video's), not
        once a batch: the copy costs as much as a small batch's forward pass. Kept by identity, so
        threads translating with other statistics each get their own."""
        cached = self._fixed
        if cached is None or cached[0] is not stats or cached[1] is not net:
            cached = self._fixed = (stats, net, tiling.with_fixed_stats(net, stats))
        return cached[2]

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
    def norm_stats(self, images: Sequence[torch.Tensor], direction: str) -> tiling.NormStats:
        """The instance-norm statistics of ``images`` ((H, W, C) uint8, one size) taken together, as if
        they were one image: what a video's frames share, so that a frame's tone does not change with
        what is in view. An image over ``max_pixels`` contributes its thumbnail's, as in tiling."""
        net = self.generator(direction)
        return tiling.pooled_stats([
            tiling.instance_norm_stats(net, self._forward, to_float(
                tiling.thumbnail(image.permute(2, 0, 1), self.max_pixels)[None].to(self.device)))
            for image in images])

    @torch.inference_mode()
    def translate_pixels(self, batch: torch.Tensor, direction: str, cycle: bool = False,
                         stats: tiling.NormStats | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, H, W, C) uint8 images of one size -> (translated, reconstruction or None), both (N, H, W, C) uint8.

        The reconstruction (``cycle``) is the translation sent back with the other generator.
        ``stats`` (from ``norm_stats``) normalise every image instead of its own statistics; the
        reconstruction keeps its own.
        """
        net = self.generator(direction)
        back = self.generator(OTHER[direction]) if cycle else None
        if not self._fits(*batch.shape[1:3]):
            outs = [self._tiled(net, image.permute(2, 0, 1), stats) for image in batch]
            recs = [self._tiled(back, out.permute(2, 0, 1)) for out in outs] if back is not None else None
            return stack_batch(outs), (stack_batch(recs) if recs is not None else None)
        if stats is not None:
            net = self._with_stats(net, stats)
        y = self._forward(net, to_float(batch.to(self.device).permute(0, 3, 1, 2)))
        rec = to_uint8(self._forward(back, y)).permute(0, 2, 3, 1).contiguous().cpu() if back is not None else None
        return to_uint8(y).permute(0, 2, 3, 1).contiguous().cpu(), rec

    def __call__(self, image: Image.Image | str | Path | torch.Tensor, direction: str):
        """Translate one PIL image, image path or (C, H, W) tensor in [-1, 1]; returns the same kind.

        A path gives a PIL image. A PIL image's alpha channel is carried over to the result unchanged.
        """
        if isinstance(image, torch.Tensor):
            return self.translate_tensor(image.unsqueeze(0), direction)[0]
        channels = self.input_channels(direction)
        picture = read_picture(image, channels) if isinstance(image, (str, Path)) else picture_from_pil(image, channels)
        out, _ = self.translate_pixels(picture.pixels[None], direction)
        return picture_to_pil(out[0].numpy(), picture.alpha)

    def translate_folder(self, input_path: str | Path, output_dir: str | Path, direction: str = "AtoB",
                         overwrite: bool = False, *, size: int | None = None, batch_size: int = 4,
                         image_format: str = "png", cycle: bool = False, workers: int | None = None,
                         progress: bool = False, video_stats: str = "shared") -> FolderSummary:
        """Translate one image or every image under a folder into ``output_dir``, mirroring subfolders.

        ``direction`` is AtoB, BtoA or both (then into ``output_dir/AtoB`` and ``output_dir/BtoA``).
        Each output is ``NAME.<format>``; with ``cycle`` the reconstruction goes beside it as
        ``NAME.cycle.<format>``. An existing output is skipped unless ``overwrite``; an output folder
        inside the input folder is never read as input; an image that fails is logged with the reason
        and counted, never fatal. Raises DataError only for a missing input or one with no files.

        Video files (by suffix) become H.264 videos ``NAME.mp4`` (translate/video.py), their frames
        normalised with statistics shared over the clip (``video_stats`` "shared") or each with its own
        ("per-frame"); one video in, ``output_dir`` may name the output file itself (``out.mp4``).
        """
        options = FolderOptions(expand_direction(direction), overwrite, size, batch_size, image_format, cycle,
                                workers or min(4, os.cpu_count() or 1), progress, video_stats)
        options.check()
        if len({self.input_channels(d) for d in options.directions}) > 1:
            raise ConfigError("this run's domains have different channel counts, so one folder cannot be input to "
                              "both directions; translate --direction AtoB and BtoA separately")
        for each in options.directions:
            self.generator(each)
            if cycle:
                self.generator(OTHER[each])
        return run_folder(self, options, Path(input_path), Path(output_dir))


def out_channels(net: nn.Module) -> int:
    """The channels a generator produces (wrappers that lack the attribute: their last conv's)."""
    if isinstance(net, Generator):
        return net.out_channels
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
