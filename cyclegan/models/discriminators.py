"""The PatchGAN discriminator of the published CycleGAN."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .generators import init_weights, norm_layer

if TYPE_CHECKING:
    from ..config import ModelConfig


class PatchDiscriminator(nn.Module):
    """Scores overlapping patches as real or fake; with 3 layers each score sees a 70x70 patch.

    Returns raw scores (logits), one per patch; the loss decides how to read them.
    """

    def __init__(self, channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1), norm_layer(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build_discriminator(model: "ModelConfig", domain: str = "A") -> PatchDiscriminator:
    """The discriminator of ``domain``: it judges that domain's images (D_A: real A vs B->A)."""
    channels = model.channels_a if domain == "A" else model.channels_b
    return init_weights(PatchDiscriminator(channels, model.ndf, model.n_layers_d))
