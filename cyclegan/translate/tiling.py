"""Translating images too large for one forward pass: overlapping tiles, blended, with shared statistics.

Two things make naive tiling show seams with a CycleGAN generator:

* **Instance norm** normalises every feature map by its own mean and variance, so each tile would be
  normalised differently and the tiles would disagree in brightness and contrast. We use
  *thumbnail instance normalization* (Chen et al., "Towards Ultra-Resolution Neural Style Transfer
  via Thumbnail Instance Normalization", AAAI 2022): run the network once on a downscaled copy of
  the whole image, record every instance-norm layer's statistics, and normalise all tiles with those.
* **Borders**: near a tile edge the network sees padding instead of the neighbouring pixels. Each
  tile discards a margin of the generator's receptive-field radius at its inner edges (where that
  padding can reach) and neighbours cross-fade beyond it, so with the same statistics what is kept
  is exactly what a whole-image pass computes.

Tile origins are multiples of the generator's size multiple (4 for the ResNet), so its stride-2 layers sample the same grid in every tile as in
the whole image. The output is assembled one row of tiles at a time, so beyond the input and output
images themselves memory holds only one band of rows and one tile's activations.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

MULTIPLE = 4  # the published generator's size multiple (it downsamples twice by 2); generators state their own

Forward = Callable[[nn.Module, torch.Tensor], torch.Tensor]
NormStats = list[tuple[torch.Tensor, torch.Tensor]]


RAMP = 16  # pixels over which neighbouring tiles cross-fade, beyond the margin each discards


def margin_for(nets: list[nn.Module], multiple: int = MULTIPLE) -> int:
    """How far padding at a tile edge reaches into the outputs of ``nets``: the largest receptive
    radius they state (models/generators.py), rounded up to ``multiple``. Output pixels farther than
    this from a tile edge are exact."""
    radius = max(int(net.receptive_radius) for net in nets)
    return multiple * math.ceil(radius / multiple)


def overlap_for(margin: int) -> int:
    """Neighbouring tiles overlap by both their discarded margins plus the cross-fade."""
    return 2 * margin + RAMP


class _RecordingNorm(nn.Module):
    """Instance norm that also keeps the per-channel statistics it used (for a batch of one)."""

    def __init__(self, eps: float, sink: NormStats) -> None:
        super().__init__()
        self.eps, self.sink = eps, sink

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x.float(), dim=(0, 2, 3), correction=0)
        self.sink.append((mean, var))
        return F.instance_norm(x, eps=self.eps)


class _FixedNorm(nn.Module):
    """Instance norm with given statistics instead of the input's own."""

    def __init__(self, eps: float, mean: torch.Tensor, var: torch.Tensor) -> None:
        super().__init__()
        self.eps, self.mean, self.var = eps, mean, var

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, running_mean=self.mean, running_var=self.var, use_input_stats=False, eps=self.eps)


def _replace_norms(net: nn.Module, make: Callable[[nn.InstanceNorm2d, int], nn.Module]) -> nn.Module:
    """A copy of ``net`` that shares its parameters, with every InstanceNorm2d replaced by ``make(norm, i)``.

    A copy rather than hooks on ``net`` itself, so concurrent callers of the same network (the web
    app translates in several threads) never see each other's statistics.
    """
    shared = {id(t): t for t in list(net.parameters()) + list(net.buffers())}
    twin = copy.deepcopy(net, memo=shared)
    norms = [(name, m) for name, m in twin.named_modules() if isinstance(m, nn.InstanceNorm2d)]
    for index, (name, norm) in enumerate(norms):
        parent_name, _, child = name.rpartition(".")
        parent = twin.get_submodule(parent_name) if parent_name else twin
        setattr(parent, child, make(norm, index))
    return twin


def instance_norm_stats(net: nn.Module, forward: Forward, image: torch.Tensor) -> NormStats:
    """Every instance-norm layer's (mean, var) per channel when ``forward`` runs ``net`` on ``image`` (1, C, H, W)."""
    stats: NormStats = []
    forward(_replace_norms(net, lambda norm, _: _RecordingNorm(norm.eps, stats)), image)
    return stats


def pooled_stats(each: list[NormStats]) -> NormStats:
    """The statistics of several equal-sized inputs taken together, as if they were one image, from
    each one's: per layer, the mean of the means and the mean of the variances plus the variance of
    the means (the law of total variance)."""
    pooled: NormStats = []
    for layer in zip(*each):
        means = torch.stack([mean for mean, _ in layer])
        variances = torch.stack([var for _, var in layer])
        pooled.append((means.mean(0), variances.mean(0) + means.var(0, correction=0)))
    return pooled


def with_fixed_stats(net: nn.Module, stats: NormStats) -> nn.Module:
    """``net`` (parameters shared) normalising with ``stats`` instead of each input's own statistics."""
    return _replace_norms(net, lambda norm, i: _FixedNorm(norm.eps, *stats[i]))


