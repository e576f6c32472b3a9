"""Image folders in, training tensors out.

Images are found recursively and recognised by content (Pillow), not by extension, then decoded
once up front so a broken file is reported before training starts rather than crashing it an hour
in. Every random choice (pairing, crop, flip) is drawn from a generator seeded by
(seed, epoch, index), so an epoch is the same whether it runs straight through, on several
workers, or after a resume.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .errors import DataError

log = logging.getLogger(__name__)

_SHOWN_SKIPS = 3  # how many skipped files a warning names


def _candidate_files(folder: Path) -> list[Path]:
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


def _check_image(path: Path) -> str | None:
    """None if ``path`` decodes as an image, else the reason it does not.

    Pillow's decompression-bomb guard is not a skip: it raises, since the file is probably a real
    image the user wants and needs resizing, not removing. The pixel limit is checked here from the
    header rather than by turning Pillow's warning into an error: warning filters are process-wide,
    and this runs in a thread pool.
    """
    try:
        with Image.open(path) as img:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and img.width * img.height > limit:
                raise Image.DecompressionBombError(f"{img.width}x{img.height} pixels is over Pillow's limit of "
                                                   f"{limit} pixels")
            img.load()
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path} is too large to decode safely ({exc}); downscale it or remove it") from None
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, SyntaxError, ValueError) as exc:  # truncated, corrupt, zero bytes
        return str(exc) or type(exc).__name__
    return None


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
    files = _candidate_files(folder)
    if not files:
        raise DataError(f"{label} {folder} is empty; put images in it (searched recursively)")
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        reasons = list(pool.map(_check_image, files))
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
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """Open ``path`` as RGB, or raise DataError naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path} cannot be read ({exc}); remove or replace it") from None


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor (3, H, W) in [-1, 1]."""
    t = TF.pil_to_tensor(img)
    return t.float().div_(127.5).sub_(1.0)


def tensor_to_image(t: torch.Tensor) -> Image.Image:
    """Float tensor (3, H, W) in [-1, 1] -> RGB PIL image."""
    arr = ((t.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return TF.to_pil_image(arr)


def _rng(*keys: int) -> torch.Generator:
    # A 64-bit mix of the keys: distinct (seed, epoch, index) give unrelated streams.
    value = 0x9E3779B97F4A7C15
    for k in keys:
        value = (value ^ (k + 0x632BE59BD9B4E019 + (value << 6) + (value >> 2))) & 0xFFFFFFFFFFFFFFFF
    return torch.Generator().manual_seed(value)


def augment(img: Image.Image, load_size: int, crop_size: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Resize to load_size x load_size (bicubic), random crop_size crop, random horizontal flip, to [-1, 1].

    Resizing to a square first also upscales an image smaller than the crop, as published.
    """
    img = resize_square(img, load_size)
    top, left, flipped = crop_params(load_size, crop_size, flip, generator)
    img = TF.crop(img, top, left, crop_size, crop_size)
    if flipped:
        img = TF.horizontal_flip(img)
    return image_to_tensor(img)


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """The deterministic half of ``augment``: bicubic resize to size x size (what a cache may keep)."""
    return TF.resize(img, [size, size], interpolation=InterpolationMode.BICUBIC)


def crop_params(load_size: int, crop_size: int, flip: bool, generator: torch.Generator) -> tuple[int, int, bool]:
    """The random half of ``augment``: (top, left, flipped), drawn in a fixed order from ``generator``.

    Shared with the on-device path (cyclegan.fastdata) so both crop and flip the same pixels.
    """
    top = int(torch.randint(load_size - crop_size + 1, (), generator=generator))
    left = int(torch.randint(load_size - crop_size + 1, (), generator=generator))
    flipped = bool(flip and torch.rand((), generator=generator).item() < 0.5)
    return top, left, flipped


def eval_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """An image as the network sees it at evaluation: resized to size x size, no randomness."""
    return image_to_tensor(TF.resize(img, [size, size], interpolation=InterpolationMode.BICUBIC))


class UnpairedDataset(Dataset):
    """Item i of an epoch: the i-th A image of that epoch's shuffled order with a random B image.

    Length is max(len(A), len(B)), as published. Call ``set_epoch`` before each epoch.
    """

    def __init__(self, paths_a: list[Path], paths_b: list[Path], load_size: int, crop_size: int,
                 flip: bool, seed: int = 0) -> None:
        self.paths_a, self.paths_b = list(paths_a), list(paths_b)
        self.load_size, self.crop_size, self.flip, self.seed = load_size, crop_size, flip, seed
        self.epoch = 0
        self._order_a = self._order_b = torch.arange(0)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._order_a = torch.randperm(len(self.paths_a), generator=_rng(self.seed, epoch, 1))
        self._order_b = torch.randperm(len(self.paths_b), generator=_rng(self.seed, epoch, 2))

    def __len__(self) -> int:
        return max(len(self.paths_a), len(self.paths_b))

    def pair(self, index: int) -> tuple[int, int]:
        """Positions in ``paths_a`` / ``paths_b`` of item ``index`` of the current epoch."""
        return int(self._order_a[index % len(self.paths_a)]), int(self._order_b[index % len(self.paths_b)])

    def generator(self, index: int) -> torch.Generator:
        """The generator item ``index`` of the current epoch draws its crops and flips from."""
        return _rng(self.seed, self.epoch, index, 3)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        ia, ib = self.pair(index)
        path_a, path_b = self.paths_a[ia], self.paths_b[ib]
        generator = self.generator(index)
        a = augment(load_image(path_a), self.load_size, self.crop_size, self.flip, generator)
        b = augment(load_image(path_b), self.load_size, self.crop_size, self.flip, generator)
        return a, b


def epoch_indices(length: int, start: int = 0, rank: int = 0, world_size: int = 1) -> list[int]:
    """The dataset indices one rank visits in an epoch, from batch position ``start`` on.

    The shuffling lives in the dataset (per epoch), so plain ranges here keep resume simple.
    """
    return list(range(rank, length, world_size))[start:]
