"""The one place video files are decoded and encoded (images.py's counterpart for clips), with PyAV.

PyAV comes with the ``video`` extra and is imported only inside these functions, so the package,
and translating images, work without it; asking for a video without it raises a ConfigError that
names the extra. Frames are (H, W, C) uint8 tensors, C the domain's channels, as images.py decodes
images. Output is H.264 at the input's frame rate and size; the first audio stream is copied
unchanged (no re-encoding) when the output container can hold its codec.

Videos are recognised by their suffix, not by content as images are: then no file is opened by
both decoders, and without PyAV a clip is still recognised and gets its one-line reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, DataError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")  # what is read as a video
H264_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")  # containers that hold H.264, what is written
OUTPUT_SUFFIX = ".mp4"  # a folder's videos are written as NAME.mp4
INSTALL_HINT = "pip install 'cyclegan[video]' (in a checkout: .venv/bin/pip install -e '.[video]')"
DEFAULT_FPS = Fraction(25)  # for a stream that states no frame rate at all
CRF = "18"  # libx264 quality (others ignore it): near-lossless, so encoding adds little to the network's output


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def require_av(path: str | Path) -> Any:
    """The ``av`` module, or a ConfigError naming ``path`` and the extra that installs it."""
    try:
        import av
    except ImportError:
        raise ConfigError(f"{path} is a video, and videos need PyAV, the video extra: {INSTALL_HINT}") from None
    return av


def check_output_suffix(path: Path) -> None:
    if path.suffix.lower() not in H264_SUFFIXES:
        raise ConfigError(f"{path}: translated videos are H.264, which {path.suffix} cannot hold; name the output "
                          f"{', '.join(H264_SUFFIXES)}")


def _reason(exc: Exception) -> str:
    """FFmpeg's words for an error, without the path PyAV appends (our messages name the file first)."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


@dataclass(frozen=True)
class VideoInfo:
    """What translating a clip needs to know before decoding it."""

    width: int
    height: int
    fps: Fraction
    frames: int  # from the container's index, else by counting packets (no decoding)
    audio: str | None  # codec of the first audio stream, if any


def _open(av: Any, path: Path) -> Any:
    """An input container with a video stream, or DataError naming ``path``."""
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        empty = path.exists() and path.stat().st_size == 0
        raise DataError(f"{path} cannot be read as a video ({'empty file' if empty else _reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path} has no video stream")
    return container


def probe(path: str | Path, count_frames: bool = False) -> VideoInfo:
    """Size, frame rate, frame count and audio codec of a clip; DataError if it cannot be read.

    The frame count comes from the container's index unless ``count_frames`` (or the index has
    none): then the video packets are counted, without decoding, since a header may say anything.
    """
    path = Path(path)
    av = require_av(path)
    container = _open(av, path)
    try:
        stream = container.streams.video[0]
        indexed = 0 if count_frames else stream.frames
        frames = indexed or sum(1 for packet in container.demux(stream) if packet.size)
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        fps = Fraction(stream.average_rate or stream.guessed_rate or DEFAULT_FPS)
        return VideoInfo(stream.codec_context.width, stream.codec_context.height, fps, frames, audio)
    except av.FFmpegError as exc:
        raise DataError(f"{path} cannot be read as a video ({_reason(exc)})") from None
    finally:
        container.close()


def frame_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """(width, height) with the shorter side ``size``, sides rounded to even (as H.264 players need); as is without."""
    if not size:
        return width, height
    scale = size / min(width, height)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def _decoded(av: Any, container: Any, path: Path, channels: int, size: tuple[int, int],
             with_audio: bool) -> Iterator[Any]:
    """The clip in file order: (seconds or None, (H, W, C) uint8 array) per video frame and, with
    ``with_audio``, the first audio stream's packets as they are. Decoding errors become DataError."""
    stream = container.streams.video[0]
    audio = container.streams.audio[0] if with_audio and container.streams.audio else None
    pixel_format = "gray" if channels == 1 else "rgb24"
    width, height = size
    try:
        for packet in container.demux(*[s for s in (stream, audio) if s is not None]):
            if packet.stream.type == "audio":
                if packet.dts is not None:  # the demuxer's end-of-stream marker has none
                    yield packet
                continue
            for frame in packet.decode():
                pixels = frame.to_ndarray(format=pixel_format, width=width, height=height)
                yield frame.time, pixels.reshape(height, width, channels)
    except av.FFmpegError as exc:
        raise DataError(f"{path} cannot be read as a video ({_reason(exc)})") from None


