"""Training tensors from image folders: the unpaired dataset, its crops and flips, and the
on-device image cache.

Every random choice (pairing, crop, flip) is drawn from a generator seeded by
(seed, epoch, index), so an epoch is the same whether it runs straight through, on several
workers, after a resume, or out of the cache.

How an image becomes a crop_size square is ``--preprocess`` (PREPROCESSORS): by default, as
published, it is resized to a load_size square whatever its aspect ratio, then cropped.

The cache (default preprocess only) holds every training image already resized to ``load_size``
(the deterministic half of ``augment``), as uint8: 245 KB per RGB image at 286 px, so a
thousand-image domain is a quarter of a gigabyte. Each batch is then cut out of it with the same
crop and flip draws as the Pillow path (``crop_params`` from the same per-item generator), so the
pixels are identical to the DataLoader's, only without decoding, resizing and a host-to-device
copy every step. The cache lives on the GPU when it fits there, else in pinned host memory with
non-blocking copies.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..images import load_image, pil_to_tensor, to_float

log = logging.getLogger(__name__)

def _rng(*keys: int) -> torch.Generator:
    # A 64-bit mix of the keys: distinct (seed, epoch, index) give unrelated streams.
    value = 0x9E3779B97F4A7C15
    for k in keys:
        value = (value ^ (k + 0x632BE59BD9B4E019 + (value << 6) + (value >> 2))) & 0xFFFFFFFFFFFFFFFF
    return torch.Generator().manual_seed(value)


def augment(img: Image.Image, load_size: int, crop_size: int, flip: bool, generator: torch.Generator,
            preprocess: str = "resize_and_crop") -> torch.Tensor:
    """Scale as ``preprocess`` says (bicubic), random crop_size crop, random horizontal flip, to [-1, 1].

    Every choice ends in a crop_size square, so images of any shape batch together.
    """
    img = PREPROCESSORS[preprocess](img, load_size, crop_size)
    width, height = img.size
    top, left, flipped = crop_params(height, width, crop_size, flip, generator)
    img = TF.crop(img, top, left, crop_size, crop_size)
    if flipped:
        img = TF.horizontal_flip(img)
    return pil_to_tensor(img)


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Bicubic resize to size x size: the deterministic half of the default preprocess (what a cache keeps)."""
    return _resize(img, size, size)


def _resize(img: Image.Image, width: int, height: int) -> Image.Image:
    return TF.resize(img, [height, width], interpolation=InterpolationMode.BICUBIC)


def _resize_and_crop(img: Image.Image, load_size: int, crop_size: int) -> Image.Image:  # noqa: ARG001
    """The published default: a load_size square, whatever the aspect ratio (it also upscales an
    image smaller than the crop)."""
    return resize_square(img, load_size)


