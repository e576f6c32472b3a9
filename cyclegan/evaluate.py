"""Held-out evaluation: is the translation any good, and is training still healthy?

Two families of numbers, both computed on images the generators never trained on:

* **Without ground truth or pretrained weights** (works offline, on any domain): the sliced
  Wasserstein distance (SWD) between patches of translated images and real target images over a
  Laplacian pyramid (Karras et al., 2018), beside the same distance for the input left unchanged;
  cycle-reconstruction L1; identity-mapping L1; output diversity relative to the inputs'; and how
  well each discriminator tells real from translated (mean scores and the AUC of that separation).
* **With ground truth** (the synthetic dataset): L1, PSNR and SSIM against it, beside the identity
  baseline (the input returned unchanged), which is the number a model must beat.

FID and KID come from torchmetrics with torch-fidelity's Inception network when that optional
extra (``pip install cyclegan[metrics]``) and its weights are available; otherwise they are
skipped with one log line, never an error.
"""

from __future__ import annotations

import functools
import logging
import math
import tempfile
import warnings
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .config import SELECT_BY, Config, TrainConfig
from .data import eval_tensor, find_images, image_to_tensor, load_image
from .errors import CycleGANError, DataError
from .translate import Translator

log = logging.getLogger(__name__)

# Where the synthetic dataset (and any dataset laid out like it) keeps its ground truth.
GROUND_TRUTH = {"AtoB": ("testA", "gt/AtoB"), "BtoA": ("testB", "gt/BtoA")}
MAX_HELDOUT = 200  # held-out images per domain: enough for stable SWD, cheap enough to run every epoch
# The metrics a run can select its best epoch by; each is averaged over the two directions and
# lower is better.
SELECTABLE = SELECT_BY
# SWD settings of Karras et al. (2018): 7x7 neighbourhoods, 128 per image and pyramid level, the
# coarsest level 16 px, 4 x 128 random directions.
SWD_PATCH = 7
SWD_PATCHES_PER_IMAGE = 128
SWD_MIN_LEVEL = 16
SWD_DIRECTIONS = 512
SWD_QUANTILES = 4096  # points at which the sorted projections are compared
DIVERSITY_SIZE = 64  # images are compared pairwise at this size: enough to see collapse, cheap


# ---------------------------------------------------------------------------------------------
# Pixel-wise scores against ground truth


