"""Differentiable augmentation of what the discriminators see (``--diffaug color,translation,cutout``).

With a few hundred training images a PatchGAN discriminator memorises them: it scores unseen real
images as fake, and its gradient stops telling the generator anything about the style. Zhao et al.
(2020, "Differentiable Augmentation for Data-Efficient GAN Training") showed the cure is to augment
*both* real and fake images, in the discriminator's update and in the generator's adversarial loss
alike, with transforms that gradients pass through, so the discriminator cannot tell real from fake
by the augmentation and the generator is never taught to produce augmented images.

Images are in [-1, 1], batched NCHW; each image of a batch draws its own parameters from torch's
global generator on its device, which training seeds with ``--seed``. Its state is not saved with
the run: a resumed run draws from the seed afresh, so with ``--diffaug`` a resume is not
bit-identical to an uninterrupted run (without it, nothing here draws a number).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..config import augmentations


def _colour(x: torch.Tensor) -> torch.Tensor:
    """Brightness shift in [-0.5, 0.5], saturation x[0, 2], contrast x[0.5, 1.5], per image."""
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    if x.shape[1] > 1:  # saturation means nothing to a grayscale image
        grey = x.mean(dim=1, keepdim=True)
        x = (x - grey) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + grey
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in each direction, filling with zeros."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    # Index into a copy padded by one zero pixel: any source outside the image lands on the padding.
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` of the image's size per image, at a random place (it may be
    cut by the border)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h, (n, 1, 1), device=x.device) - ch // 2  # centred on a random pixel
    left = torch.randint(0, w, (n, 1, 1), device=x.device) - cw // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1) - top
    xs = torch.arange(w, device=x.device).view(1, 1, w) - left
    inside = (ys >= 0) & (ys < ch) & (xs >= 0) & (xs < cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


POLICIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "color": _colour, "translation": _translation, "cutout": _cutout,
}


def augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """``x`` through each transform the policy names, in order; the identity for an empty policy."""
    for name in augmentations(policy):  # the config has refused names POLICIES does not know
        x = POLICIES[name](x)
    return x