def thumbnail(image: torch.Tensor, max_pixels: int) -> torch.Tensor:
    """(C, H, W) uint8 or float, shrunk (antialiased, aspect kept) to at most ``max_pixels``; as is if it fits."""
    _, h, w = image.shape
    if h * w <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (h * w))
    size = [max(1, int(h * scale)), max(1, int(w * scale))]
    if image.dtype == torch.uint8:  # bilinear antialiased resize has a uint8 path: no float copy of the image
        from torchvision.transforms.v2 import functional as TF

        return TF.resize(image, size, antialias=True)
    return F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def tile_spans(length: int, tile: int, overlap: int, multiple: int = MULTIPLE) -> list[tuple[int, int]]:
    """[start, end) of tiles covering ``length``: starts are multiples of ``multiple`` (so every tile
    samples the same grid as the whole image), neighbours overlap by >= ``overlap``.

    The last tile ends at ``length`` and may be up to ``multiple - 1`` pixels longer than ``tile``.
    """
    if length <= tile:
        return [(0, length)]
    stride = tile - overlap
    spans = [(start, start + tile) for start in range(0, length - tile, stride)]
    last = (length - tile) // multiple * multiple
    if last <= spans[-1][0]:
        spans.pop()
    return spans + [(last, length)]


def blend_weights(start: int, end: int, length: int, margin: int) -> torch.Tensor:
    """Weights along one axis of a tile: 0 within ``margin`` of an inner edge, then rising to 1 over RAMP pixels.

    Inner edges only: a tile side on the image border keeps weight 1 there (nothing else covers it).
    In an overlap of exactly ``overlap_for(margin)`` pixels the two neighbours' weights sum to 1.
    """
    position = torch.arange(start, end, dtype=torch.float32) + 0.5
    weight = torch.ones(end - start)
    if start > 0:
        weight = torch.minimum(weight, ((position - start - margin) / RAMP).clamp(0, 1))
    if end < length:
        weight = torch.minimum(weight, ((end - position - margin) / RAMP).clamp(0, 1))
    return weight


def check_tile_size(tile: int, margin: int, multiple: int = MULTIPLE) -> None:
    smallest = 2 * overlap_for(margin) + multiple
    if tile % multiple or tile < smallest:
        raise ConfigError(f"tile size must be a multiple of {multiple} and at least {smallest} for this "
                          f"generator (twice its tile overlap of {overlap_for(margin)}), got {tile}")


def translate_tiled(net: nn.Module, forward: Forward, image: torch.Tensor, *, tile: int, margin: int,
                    out_channels: int, to_input: Callable[[torch.Tensor], torch.Tensor],
                    to_output: Callable[[torch.Tensor], torch.Tensor], out_dtype: torch.dtype,
                    multiple: int = MULTIPLE) -> torch.Tensor:
    """Translate ``image`` (C, H, W) tile by tile with ``net`` (already normalising with fixed statistics).

    ``to_input`` turns a crop into the network's (1, C, h, w) float input on its device,
    ``to_output`` turns finished rows (C, h, W) in [-1, 1] into ``out_dtype``. Returns (H, W, C)
    (pixel-interleaved, like a decoded image) of ``out_dtype``.
    """
    check_tile_size(tile, margin, multiple)
    overlap = overlap_for(margin)
    _, height, width = image.shape
    out = torch.empty(height, width, out_channels, dtype=out_dtype)
    rows, cols = tile_spans(height, tile, overlap, multiple), tile_spans(width, tile, overlap, multiple)
    col_weights = [blend_weights(x0, x1, width, margin) for x0, x1 in cols]
    carry: tuple[torch.Tensor, torch.Tensor] | None = None
    for i, (y0, y1) in enumerate(rows):
        acc = torch.zeros(out_channels, y1 - y0, width)
        weight_sum = torch.zeros(y1 - y0, width)
        if carry is not None:  # rows the previous row of tiles also covered
            acc[:, :carry[1].shape[0]] += carry[0]
            weight_sum[:carry[1].shape[0]] += carry[1]
        row_weight = blend_weights(y0, y1, height, margin)
        for (x0, x1), col_weight in zip(cols, col_weights):
            result = forward(net, to_input(image[:, y0:y1, x0:x1]))[0].float().cpu()
            weight = row_weight[:, None] * col_weight[None, :]
            acc[:, :, x0:x1] += result * weight
            weight_sum[:, x0:x1] += weight
        done = rows[i + 1][0] - y0 if i + 1 < len(rows) else y1 - y0
        finished = acc[:, :done] / weight_sum[:done].clamp_min(1e-12)
        out[y0:y0 + done] = to_output(finished).permute(1, 2, 0)
        carry = (acc[:, done:], weight_sum[done:])
    return out
