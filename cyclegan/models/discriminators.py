"""The PatchGAN discriminator of the published CycleGAN."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .generators import init_kind, init_weights, norm_layer

if TYPE_CHECKING:
    from ..config import ModelConfig


class PatchDiscriminator(nn.Module):
    """Scores overlapping patches as real or fake; with 3 layers each score sees a 70x70 patch.

    Returns raw scores (logits), one per patch; the loss decides how to read them. ``norm=False``
    leaves out the instance norms (their places hold identities, so layer indices stay the same):
    spectral norm takes over their job of keeping the scores' scale in check.
    """

    def __init__(self, channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1), norm_layer(ndf * mult) if norm else nn.Identity(),
                       nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build_discriminator(model: "ModelConfig", domain: str = "A") -> PatchDiscriminator:
    """The discriminator of ``domain``: it judges that domain's images (D_A: real A vs B->A).

    With ``model.spectral_norm`` (Miyato et al., 2018) every conv's weight is divided by its largest
    singular value, which bounds how sharply the discriminator can separate real from fake: it
    cannot fit a small training set with arbitrarily steep scores, and its gradients stay useful to
    the generators. The weights are initialised before the parametrisation wraps them.
    """
    channels = model.channels_a if domain == "A" else model.channels_b
    net = init_weights(PatchDiscriminator(channels, model.ndf, model.n_layers_d, norm=not model.spectral_norm),
                       init_kind(model))
    if model.spectral_norm:
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                spectral_norm(module)
    return net
