"""Generators: a registry of architectures, and the published ResNet generator.

Adding a generator is one class here, decorated with ``@register("name")``; ``--generator name``
then trains it, and tiling, translation and export work with it unchanged, because each class
states the two facts about its geometry they need: ``size_multiple`` (height and width must be
multiples of it) and ``receptive_radius`` (how far, in input pixels, an output pixel sees, which
sets the margin a tile must discard at its inner edges).

The ResNet's layer order and nesting mirror the official implementation
(junyanz/pytorch-CycleGAN-and-pix2pix), so with ``upsample="transpose"`` the state_dict keys are
the official ones (``model.10.conv_block.1.weight``) and the published pretrained generators load
without renaming. Nothing here knows about training.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from ..errors import ConfigError

if TYPE_CHECKING:  # the config describes networks; networks never need the config module at run time
    from ..config import ModelConfig

REGISTRY: dict[str, type["Generator"]] = {}


class Generator(nn.Module):
    """What every generator states about itself (see the module docstring): ``size_multiple``,
    ``receptive_radius``, and its ``in_channels`` and ``out_channels`` (set in ``__init__``).

    No class-level annotations here: TorchScript (``cyclegan export``) would read them as
    attributes to compile.
    """

    size_multiple = 1
    __jit_unused_properties__ = ["receptive_radius"]  # geometry for tiling and export, not for the graph

    @property
    def receptive_radius(self) -> int:
        raise NotImplementedError

    @classmethod
    def from_config(cls, model: "ModelConfig", in_channels: int, out_channels: int) -> "Generator":
        raise NotImplementedError


def register(name: str) -> Callable[[type[Generator]], type[Generator]]:
    """Class decorator: make a generator available as ``ModelConfig.generator = name``."""
    def add(cls: type[Generator]) -> type[Generator]:
        REGISTRY[name] = cls
        return cls
    return add


def norm_layer(channels: int) -> nn.Module:
    """Instance norm without affine parameters or running statistics, as published."""
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """x + (pad, conv3x3, norm, ReLU, pad, conv3x3, norm)(x); reflection padding avoids border artifacts."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm_layer(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm_layer(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def _upsample(in_ch: int, out_ch: int, mode: str) -> list[nn.Module]:
    if mode == "transpose":
        return [nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1)]
    # Resize-convolution (Odena et al., 2016): nearest upsampling then a conv, which cannot produce
    # the checkerboard pattern an uneven transposed-conv overlap does.
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1), nn.Conv2d(in_ch, out_ch, 3)]


SKIP_LIMIT = 0.999  # inputs are clamped to +-this before atanh, which is infinite at +-1


@register("resnet")
class ResnetGenerator(Generator):
    """c7s1-ngf, d(2ngf), d(4ngf), n_blocks x R(4ngf), u(2ngf), u(ngf), c7s1-out, tanh.

    Input and output are images in [-1, 1] whose height and width are multiples of 4 (it
    downsamples twice by 2).

    ``skip`` (our addition) adds the input to the last layer's output before the tanh, in tanh's
    own scale: ``tanh(net(x) + atanh(x))``. The network then learns a *change* to the image and
    starts out near the identity, so a mapping that keeps structure (a photo's detail under a
    new style) need not redraw every pixel through the bottleneck, which is where the published
    generator's blur comes from. It adds no weights: the state_dict keys stay the official ones.
    """

    size_multiple = 4

    def __init__(self, channels: int = 3, ngf: int = 64, n_blocks: int = 9, upsample: str = "transpose",
                 out_channels: int | None = None, skip: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels = channels, out_channels or channels
        self.n_blocks = n_blocks
        if skip and self.in_channels != self.out_channels:
            raise ConfigError(f"a generator with a skip needs as many output channels as input channels, "
                              f"got {self.in_channels} and {self.out_channels}")
        self.skip = skip
        self.skip_limit = SKIP_LIMIT  # an attribute: TorchScript (export) cannot read module globals
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7), norm_layer(ngf),
                                   nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1), norm_layer(ngf * mult * 2),
                       nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += _upsample(ngf * mult, ngf * mult // 2, upsample) + [norm_layer(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, self.out_channels, 7)]
        self.model = nn.Sequential(*layers) if skip else nn.Sequential(*layers, nn.Tanh())

    @classmethod
    def from_config(cls, model: "ModelConfig", in_channels: int, out_channels: int) -> "ResnetGenerator":
        return cls(in_channels, model.ngf, model.n_blocks, model.upsample, out_channels, model.skip)

    @property
    def receptive_radius(self) -> int:
        """How far padding at a tile edge reaches into the output, in input pixels, rounded up to the
        size multiple: 3 (7x7 conv) + 1 + 2 (the two stride-2 3x3 convs) + 8 per block (two 3x3 convs
        at quarter resolution) + 4 + 2 (the two upsamplings) + 3 (final 7x7 conv)."""
        radius = 15 + 8 * self.n_blocks
        return self.size_multiple * math.ceil(radius / self.size_multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.skip:
            return torch.tanh(self.model(x) + torch.atanh(x.clamp(-self.skip_limit, self.skip_limit)))
        return self.model(x)


def init_weights(net: nn.Module, std: float = 0.02) -> nn.Module:
    """Normal(0, 0.02) conv weights and zero biases, as published."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net


def generator_class(name: str) -> type[Generator]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown generator {name!r}; choose one of: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build_generator(model: "ModelConfig", direction: str = "AtoB") -> Generator:
    """The generator ``model`` describes for ``direction`` (AtoB: channels_a in, channels_b out)."""
    ins, outs = (model.channels_a, model.channels_b) if direction == "AtoB" else (model.channels_b, model.channels_a)
    return init_weights(generator_class(model.generator).from_config(model, ins, outs))


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
