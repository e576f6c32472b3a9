"""Translating a video clip, with instance-norm statistics shared by all its frames (no flicker).

Instance normalisation normalises every feature map by the mean and variance of the image it is
given. Translating a clip frame by frame therefore renormalises each frame by its own content: as
objects enter or leave the view, the statistics move and the whole frame changes tone from one
frame to the next, which shows as flicker. With ``stats="shared"`` (the default) a few frames
sampled evenly over the clip are run through the generator once, their per-layer statistics
pooled (as if the frames were one image), and every frame is normalised with those, as tiling
normalises every tile with a thumbnail's (tiling.py). A frame then changes only where the scene does.
``stats="per-frame"`` is the plain frame-by-frame translation, for comparison.

Decoding and encoding live in the video.py leaf (PyAV, the ``video`` extra); the output is
written to a temporary file and renamed, as images are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import runfolder, video
from ..errors import ConfigError, DataError
from .tiling import NormStats

if TYPE_CHECKING:  # the translator's folder pipeline uses this module, not the other way round
    from .translator import Translator

log = logging.getLogger(__name__)

STATS = ("shared", "per-frame")
STAT_FRAMES = 8  # frames sampled for shared statistics: enough to cover a clip's scenes, cheap next to the clip


def check_stats(stats: str) -> str:
    if stats not in STATS:
        raise ConfigError(f"--stats must be shared or per-frame, got {stats!r}")
    return stats


def sample_indices(count: int, samples: int = STAT_FRAMES) -> list[int]:
    """``samples`` frame indices spread evenly over ``count`` frames, first and last included."""
    return sorted({round(i) for i in np.linspace(0, max(count - 1, 0), min(samples, max(count, 1)))})


def shared_stats(translator: Translator, source: Path, direction: str, frames: int, size: int | None = None,
                 samples: int = STAT_FRAMES) -> NormStats:
    """The pooled instance-norm statistics of ``samples`` frames spread over the clip's ``frames`` (one
    extra decoding pass, which costs little next to the network)."""
    wanted = sample_indices(frames, samples)
    sampled = []
    for index, frame in enumerate(video.read_frames(source, translator.input_channels(direction), size)):
        if index in wanted:
            sampled.append(frame)
        if index >= wanted[-1]:
            break
    if not sampled:
        raise DataError(f"{source} has no video frames")
    return translator.norm_stats(sampled, direction)


def translate_video(translator: Translator, source: str | Path, target: str | Path, direction: str, *,
                    stats: str = "shared", size: int | None = None, batch_size: int = 4,
                    progress: bool = False) -> int:
    """Translate the clip ``source`` into the H.264 video ``target`` (frame rate, frame times, size
    and audio kept; shorter side ``size`` if given); returns the number of frames.

    ``target`` is written atomically and replaced if it exists (the folder pipeline decides about
    overwriting). DataError names a clip that cannot be read or an output that cannot be written;
    ConfigError says when PyAV (the ``video`` extra) is missing.
    """
    source, target = Path(source), Path(target)
    check_stats(stats)
    video.check_output_suffix(target)
    video.require_av(source)
    start = time.perf_counter()
    total = video.probe(source).frames
    fixed = shared_stats(translator, source, direction, total, size) if stats == "shared" else None

    def translate(frames: torch.Tensor) -> torch.Tensor:
        return translator.translate_pixels(frames, direction, stats=fixed)[0]

    from tqdm import tqdm

    with tqdm(total=total, unit="frame", desc=source.name, disable=not progress, leave=False) as bar, \
            runfolder.atomic_output(target) as tmp:
        count = video.transcode(source, tmp, translate, channels=translator.input_channels(direction), size=size,
                                batch_size=batch_size, on_frames=bar.update)
    seconds = time.perf_counter() - start
    log.info("%s: %d frames in %.1fs (%.2f frames/s, %s statistics) -> %s", source, count, seconds,
             count / seconds, stats, target)
    return count


def mean_frame_change(frames: Sequence[torch.Tensor] | np.ndarray) -> float:
    """Mean absolute change between consecutive frames, in 0-255 levels: the measure of flicker.

    An output's figure over its input's is 1 when the translation changes exactly as much as the
    scene does; what it adds beyond that, on a steady pan, is flicker (BENCHMARKS.md).
    """
    stack = np.stack([np.asarray(f, dtype=np.float32) for f in frames])
    if len(stack) < 2:
        raise ConfigError("the change between frames needs at least 2 frames")
    return float(np.abs(np.diff(stack, axis=0)).mean())