def read_frames(path: str | Path, channels: int = 3, size: int | None = None) -> Iterator[torch.Tensor]:
    """Every frame of a clip as (H, W, C) uint8, shorter side ``size`` if given; DataError if it cannot be read."""
    path = Path(path)
    av = require_av(path)
    container = _open(av, path)
    try:
        stream = container.streams.video[0]
        dims = frame_size(stream.codec_context.width, stream.codec_context.height, size)
        for _, pixels in _decoded(av, container, path, channels, dims, with_audio=False):
            yield torch.from_numpy(pixels)
    finally:
        container.close()


class _Encoder:
    """H.264 into ``target``, at ``fps``, plus a copy of an input audio stream; OSError and FFmpeg
    errors while writing become DataError naming ``target``."""

    def __init__(self, av: Any, target: Path, width: int, height: int, fps: Fraction, audio: Any | None) -> None:
        self.av, self.target, self.fps = av, target, fps
        self.container = None
        try:
            self.container = av.open(str(target), "w")
            self.stream = self.container.add_stream("h264", rate=fps, options={"crf": CRF})
            self.stream.width, self.stream.height = width, height
            # 4:2:0 (what every player decodes) needs even sides; an odd-sized clip keeps its size in 4:4:4
            self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
            self.audio = None
            if audio is not None:
                if audio.codec_context.name in self.container.supported_codecs:
                    self.audio = self.container.add_stream_from_template(audio)
                else:
                    log.warning("%s: the %s audio cannot go into %s; the video is written without sound",
                                target.name, audio.codec_context.name, target.suffix)
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise DataError(f"cannot write {target} ({_reason(exc)})") from None
        self.next_pts = 0

    def frame(self, pixels: np.ndarray, seconds: float | None) -> None:
        """One (H, W, C) uint8 frame, shown at ``seconds`` (the input frame's time, so that sound stays in sync)."""
        pts = self.next_pts if seconds is None else max(self.next_pts, round(seconds * self.fps))
        self.next_pts = pts + 1
        image = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
        pixel_format = "gray" if image.ndim == 2 else "rgb24"
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=pixel_format)
        frame.pts = pts
        self._mux(self.stream.encode(frame))

    def packet(self, packet: Any) -> None:
        if self.audio is not None:
            packet.stream = self.audio
            self._mux([packet])

    def close(self) -> None:
        self._mux(self.stream.encode(None))
        self._guard(self.container.close)

    def abort(self) -> None:
        if self.container is None:
            return
        try:
            self.container.close()
        except (OSError, self.av.FFmpegError):
            pass  # the partial file is removed by the caller; its error is the one to report

    def _mux(self, packets: list[Any]) -> None:
        for packet in packets:
            self._guard(self.container.mux, packet)

    def _guard(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except (OSError, self.av.FFmpegError) as exc:
            raise DataError(f"cannot write {self.target} ({_reason(exc)})") from None


def transcode(source: str | Path, target: str | Path, translate: Callable[[torch.Tensor], torch.Tensor], *,
              channels: int = 3, size: int | None = None, batch_size: int = 4,
              on_frames: Callable[[int], Any] | None = None) -> int:
    """Decode ``source``, map its frames through ``translate`` in batches, encode the result into ``target``.

    ``translate`` takes (N, H, W, C) uint8 frames and returns them translated, the same size (its
    channels may differ). The output has the input's frame rate and frame times, size (shorter side
    ``size`` if given) and first audio stream. ``on_frames(n)`` is called as each batch is written
    (a progress bar). Returns the number of frames. DataError names the file that could not be
    read or written; ``target`` is written in place (callers make that atomic).
    """
    source, target = Path(source), Path(target)
    av = require_av(source)
    container = _open(av, source)
    encoder = None
    try:
        stream = container.streams.video[0]
        dims = frame_size(stream.codec_context.width, stream.codec_context.height, size)
        fps = Fraction(stream.average_rate or stream.guessed_rate or DEFAULT_FPS)
        audio = container.streams.audio[0] if container.streams.audio else None
        encoder = _Encoder(av, target, *dims, fps, audio)
        batch: list[tuple[float | None, np.ndarray]] = []
        count = 0

        def flush() -> None:
            out = translate(torch.from_numpy(np.stack([pixels for _, pixels in batch]))).numpy()
            for (seconds, _), pixels in zip(batch, out):
                encoder.frame(pixels, seconds)
            if on_frames is not None:
                on_frames(len(batch))
            batch.clear()

        for item in _decoded(av, container, source, channels, dims, with_audio=audio is not None):
            if isinstance(item, tuple):
                batch.append(item)
                count += 1
                if len(batch) == batch_size:
                    flush()
            else:
                encoder.packet(item)
        if batch:
            flush()
        if count == 0:
            raise DataError(f"{source} has no video frames")
        encoder.close()
        encoder = None
        return count
    finally:
        if encoder is not None:
            encoder.abort()
        container.close()
