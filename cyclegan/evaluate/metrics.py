"""Held-out metrics: the pure functions that compute them (their table is in table.py).

Two families, both computed on images the generators never trained on:

* **Without ground truth or pretrained weights** (works offline, on any domain): the sliced
  Wasserstein distance (SWD) between patches of translated images and real target images over a
  Laplacian pyramid (Karras et al., 2018), beside the same distance for the input left unchanged;
  cycle-reconstruction L1; identity-mapping L1; output diversity relative to the inputs'; and how
  well each discriminator tells real from translated (mean scores and the AUC of that separation).
* **With ground truth** (the synthetic dataset): L1, PSNR and SSIM against it, beside the identity
  baseline (the input returned unchanged), which is the number a model must beat.

``table.METRICS`` describes them (label, better direction, format) and ``table.SELECTION_RULES``
picks the best epoch from them; both live apart from these functions so that the command line's
``--help`` needs no torch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..images import to_float

# SWD settings of Karras et al. (2018): 7x7 neighbourhoods, 128 per image and pyramid level, the
# coarsest level 16 px, 4 x 128 random directions.
SWD_PATCH = 7
SWD_PATCHES_PER_IMAGE = 128
SWD_MIN_LEVEL = 16
SWD_DIRECTIONS = 512
SWD_QUANTILES = 4096  # points at which the sorted projections are compared
SWD_RESAMPLES = 8  # bootstrap resamples of the images behind an SWD's standard deviation
DIVERSITY_SIZE = 64  # images are compared pairwise at this size: enough to see collapse, cheap


# ---------------------------------------------------------------------------------------------
# Checkerboard artifacts


def checkerboard_energy(images: torch.Tensor) -> float:
    """Mean share of an image's spectral energy (its mean removed) at the period-2 frequencies.

    A stride-2 transposed convolution overlaps unevenly and stamps a pattern that repeats every two
    pixels (Odena et al., 2016); in the 2-D Fourier spectrum of the luminance such a pattern lies at
    the Nyquist frequencies (h/2, 0), (0, w/2) and (h/2, w/2). Content modulates it, so each
    point's 3x3 neighbourhood counts. Natural images have little energy there; ``checkerboard``
    divides a translation's share by its input's, so 1 means "as the input" and more means added
    checkerboard.
    """
    x = to_float(images) if images.dtype == torch.uint8 else images.float()
    gray = x.mean(dim=1)
    gray = gray - gray.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(gray).abs().pow(2)
    h, w = power.shape[-2:]
    rows = torch.arange(h).unsqueeze(1)
    cols = torch.arange(w).unsqueeze(0)

    def near(index: torch.Tensor, centre: int, size: int) -> torch.Tensor:  # within one bin, wrapping round
        return ((index - centre) % size <= 1) | ((centre - index) % size <= 1)

    band = ((near(rows, h // 2, h) & near(cols, 0, w)) | (near(rows, 0, h) & near(cols, w // 2, w))
            | (near(rows, h // 2, h) & near(cols, w // 2, w)))
    total = power.sum(dim=(-2, -1)).clamp_min(1e-12)
    return float((power[..., band].sum(dim=-1) / total).mean())


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


def change_agreement(source: torch.Tensor, output: torch.Tensor, truth: torch.Tensor) -> tuple[float, float, float]:
    """The sums behind ``change_made`` and ``change_corr`` for one image: <made, needed>,
    |made|^2 and |needed|^2, where made = output - source and needed = truth - source. Summed over a
    test set, then combined by ``change_scores``, so large images do not weigh less than small ones."""
    made, needed = (output - source).double(), (truth - source).double()
    return float((made * needed).sum()), float(made.pow(2).sum()), float(needed.pow(2).sum())


def change_scores(dot: float, made: float, needed: float) -> dict[str, float]:
    """``change_made`` (dot / needed) and ``change_corr`` (the cosine) from summed ``change_agreement``s."""
    return {"change_made": dot / needed if needed > 0 else float("nan"),
            "change_corr": dot / math.sqrt(made * needed) if made > 0 and needed > 0 else 0.0}


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
        return self.measure(images).value

    def measure(self, images: torch.Tensor, resamples: int = 0) -> "SWDScore":
        """The distance over every level and over the coarse levels (all but the finest band), each
        with its standard deviation over ``resamples`` bootstrap resamples of the images (whole
        images drawn with replacement; nan without resamples). The descriptors are computed once
        and resampled, so the spread costs only the projections and sorts."""
        if tuple(images.shape[-2:]) != self.size:
            raise ValueError(f"SWD needs images of one size, got {tuple(images.shape[-2:])} and {self.size}")
        descriptors = _descriptors(images, self._positions(), self.device)
        draws = torch.Generator().manual_seed(self.seed + 2)
        patches = torch.arange(SWD_PATCHES_PER_IMAGE)
        samples = [self._level_distances(descriptors)]
        for _ in range(resamples if resamples >= 2 else 0):
            picked = torch.randint(len(images), (len(images),), generator=draws)
            rows = (picked[:, None] * SWD_PATCHES_PER_IMAGE + patches).flatten().to(self.device)
            samples.append(self._level_distances([d[rows] for d in descriptors]))
        # A pyramid of one level (images of under 2 * SWD_MIN_LEVEL px) has no finer band to leave out.
        coarse = [levels[1:] or levels for levels in samples]
        full_value, full_sd = _value_and_spread([1e3 * sum(x) / len(x) for x in samples])
        coarse_value, coarse_sd = _value_and_spread([1e3 * sum(x) / len(x) for x in coarse])
        return SWDScore(full_value, full_sd, coarse_value, coarse_sd)

    def _level_distances(self, descriptors: list[torch.Tensor]) -> list[float]:
        return [float((_sorted_quantiles(x, level[:3]) - level[3]).abs().mean())
                for x, level in zip(descriptors, self.levels)]


class SWDScore(NamedTuple):
    """One SWD measurement (``SlicedWasserstein.measure``); the sds are nan without resamples.

    ``coarse`` leaves out the finest pyramid band, the pixel-scale texture (grain, sensor noise, a
    transposed convolution's checkerboard): a target's grain that no model learns weighs on the full
    SWD, and the ground truth barely counts any of it. Selecting by it (``--select-by swd_coarse``)
    was never worse than by the full SWD over 50 runs and better on 4, but it cannot see a
    checkerboard, so the full SWD stays the default (BENCHMARKS.md, "Leaving out the finest band").
    """

    value: float
    sd: float
    coarse: float
    coarse_sd: float


def _value_and_spread(samples: list[float]) -> tuple[float, float]:
    """The first sample (the images as given) and the standard deviation of the rest (the resamples)."""
    resampled = samples[1:]
    if len(resampled) < 2:
        return samples[0], float("nan")
    mean = sum(resampled) / len(resampled)
    return samples[0], math.sqrt(sum((v - mean) ** 2 for v in resampled) / (len(resampled) - 1))


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
