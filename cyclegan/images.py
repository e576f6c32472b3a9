"""The one place images are decoded, encoded and turned into tensors and back.

Decoding accepts any file Pillow reads: EXIF rotation is applied; 16-bit, float, CMYK, palette
and grayscale images are converted; transparency is either composited on white (training, where
the network sees no alpha) or set aside and put back on the output unchanged (translation).
Pillow's decompression-bomb limit is checked from the header, before any pixel is decoded.

Tensors: images are float in [-1, 1] inside the networks and uint8 0-255 everywhere else (files,
caches, held-out sets). ``to_float`` and ``to_uint8`` are the only conversions between the two.
Every image has 1 (grayscale) or 3 (RGB) channels: the channel count of its domain.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from .errors import DataError

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_ORIENTATION = 0x0112  # the EXIF tag
# name -> (Pillow format, file suffix, save options, keeps alpha)
FORMATS: dict[str, tuple[str, str, dict[str, Any], bool]] = {
    "png": ("PNG", ".png", {}, True),
    "jpg": ("JPEG", ".jpg", {"quality": 95}, False),
    "webp": ("WEBP", ".webp", {"quality": 95}, True),
}


# --------------------------------------------------------------------------- decoding

def check_pixel_limit(img: Image.Image) -> None:
    """Raise Pillow's DecompressionBombError when ``img``'s header is over Pillow's pixel limit.

    Checked by hand rather than by turning Pillow's warning into an error: warning filters are
    process-wide, and images are decoded in thread pools.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit and img.width * img.height > limit:
        raise Image.DecompressionBombError(f"{img.width}x{img.height} pixels is over Pillow's limit of "
                                           f"{limit} pixels")


def unreadable_reason(path: Path) -> str | None:
    """None if ``path`` decodes as an image, else the reason it does not.

    Pillow's decompression-bomb guard is not a skip: it raises DataError, since the file is
    probably a real image the user wants and needs resizing, not removing.
    """
    try:
        with Image.open(path) as img:
            check_pixel_limit(img)
            img.load()
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path} is too large to decode safely ({exc}); downscale it or remove it") from None
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, SyntaxError, ValueError) as exc:  # truncated, corrupt, zero bytes
        return str(exc) or type(exc).__name__
    return None


def has_alpha(img: Image.Image) -> bool:
    return img.mode in ALPHA_MODES or "transparency" in img.info


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB: EXIF rotation applied, transparency composited on white,
    16-bit and float images scaled down, CMYK, palette and grayscale converted."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode == "F":  # floats: assume [0, 1] unless the values say otherwise
            high = max(float(arr.max()), 1.0)
        else:
            high = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / high * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def to_channels(img: Image.Image, channels: int) -> Image.Image:
    """``img`` as 8-bit RGB (``channels`` 3) or grayscale (1), through ``to_rgb``'s conversions."""
    target = "L" if channels == 1 else "RGB"
    if img.mode == target and img.getexif().get(_ORIENTATION, 1) == 1:
        return img  # most photos: used as decoded (a copy of a 24-megapixel photo is 72 MB)
    rgb = to_rgb(img)
    return rgb if target == "RGB" else rgb.convert("L")


def load_image(path: str | Path, channels: int = 3) -> Image.Image:
    """Open ``path`` as RGB (or grayscale with ``channels`` 1), or raise DataError naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_channels(img, channels)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path} cannot be read ({exc}); remove or replace it") from None


@dataclass
class Picture:
    """A decoded image as a network wants it, plus what must survive to the output."""

    pixels: torch.Tensor  # (H, W, C) uint8, C = the model's input channels
    alpha: np.ndarray | None = None  # (H, W) uint8, put back on the output unchanged
    icc: bytes | None = None  # colour profile, copied to the output


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
    alpha = np.array(img.convert("RGBA").getchannel("A")) if has_alpha(img) else None
    converted = to_channels(img, channels)  # transparency composited on white, as in training
    if size:
        converted = _resize_shorter(converted, size, Image.Resampling.BICUBIC)
        if alpha is not None:
            alpha = np.array(_resize_shorter(Image.fromarray(alpha), size, Image.Resampling.BICUBIC))
    pixels = np.array(converted).reshape(converted.height, converted.width, channels)
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


# --------------------------------------------------------------------------- encoding

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


def png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- tensors

def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 0-255 -> float32 in [-1, 1], any shape."""
    return pixels.to(torch.float32, copy=True).div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 0-255, clamped and rounded, as an image file would store it."""
    return images.detach().float().clamp(-1, 1).add(1.0).mul_(127.5).round_().to(torch.uint8)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """A PIL image -> float tensor (C, H, W) in [-1, 1]."""
    return to_float(TF.pil_to_tensor(img))


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """A float tensor (C, H, W) in [-1, 1] -> a PIL image (RGB or grayscale)."""
    return TF.to_pil_image(to_uint8(image.cpu()))


def as_rgb(images: torch.Tensor) -> torch.Tensor:
    """(..., C, H, W) with C 1 or 3 -> 3 channels: grayscale repeated, colour as is (for display)."""
    return images.expand(*images.shape[:-3], 3, *images.shape[-2:]) if images.shape[-3] == 1 else images


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """(..., C, H, W) float or uint8 converted to ``channels``: grayscale repeated to RGB, RGB to
    luma (ITU-R 601, as Pillow's "L"). What an image "left unchanged" is across domains of
    different channel counts, for the do-nothing baselines."""
    have = images.shape[-3]
    if have == channels:
        return images
    if channels == 3:
        return as_rgb(images)
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(3, 1, 1)
    luma = (images.float() * weights).sum(-3, keepdim=True)
    return luma.round().clamp(0, 255).to(torch.uint8) if images.dtype == torch.uint8 else luma
