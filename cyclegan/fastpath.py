"""Keeping a GPU busy: a decoded uint8 image cache with on-device augmentation, and torch.compile
with a clean fallback.

The cache holds every training image already resized to ``load_size`` (the deterministic half of
``cyclegan.data.augment``), as uint8: 245 KB per image at 286 px, so a thousand-image domain is a
quarter of a gigabyte. Each batch is then cut out of it with the same crop and flip draws as the
Pillow path (``data.crop_params`` from the same per-item generator), so the pixels are identical
to the DataLoader's, only without decoding, resizing and a host-to-device copy every step. The
cache lives on the GPU when it fits there, else in pinned host memory with non-blocking copies.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision.transforms.v2 import functional as TF

from .config import TrainConfig
from .data import UnpairedDataset, crop_params, load_image, resize_square

log = logging.getLogger(__name__)

COMPILE_BACKEND = "inductor"  # torch.compile's default; tests swap in "eager" to stay fast
CACHE_SHARE = 0.25  # at most this share of the free memory (device or host) goes to the cache


def cache_bytes(n_images: int, load_size: int) -> int:
    return n_images * 3 * load_size * load_size


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


def build_cache(paths: Sequence[Path], load_size: int, home: torch.device, pin: bool = False) -> torch.Tensor:
    """Decode and resize every image once: a uint8 tensor (N, 3, load_size, load_size) on ``home``."""
    cache = torch.empty((len(paths), 3, load_size, load_size), dtype=torch.uint8, pin_memory=pin)

    def fill(i: int) -> None:
        cache[i] = TF.pil_to_tensor(resize_square(load_image(paths[i]), load_size))

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(fill, range(len(paths))))
    return cache.to(home) if home.type != "cpu" else cache


class ImageCache:
    """Both domains decoded once; see the module docstring for where they live."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.a, self.b = a, b

    @classmethod
    def build(cls, dataset: UnpairedDataset, device: torch.device) -> "ImageCache | None":
        """The cache for ``dataset``, or None (with a warning) when it does not fit in memory."""
        n = len(dataset.paths_a) + len(dataset.paths_b)
        home = cache_home(n, dataset.load_size, device)
        if home is None:
            log.warning("cache_images: %d images at %d px need %.0f MB, more than %d%% of free memory; "
                        "decoding from disk every epoch instead", n, dataset.load_size,
                        cache_bytes(n, dataset.load_size) / 2**20, int(CACHE_SHARE * 100))
            return None
        pin = device.type == "cuda" and home.type == "cpu"
        a = build_cache(dataset.paths_a, dataset.load_size, home, pin)
        b = build_cache(dataset.paths_b, dataset.load_size, home, pin)
        log.info("Cached %d images (%.0f MB, uint8) on %s", n, (a.numel() + b.numel()) / 2**20, home)
        return cls(a, b)


def _crop(images: torch.Tensor, index: int, top: int, left: int, size: int, flipped: bool) -> torch.Tensor:
    patch = images[index, :, top:top + size, left:left + size]
    return patch.flip(-1) if flipped else patch


def _to_unit(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float in [-1, 1] on ``device``, as ``data.image_to_tensor`` does."""
    return batch.to(device, non_blocking=True).float().div_(127.5).sub_(1.0)


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
                ta, la, fa = crop_params(d.load_size, d.crop_size, d.flip, generator)
                tb, lb, fb = crop_params(d.load_size, d.crop_size, d.flip, generator)
                crops_a.append(_crop(self.cache.a, ia, ta, la, d.crop_size, fa))
                crops_b.append(_crop(self.cache.b, ib, tb, lb, d.crop_size, fb))
            yield _to_unit(torch.stack(crops_a), self.device), _to_unit(torch.stack(crops_b), self.device)


def epoch_batches(dataset: UnpairedDataset, cache: ImageCache | None, indices: Sequence[int], train: TrainConfig,
                  device: torch.device) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """This epoch's batches: cut from the cache when there is one, else decoded by a DataLoader
    (pinned memory on CUDA, so the trainer's non-blocking copies overlap with compute)."""
    if cache is not None:
        return DeviceBatches(dataset, cache, indices, train.batch_size, device)
    return DataLoader(Subset(dataset, list(indices)), batch_size=train.batch_size, shuffle=False,
                      num_workers=train.num_workers, pin_memory=device.type == "cuda")


def compile_or_eager(net: nn.Module, example: torch.Tensor, autocast: Callable[[], AbstractContextManager],
                     backend: str | Callable | None = None) -> nn.Module:
    """``torch.compile(net)`` when it compiles and runs forward and backward on ``example``; else
    ``net`` unchanged, with a warning saying why.

    Compilation is lazy, so the trial step is what surfaces a missing compiler or an unsupported op;
    it runs before training, so a failure never leaves an optimizer half-stepped. The trial's
    gradients are discarded.
    """
    backend = backend or COMPILE_BACKEND
    try:
        compiled = torch.compile(net, backend=backend)
        with autocast():
            out = compiled(example)
        out.float().mean().backward()
    except Exception as exc:  # noqa: BLE001 - compiler failures come in many types; all mean "run eagerly"
        root: BaseException = exc
        while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None:
            root = inner  # the compiler's own error, not dynamo's wrapper around it
        first_line = (str(root).strip().splitlines() or [""])[0]
        log.warning("torch.compile (%s) failed for %s, training it eagerly: %s: %s",
                    getattr(backend, "__name__", backend), type(net).__name__, type(root).__name__, first_line[:200])
        torch._dynamo.reset()
        compiled = net
    finally:
        net.zero_grad(set_to_none=True)
    return compiled