def _scale_width(img: Image.Image, load_size: int, crop_size: int) -> Image.Image:
    """Width to load_size, aspect kept, except that the height is at least crop_size (as the
    official scale_width_and_crop: a wide panorama is stretched up to the crop)."""
    width, height = img.size
    return _resize(img, load_size, max(crop_size, load_size * height // width))


def _scale_shortside(img: Image.Image, load_size: int, crop_size: int) -> Image.Image:  # noqa: ARG001
    """Shorter side to load_size, aspect kept, for landscape and portrait images alike."""
    width, height = img.size
    scale = load_size / min(width, height)
    return _resize(img, max(load_size, round(width * scale)), max(load_size, round(height * scale)))


def _crop_only(img: Image.Image, load_size: int, crop_size: int) -> Image.Image:  # noqa: ARG001
    """No scaling: crops at the image's own resolution. An image smaller than the crop is scaled up
    (aspect kept) until its shorter side is crop_size, where the official code would stop with an error."""
    return img if min(img.size) >= crop_size else _scale_shortside(img, crop_size, crop_size)


# --preprocess (config.PREPROCESS): the image scaled so that crop_size squares can be cut from it.
PREPROCESSORS = {
    "resize_and_crop": _resize_and_crop,
    "scale_width_and_crop": _scale_width,
    "scale_shortside_and_crop": _scale_shortside,
    "crop": _crop_only,
}


def crop_params(height: int, width: int, crop_size: int, flip: bool,
                generator: torch.Generator) -> tuple[int, int, bool]:
    """The random half of ``augment``: (top, left, flipped), drawn in a fixed order from ``generator``.

    Shared with the on-device cache (``DeviceBatches``) so both crop and flip the same pixels.
    """
    top = int(torch.randint(height - crop_size + 1, (), generator=generator))
    left = int(torch.randint(width - crop_size + 1, (), generator=generator))
    flipped = bool(flip and torch.rand((), generator=generator).item() < 0.5)
    return top, left, flipped


def eval_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """An image as the network sees it at evaluation: resized to size x size, no randomness."""
    return pil_to_tensor(TF.resize(img, [size, size], interpolation=InterpolationMode.BICUBIC))


class UnpairedDataset(Dataset):
    """Item i of an epoch: the i-th A image of that epoch's shuffled order with a random B image.

    Length is max(len(A), len(B)), as published. Call ``set_epoch`` before each epoch. Images are
    decoded with their domain's channel count (``channels``: A's and B's) and scaled as
    ``preprocess`` (a key of PREPROCESSORS) says.
    """

    def __init__(self, paths_a: list[Path], paths_b: list[Path], load_size: int, crop_size: int,
                 flip: bool, seed: int = 0, channels: tuple[int, int] = (3, 3),
                 preprocess: str = "resize_and_crop") -> None:
        self.paths_a, self.paths_b = list(paths_a), list(paths_b)
        self.load_size, self.crop_size, self.flip, self.seed = load_size, crop_size, flip, seed
        self.channels, self.preprocess = channels, preprocess
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
        a = augment(load_image(path_a, self.channels[0]), self.load_size, self.crop_size, self.flip, generator,
                    self.preprocess)
        b = augment(load_image(path_b, self.channels[1]), self.load_size, self.crop_size, self.flip, generator,
                    self.preprocess)
        return a, b


def epoch_indices(length: int, start: int = 0, rank: int = 0, world_size: int = 1) -> list[int]:
    """The dataset indices one rank visits in an epoch, from batch position ``start`` on.

    The shuffling lives in the dataset (per epoch), so plain ranges here keep resume simple.
    """
    return list(range(rank, length, world_size))[start:]


CACHE_SHARE = 0.25  # at most this share of the free memory (device or host) goes to the cache


def cache_bytes(n_images: int, load_size: int, channels: int = 3) -> int:
    return n_images * channels * load_size * load_size


def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cache_home(n_images: int, load_size: int, device: torch.device) -> torch.device | None:
    """Where a cache of ``n_images`` fits: the training device, else host memory, else nowhere (None)."""
    need = cache_bytes(n_images, load_size)
    if need <= CACHE_SHARE * _free_bytes(device):
        return device
    if device.type == "cuda" and need <= CACHE_SHARE * _free_bytes(torch.device("cpu")):
        return torch.device("cpu")
    return None


def build_cache(paths: Sequence[Path], load_size: int, home: torch.device, pin: bool = False,
                channels: int = 3) -> torch.Tensor:
    """Decode and resize every image once: a uint8 tensor (N, channels, load_size, load_size) on ``home``."""
    cache = torch.empty((len(paths), channels, load_size, load_size), dtype=torch.uint8, pin_memory=pin)

    def fill(i: int) -> None:
        cache[i] = TF.pil_to_tensor(resize_square(load_image(paths[i], channels), load_size))

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(fill, range(len(paths))))
    return cache.to(home) if home.type != "cpu" else cache


class ImageCache:
    """Both domains decoded once; see the module docstring for where they live."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.a, self.b = a, b

    @classmethod
    def build(cls, dataset: UnpairedDataset, device: torch.device) -> "ImageCache | None":
        """The cache for ``dataset``, or None (with a warning) when it does not fit in memory or the
        images keep their own shapes (a --preprocess other than resize_and_crop)."""
        if dataset.preprocess != "resize_and_crop":
            log.warning("cache_images: only --preprocess resize_and_crop gives images of one size to cache; "
                        "decoding from disk every epoch instead")
            return None
        n = len(dataset.paths_a) + len(dataset.paths_b)
        home = cache_home(n, dataset.load_size, device)
        if home is None:
            log.warning("cache_images: %d images at %d px need %.0f MB, more than %d%% of free memory; "
                        "decoding from disk every epoch instead", n, dataset.load_size,
                        cache_bytes(n, dataset.load_size) / 2**20, int(CACHE_SHARE * 100))
            return None
        pin = device.type == "cuda" and home.type == "cpu"
        a = build_cache(dataset.paths_a, dataset.load_size, home, pin, dataset.channels[0])
        b = build_cache(dataset.paths_b, dataset.load_size, home, pin, dataset.channels[1])
        log.info("Cached %d images (%.0f MB, uint8) on %s", n, (a.numel() + b.numel()) / 2**20, home)
        return cls(a, b)


def _crop(images: torch.Tensor, index: int, top: int, left: int, size: int, flipped: bool) -> torch.Tensor:
    patch = images[index, :, top:top + size, left:left + size]
    return patch.flip(-1) if flipped else patch


class DeviceBatches:
    """The batches of one epoch (for one rank), cut from an ImageCache on the device.

    Item i gets the same pair of images, crops and flips as ``dataset[i]``, so swapping this for a
    DataLoader over the same indices changes nothing but speed.
    """

    def __init__(self, dataset: UnpairedDataset, cache: ImageCache, indices: Sequence[int], batch_size: int,
                 device: torch.device) -> None:
        self.dataset, self.cache, self.indices = dataset, cache, list(indices)
        self.batch_size, self.device = batch_size, device

    def __len__(self) -> int:
        return (len(self.indices) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        d = self.dataset
        for start in range(0, len(self.indices), self.batch_size):
            crops_a, crops_b = [], []
            for index in self.indices[start:start + self.batch_size]:
                ia, ib = d.pair(index)
                generator = d.generator(index)  # A draws first, then B, as in UnpairedDataset.__getitem__
                ta, la, fa = crop_params(d.load_size, d.load_size, d.crop_size, d.flip, generator)
                tb, lb, fb = crop_params(d.load_size, d.load_size, d.crop_size, d.flip, generator)
                crops_a.append(_crop(self.cache.a, ia, ta, la, d.crop_size, fa))
                crops_b.append(_crop(self.cache.b, ib, tb, lb, d.crop_size, fb))
            yield (to_float(torch.stack(crops_a).to(self.device, non_blocking=True)),
                   to_float(torch.stack(crops_b).to(self.device, non_blocking=True)))


def epoch_batches(dataset: UnpairedDataset, cache: ImageCache | None, indices: Sequence[int], batch_size: int,
                  num_workers: int, device: torch.device) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """This epoch's batches: cut from the cache when there is one, else decoded by a DataLoader
    (pinned memory on CUDA, so the trainer's non-blocking copies overlap with compute)."""
    if cache is not None:
        return DeviceBatches(dataset, cache, indices, batch_size, device)
    return DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers, pin_memory=device.type == "cuda")