def l1(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference on the [0, 1] pixel scale."""
    return float((a - b).abs().mean() / 2)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB on the [0, 1] pixel scale (100 for identical images)."""
    mse = float(((a - b) / 2).pow(2).mean())
    return 100.0 if mse == 0 else 10 * math.log10(1.0 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Structural similarity (Wang et al., 2004) of two images in [-1, 1], on the [0, 1] scale.

    The standard form: an 11x11 Gaussian window of sigma 1.5 (smaller for tiny images),
    K1 = 0.01, K2 = 0.03, averaged over pixels and channels. 1.0 means identical.
    """
    x, y = ((t.float().reshape(-1, *t.shape[-3:]) + 1) / 2 for t in (a, b))
    channels = x.shape[1]
    size = min(11, *x.shape[-2:])
    size -= 1 - size % 2  # an odd window
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-coords**2 / (2 * 1.5**2))
    g /= g.sum()
    window = (g[:, None] * g[None, :]).expand(channels, 1, size, size)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(value.mean())


def ground_truth_pairs(data_dir: Path, direction: str) -> list[tuple[Path, Path]]:
    source, truth = (Path(data_dir) / p for p in GROUND_TRUTH[direction])
    if not truth.is_dir():
        return []
    pairs = []
    for path in find_images(source, label=f"{GROUND_TRUTH[direction][0]} folder"):
        target = truth / path.relative_to(source)
        if target.exists():
            pairs.append((path, target))
    return pairs


def evaluate_ground_truth(translator: Translator, data_dir: str | Path) -> dict[str, dict[str, float]]:
    """For each direction with ground truth under ``data_dir``: L1, PSNR and SSIM of the
    translation and of the identity baseline, averaged over images."""
    results: dict[str, dict[str, float]] = {}
    for direction in GROUND_TRUTH:
        pairs = ground_truth_pairs(Path(data_dir), direction)
        if not pairs:
            continue
        sums = dict.fromkeys(("l1", "psnr", "ssim", "identity_l1", "identity_psnr", "identity_ssim"), 0.0)
        for source, truth in pairs:
            x = image_to_tensor(load_image(source))
            y = image_to_tensor(load_image(truth))
            if y.shape != x.shape:
                y = TF.resize(y, list(x.shape[-2:]), interpolation=InterpolationMode.BICUBIC)
            out = translator.translate_tensor(x.unsqueeze(0), direction)[0]
            for prefix, image in (("", out), ("identity_", x)):
                sums[f"{prefix}l1"] += l1(image, y)
                sums[f"{prefix}psnr"] += psnr(image, y)
                sums[f"{prefix}ssim"] += ssim(image, y)
        results[direction] = {k: v / len(pairs) for k, v in sums.items()} | {"images": len(pairs)}
    if not results:
        raise DataError(f"{data_dir} has no ground truth to evaluate against: expected testA/ with gt/AtoB/ "
                        "or testB/ with gt/BtoA/ (as `cyclegan make-dataset` writes)")
    return results


# ---------------------------------------------------------------------------------------------
# Held-out images


def heldout_split(paths: list[Path], fraction: float, seed: int, salt: int) -> tuple[list[Path], list[Path]]:
    """(training, held-out) paths: ``fraction`` of ``paths`` (at least 1, at most MAX_HELDOUT) set aside.

    The choice depends only on ``seed``, ``salt`` (one per domain) and the sorted paths, so a
    resumed run holds out exactly the images it held out before. A folder of one image cannot be
    split; it is then returned as both (and the caller says so).
    """
    paths = sorted(paths)
    if len(paths) < 2:
        return paths, list(paths)
    count = min(MAX_HELDOUT, len(paths) - 1, max(1, round(len(paths) * fraction)))
    chosen = set(np.random.default_rng([seed, salt]).permutation(len(paths))[:count].tolist())
    return ([p for i, p in enumerate(paths) if i not in chosen],
            [p for i, p in enumerate(paths) if i in chosen])


def limit_paths(paths: list[Path], seed: int, salt: int, limit: int = MAX_HELDOUT) -> list[Path]:
    """At most ``limit`` of ``paths``, a fixed seeded choice kept in sorted order."""
    paths = sorted(paths)
    if len(paths) <= limit:
        return paths
    chosen = np.sort(np.random.default_rng([seed, salt]).permutation(len(paths))[:limit])
    return [paths[i] for i in chosen]


_DOMAIN_SALT = {"A": 1, "B": 2}  # keeps the two domains' seeded choices independent


def heldout_from_test_folder(folder: str | Path, seed: int, domain: str) -> list[Path]:
    """At most MAX_HELDOUT images of domain ``domain``'s test folder: one seeded choice, so that
    training and a later ``cyclegan evaluate --data`` score the same images."""
    return limit_paths(find_images(folder, label=f"test{domain} folder"), seed, _DOMAIN_SALT[domain])


def heldout_for(train: TrainConfig, domain: str, train_paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(training, held-out) images of one domain ("A" or "B") as a run's config defines them.

    The domain's test folder when it has one (at most MAX_HELDOUT of it), else ``val_fraction`` of
    its training images, which then leave the training set. With evaluation off (``eval_every``
    0) and no test folder nothing is held out, and the training images double as sample images.
    """
    test = train.test_a if domain == "A" else train.test_b
    if test:
        return train_paths, heldout_from_test_folder(test, train.seed, domain)
    if train.eval_every == 0:
        return train_paths, train_paths
    kept, heldout = heldout_split(train_paths, train.val_fraction, train.seed, _DOMAIN_SALT[domain])
    if kept == heldout:
        log.warning("domain %s has a single training image: it is also used as the held-out image", domain)
    else:
        log.info("domain %s: %d of %d training images held out for evaluation (--val-fraction %g)",
                 domain, len(heldout), len(train_paths), train.val_fraction)
    return kept, heldout


def load_heldout(paths: list[Path], size: int) -> torch.Tensor:
    """Images as (N, 3, size, size) uint8, decoded once; an unreadable one is skipped with a warning.

    uint8 keeps 200 images at 256 px to 39 MB, so the set stays in memory for the whole run.
    """
    images = []
    for path in paths:
        try:
            images.append(to_uint8(eval_tensor(load_image(path), size)))
        except DataError as exc:
            log.warning("held-out image skipped: %s", exc)
    if not images:
        raise DataError(f"none of the {len(paths)} held-out images could be read (first: {paths[0]}); "
                        "check the test folders or the training folders")
    return torch.stack(images)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats to 0-255 uint8, as an image file would store them."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """0-255 uint8 to [-1, 1] floats."""
    return x.float().div(127.5).sub(1.0)


# ---------------------------------------------------------------------------------------------
# Sliced Wasserstein distance over a Laplacian pyramid (Karras et al., 2018)


def _binomial_blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=x.device) / 16
    kernel = (k[:, None] * k[None, :]).expand(x.shape[1], 1, 5, 5)
    mode = "reflect" if min(x.shape[-2:]) > 2 else "replicate"
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode=mode), kernel, groups=x.shape[1])


def laplacian_pyramid(x: torch.Tensor, min_size: int = SWD_MIN_LEVEL) -> list[torch.Tensor]:
    """Band-pass levels from full resolution down, then the low-pass residual at >= ``min_size`` px.

    Each level holds the detail of one scale, so SWD compares textures at every scale separately.
    """
    levels = []
    while min(x.shape[-2:]) // 2 >= min_size:
        down = _binomial_blur(x)[..., ::2, ::2]
        up = F.interpolate(down, size=x.shape[-2:], mode="bilinear", align_corners=False)
        levels.append(x - up)
        x = down
    return levels + [x]


def _patches(level: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random SWD_PATCH x SWD_PATCH neighbourhoods per image: (N * count, C, P, P)."""
    n, c, h, w = level.shape
    p = min(SWD_PATCH, h, w)
    ys = torch.randint(h - p + 1, (n, count), generator=generator, device=level.device)
    xs = torch.randint(w - p + 1, (n, count), generator=generator, device=level.device)
    offsets = torch.arange(p, device=level.device)
    rows = (ys[..., None] + offsets)[..., :, None]  # (n, count, p, 1)
    cols = (xs[..., None] + offsets)[..., None, :]  # (n, count, 1, p)
    images = torch.arange(n, device=level.device)[:, None, None, None]
    picked = level.permute(0, 2, 3, 1)[images, rows, cols]  # (n, count, p, p, c)
    return picked.permute(0, 1, 4, 2, 3).reshape(n * count, c, p, p)


def _descriptors(images: torch.Tensor, generator: torch.Generator, device: torch.device,
                 chunk: int = 32) -> list[torch.Tensor]:
    """Per pyramid level, the random patches of every image, flattened (uint8 images in, floats out)."""
    per_level: list[list[torch.Tensor]] = []
    for start in range(0, len(images), chunk):
        levels = laplacian_pyramid(to_float(images[start:start + chunk].to(device)))
        if not per_level:
            per_level = [[] for _ in levels]
        for store, level in zip(per_level, levels):
            store.append(_patches(level, SWD_PATCHES_PER_IMAGE, generator))
    return [torch.cat(parts) for parts in per_level]


class SlicedWasserstein:
    """Sliced Wasserstein distance (x 1000, as Karras et al. report it) to one fixed reference set.

    Per pyramid level, patch descriptors are projected on random unit directions and the 1-D
    Wasserstein distance of each projection is averaged. The reference's sorted projections are
    computed once and kept at SWD_QUANTILES quantiles, so scoring each epoch's translations against
    the same held-out images pays only for the translations. Descriptors are normalised with the
    *reference* set's per-channel mean and standard deviation (Karras et al. normalise each set by
    its own, which would hide a global colour cast: exactly the failure a translation can have).
    Patch positions and directions come from ``seed``, so the reference compared with itself
    scores exactly 0 and scores are comparable across epochs.
    """

    def __init__(self, reference: torch.Tensor, device: torch.device | str = "cpu", seed: int = 0) -> None:
        self.device, self.seed = torch.device(device), seed
        self.size = tuple(reference.shape[-2:])
        directions = torch.Generator(self.device).manual_seed(seed + 1)
        self.levels = []
        for y in _descriptors(reference, self._positions(), self.device):
            mean = y.mean(dim=(0, 2, 3), keepdim=True)
            std = y.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
            dirs = torch.randn(y[0].numel(), SWD_DIRECTIONS, generator=directions, device=self.device)
            dirs /= dirs.norm(dim=0, keepdim=True)
            level = (mean, std, dirs)
            self.levels.append((*level, _sorted_quantiles(y, level)))

    def _positions(self) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(self.seed)

    def __call__(self, images: torch.Tensor) -> float:
        if tuple(images.shape[-2:]) != self.size:
            raise ValueError(f"SWD needs images of one size, got {tuple(images.shape[-2:])} and {self.size}")
        distances = [float((_sorted_quantiles(x, level[:3]) - level[3]).abs().mean())
                     for x, level in zip(_descriptors(images, self._positions(), self.device), self.levels)]
        return 1e3 * sum(distances) / len(distances)


def _sorted_quantiles(descriptors: torch.Tensor, level: tuple[torch.Tensor, ...], chunk: int = 128) -> torch.Tensor:
    """(directions, SWD_QUANTILES): each projection of the normalised descriptors, sorted, read at
    evenly spaced quantiles, so sets of any size compare point by point."""
    mean, std, dirs = level
    x = ((descriptors - mean) / std).flatten(1)
    grid = ((torch.arange(SWD_QUANTILES, device=x.device) + 0.5) * len(x) / SWD_QUANTILES).long()
    # Sorting along rows is the fast layout; directions go in chunks to bound memory.
    return torch.cat([(d.T @ x.T).sort(1).values[:, grid] for d in dirs.split(chunk, dim=1)])


def swd(images: torch.Tensor, reference: torch.Tensor, device: torch.device | str = "cpu", seed: int = 0) -> float:
    """SWD between two uint8 image sets of one size (see SlicedWasserstein)."""
    return SlicedWasserstein(reference, device, seed)(images)


# ---------------------------------------------------------------------------------------------
# Collapse and discriminator balance


def mean_pairwise_distance(images: torch.Tensor, size: int = DIVERSITY_SIZE, device: torch.device | str = "cpu",
                           chunk: int = 16) -> float:
    """Mean L1 distance (0-1 scale) over all pairs of uint8 images, compared at ``size`` px at most."""
    if len(images) < 2:
        return float("nan")
    x = to_float(images.to(device))
    if max(x.shape[-2:]) > size:
        x = F.interpolate(x, size=(size, size), mode="area")
    flat = x.flatten(1)
    total = sum(float((flat[i:i + chunk, None] - flat[None]).abs().mean(-1).sum()) for i in range(0, len(flat), chunk))
    n = len(flat)
    return total / 2 / (n * (n - 1))  # /2: [-1, 1] to the 0-1 scale; the diagonal adds 0


def separation_auc(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Probability that a random real image scores above a random translated one (ties count 1/2).

    0.5: the discriminator cannot tell them apart; 1.0: it separates them perfectly, whatever
    scale its loss puts the scores on.
    """
    diff = real.double()[:, None] - fake.double()[None, :]
    return float((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean())


# ---------------------------------------------------------------------------------------------
# FID and KID (optional: torchmetrics + torch-fidelity)


class _Precomputed(nn.Module):
    """Lets torchmetrics' FID and KID take features we computed once for both."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _inception_state(weights: str) -> dict[str, torch.Tensor]:
    """The Inception weights as plain tensors, never through pickle: a local file or torch-fidelity's
    own download (cached by torch.hub, so it is fetched once)."""
    if weights:
        path = Path(weights)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return torch.hub.load_state_dict_from_url(URL_INCEPTION_V3, map_location="cpu", progress=False,
                                              weights_only=True)


@functools.lru_cache(maxsize=4)
def inception_network(weights: str = "") -> nn.Module | None:
    """torch-fidelity's FID Inception-v3 (2048 pooled features), or None when it cannot be had.

    ``weights`` is a local .pth/.pt/.safetensors file; empty means the package's own download.
    Loaded once per process; when the package or its weights are missing this logs why, once, and
    FID/KID are skipped.
    """
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3

        state = _inception_state(weights)
        # torch-fidelity reads a weights file with pickle enabled; hand it a file that we just
        # wrote from plain tensors, never the user's or the network's file.
        with tempfile.TemporaryDirectory() as tmp:
            safe_copy = Path(tmp) / "inception.pt"
            torch.save(state, safe_copy)
            return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                      feature_extractor_weights_path=str(safe_copy))
    except ImportError:
        log.warning("FID/KID skipped: install the optional metrics extra (pip install 'cyclegan[metrics]')")
    except Exception as exc:  # offline, a missing or foreign file: FID is optional, never fatal
        source = weights or "torch-fidelity's download"
        log.warning("FID/KID skipped: Inception weights from %s could not be loaded (%s: %s); pass "
                    "--inception-weights PATH to a local copy", source, type(exc).__name__, exc)
    return None


@torch.inference_mode()
def image_features(network: nn.Module, images: torch.Tensor, device: torch.device, batch: int = 32) -> torch.Tensor:
    """Features of uint8 images, computed in batches on ``device``; (N, F) float64 on the CPU."""
    return torch.cat([network(images[i:i + batch].to(device)).double().cpu() for i in range(0, len(images), batch)])


def fid_kid(real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    """FID and KID between two feature sets (N, F). Named so only with Inception features."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if min(len(real), len(fake)) < 2:
        return {}
    fid = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # KID's note that it keeps features in memory
        kid = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=100,
                                      subset_size=min(1000, len(real), len(fake)))
    with torch.random.fork_rng(devices=[]):  # KID draws subsets from the global RNG
        torch.manual_seed(0)
        for metric in (fid, kid):
            metric.update(real, real=True)
            metric.update(fake, real=False)
        return {"fid": float(fid.compute()), "kid": float(kid.compute()[0])}


# ---------------------------------------------------------------------------------------------
# Held-out evaluation of a pair of generators (and their discriminators)


class HeldOut:
    """The held-out images of both domains and what every evaluation of them reuses.

    Images stay in memory as uint8; the SWD reference descriptors, the do-nothing baselines, the
    inputs' spread and the real images' Inception features are computed on first use and kept, so
    an evaluation each epoch pays only for the new translations.
    """

    def __init__(self, images_a: torch.Tensor, images_b: torch.Tensor, device: torch.device | str = "cpu") -> None:
        self.images = {"A": images_a, "B": images_b}
        self.device = torch.device(device)
        self._cache: dict[tuple[str, str], object] = {}

    @classmethod
    def from_paths(cls, paths_a: list[Path], paths_b: list[Path], size: int,
                   device: torch.device | str = "cpu") -> "HeldOut":
        return cls(load_heldout(paths_a, size), load_heldout(paths_b, size), device)

    def _cached(self, kind: str, domain: str, compute: Callable[[], object]) -> object:
        if (kind, domain) not in self._cache:
            self._cache[kind, domain] = compute()
        return self._cache[kind, domain]

    def swd(self, images: torch.Tensor, domain: str) -> float:
        """SWD of ``images`` to this set's real images of ``domain``."""
        reference = self._cached("swd", domain, lambda: SlicedWasserstein(self.images[domain], self.device))
        return reference(images)

    def swd_identity(self, source: str, target: str) -> float:
        """The do-nothing baseline: SWD of the source domain's images, unchanged, to the target's."""
        return self._cached("swd_identity", source, lambda: self.swd(self.images[source], target))

    def diversity(self, outputs: torch.Tensor, source: str) -> float:
        """How varied translations of the ``source`` images are relative to those images: 1 keeps
        their variety, 0 means every input maps to the same image (mode collapse)."""
        spread = self._cached("spread", source, lambda: mean_pairwise_distance(self.images[source], device=self.device))
        return mean_pairwise_distance(outputs, device=self.device) / spread if spread > 0 else float("nan")

    def features(self, network: nn.Module, domain: str) -> torch.Tensor:
        return self._cached(f"features-{id(network)}", domain,
                            lambda: image_features(network, self.images[domain], self.device))


def _run(net: nn.Module, images: torch.Tensor, device: torch.device, autocast: Callable[[], AbstractContextManager],
         batch: int) -> torch.Tensor:
    """``net`` over uint8 images in batches; outputs come back to the CPU as floats."""
    outputs = []
    for i in range(0, len(images), batch):
        with autocast():
            outputs.append(net(to_float(images[i:i + batch].to(device))).float().cpu())
    return torch.cat(outputs)


def _direction(G: nn.Module, G_back: nn.Module, D: nn.Module | None, heldout: HeldOut, source: str, target: str,
               autocast, batch: int, inception: nn.Module | None) -> dict[str, float]:
    device, real_source, real_target = heldout.device, heldout.images[source], heldout.images[target]
    fake = to_uint8(_run(G, real_source, device, autocast, batch))
    back = _run(G_back, fake, device, autocast, batch)
    same = _run(G, real_target, device, autocast, batch)
    result = {
        "swd": heldout.swd(fake, target),
        "swd_identity": heldout.swd_identity(source, target),
        "cycle_l1": l1(back, to_float(real_source)),
        "identity_mapping_l1": l1(same, to_float(real_target)),
        "diversity": heldout.diversity(fake, source),
        "heldout_images": len(real_source),
    }
    if D is not None:
        real_scores = _run(D, real_target, device, autocast, batch).flatten(1).mean(1)
        fake_scores = _run(D, fake, device, autocast, batch).flatten(1).mean(1)
        result |= {"d_real": float(real_scores.mean()), "d_fake": float(fake_scores.mean()),
                   "d_auc": separation_auc(real_scores, fake_scores)}
    if inception is not None:
        result |= fid_kid(heldout.features(inception, target), image_features(inception, fake, device))
    return result


@torch.inference_mode()
def evaluate_heldout(G_AB: nn.Module, G_BA: nn.Module, heldout: HeldOut, *, D_A: nn.Module | None = None,
                     D_B: nn.Module | None = None, autocast: Callable[[], AbstractContextManager] = nullcontext,
                     batch: int = 8, inception: nn.Module | None = None) -> dict[str, dict[str, float]]:
    """Metrics of both directions on the held-out images.

    Returns ``{"AtoB": {...}, "BtoA": {...}}`` with, per direction: ``swd`` (translations vs real
    target images) and ``swd_identity`` (inputs vs target: the do-nothing baseline), ``cycle_l1``
    (source -> target -> source), ``identity_mapping_l1`` (the generator applied to target-domain
    images, which should pass through), ``diversity``, and with discriminators ``d_real``,
    ``d_fake``, ``d_auc`` (the target domain's discriminator); with an Inception network also
    ``fid`` and ``kid``. Networks are left in the mode they came in and the global RNG is
    untouched, so evaluating mid-training changes nothing about training.
    """
    nets = [n for n in (G_AB, G_BA, D_A, D_B) if n is not None]
    modes = [n.training for n in nets]
    for net in nets:
        net.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            return {"AtoB": _direction(G_AB, G_BA, D_B, heldout, "A", "B", autocast, batch, inception),
                    "BtoA": _direction(G_BA, G_AB, D_A, heldout, "B", "A", autocast, batch, inception)}
    finally:
        for net, mode in zip(nets, modes):
            net.train(mode)


def selection_value(results: dict[str, dict[str, float]], metric: str) -> float | None:
    """The best-epoch criterion: ``metric`` averaged over both directions (None when not computed)."""
    if metric not in SELECTABLE:
        raise CycleGANError(f"cannot select by {metric!r}; choose one of {', '.join(SELECTABLE)}")
    values = [r[metric] for r in results.values() if metric in r]
    return sum(values) / len(values) if len(values) == len(results) and values else None


def flatten(results: dict[str, dict[str, float]], prefix: str = "val_") -> dict[str, float]:
    """``{"AtoB": {"swd": x}}`` -> ``{"val_swd_AtoB": x}``, plus each metric's mean over directions
    as ``val_swd`` (the form metrics.csv and the plots use)."""
    flat: dict[str, float] = {}
    for direction, values in results.items():
        for key, value in values.items():
            flat[f"{prefix}{key}_{direction}"] = value
    for key in SELECTABLE:
        value = selection_value(results, key)
        if value is not None:
            flat[f"{prefix}{key}"] = value
    return flat


def run_heldout_paths(config: Config, data: str | Path | None = None) -> tuple[list[Path], list[Path], str]:
    """The held-out images to score a run on, and a note on where they come from.

    With ``data``: its testA/ and testB/. Without: the run's own held-out images, as training chose
    them (its test folders, or the seeded split of its training folders).
    """
    if data is not None:
        folders = [Path(data) / "testA", Path(data) / "testB"]
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise DataError(f"{', '.join(missing)} not found: --data needs testA/ and testB/ (or drop --data to use "
                            "the run's own held-out images)")
        seed = config.train.seed
        return (heldout_from_test_folder(folders[0], seed, "A"), heldout_from_test_folder(folders[1], seed, "B"),
                f"{data}/testA, testB")
    t = config.train
    _, held_a = heldout_for(t, "A", find_images(t.domain_a, label="domain A folder"))
    _, held_b = heldout_for(t, "B", find_images(t.domain_b, label="domain B folder"))
    held_out = (t.test_a and t.test_b) or t.eval_every > 0
    note = "the run's held-out images" if held_out else "the run's training images (it holds none out)"
    return held_a, held_b, note


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, *, device: str | None = None,
                 best: bool = False, fid: bool = False, inception_weights: str = "") -> tuple[dict, str]:
    """Everything ``cyclegan evaluate`` reports for a run: held-out metrics per direction, the
    discriminators' scores (latest weights only: best/ keeps no discriminators), ground-truth scores
    when ``data`` has them, and FID/KID with ``fid``. Returns (results, where the images came from)."""
    from . import checkpoint as ckpt
    from .networks import build_discriminator

    translator = Translator.from_run(run_dir, device=device, best=best)
    # cycle metrics need both generators: a one-direction import gets a CheckpointError that says so
    g_ab, g_ba = translator.generator("AtoB"), translator.generator("BtoA")
    config = translator.config
    paths_a, paths_b, note = run_heldout_paths(config, data)
    heldout = HeldOut.from_paths(paths_a, paths_b, config.train.crop_size, translator.device)
    discriminators: dict[str, nn.Module] = {}
    if not best and all((Path(run_dir) / f"{n}.safetensors").exists() for n in ckpt.DISCRIMINATORS):
        for name in ckpt.DISCRIMINATORS:
            net = ckpt.load_weights(build_discriminator(config.model), Path(run_dir) / f"{name}.safetensors")
            discriminators[name] = net.to(translator.device)
    inception = inception_network(inception_weights) if fid or inception_weights else None
    if inception is not None:
        inception.to(translator.device)
    results = evaluate_heldout(g_ab, g_ba, heldout,
                               D_A=discriminators.get("D_A"), D_B=discriminators.get("D_B"), inception=inception)
    if data is not None and any(ground_truth_pairs(Path(data), d) for d in GROUND_TRUTH):
        for direction, scores in evaluate_ground_truth(translator, data).items():
            results[direction] |= scores
    return results, note
