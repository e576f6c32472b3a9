"""The CycleGAN networks: a ResNet generator and a PatchGAN discriminator.

Layer order and nesting mirror the official implementation (junyanz/pytorch-CycleGAN-and-pix2pix),
so with ``upsample="transpose"`` the state_dict keys are the official ones (``model.10.conv_block.1.weight``)
and the published pretrained generators load without renaming. Nothing here knows about training.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig


def _norm(channels: int) -> nn.Module:
    # Instance norm without affine parameters or running statistics, as published.
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """x + (pad, conv3x3, norm, ReLU, pad, conv3x3, norm)(x); reflection padding avoids border artifacts."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def _upsample(in_ch: int, out_ch: int, mode: str) -> list[nn.Module]:
    if mode == "transpose":
        return [nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1)]
    # Resize-convolution (Odena et al., 2016): nearest upsampling then a conv, which cannot produce
    # the checkerboard pattern an uneven transposed-conv overlap does.
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1), nn.Conv2d(in_ch, out_ch, 3)]


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d(2ngf), d(4ngf), n_blocks x R(4ngf), u(2ngf), u(ngf), c7s1-channels, tanh.

    Input and output are images in [-1, 1] whose height and width are multiples of 4.
    """

    def __init__(self, channels: int = 3, ngf: int = 64, n_blocks: int = 9, upsample: str = "transpose") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7), _norm(ngf), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1), _norm(ngf * mult * 2),
                       nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += _upsample(ngf * mult, ngf * mult // 2, upsample) + [_norm(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


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
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1), _norm(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(net: nn.Module, std: float = 0.02) -> nn.Module:
    """Normal(0, 0.02) conv weights and zero biases, as published."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net


def build_generator(config: ModelConfig) -> ResnetGenerator:
    return init_weights(ResnetGenerator(config.channels, config.ngf, config.n_blocks, config.upsample))


def build_discriminator(config: ModelConfig) -> PatchDiscriminator:
    return init_weights(PatchDiscriminator(config.channels, config.ndf, config.n_layers_d))


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
