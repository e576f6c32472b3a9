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
import torch.nn.functional as F
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


class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 downsampling (Zhang, "Making convolutional networks shift-invariant
    again", 2019): blur with the fixed 3x3 binomial filter ([1, 2, 1] outer itself, summing to 1),
    then keep every second pixel. A strided conv alone aliases: a one-pixel shift of the input changes
    the features, which CUT's patch-wise contrastive loss would then have to learn around.

    The filter is a buffer named ``filt``, as in CUT's published generators, so their weight files
    load with their keys unchanged (models/patchnce.py has the rest of CUT).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps)
        self.register_buffer("filt", (kernel / kernel.sum()).expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, [1, 1, 1, 1], mode="reflect"), self.filt, stride=2, groups=self.filt.shape[0])


class BlurUpsample(nn.Module):
    """Anti-aliased 2x upsampling, BlurDownsample's counterpart: put the pixels on a grid twice as fine
    (zeros between) and blur with the fixed 4x4 filter [1, 3, 3, 1] outer itself, scaled to sum to 4
    (the four output pixels of each input pixel share its value). Edges are replicated first, so the
    border pixels are not darkened by the zeros outside. A fixed filter cannot draw a checkerboard,
    which a learned transposed conv does (BENCHMARKS.md, "Checkerboard"); the conv after it learns.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        kernel = torch.outer(taps, taps)
        self.register_buffer("filt", (4 * kernel / kernel.sum()).expand(channels, 1, 4, 4).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (H + 2) inputs -> 2H + 2 outputs; the first and last row and column are the padding's
        up = F.conv_transpose2d(F.pad(x, [1, 1, 1, 1], mode="replicate"), self.filt, stride=2, padding=2,
                                groups=self.filt.shape[0])
        return up[:, :, 1:-1, 1:-1]


SKIP_LIMIT = 0.999  # inputs are clamped to +-this before atanh, which is infinite at +-1


class ColourTransform(nn.Module):
    """A per-image colour transform: a CxC matrix and an offset, predicted from the image's colour
    statistics (per-channel mean and spread, and a 4x4 thumbnail) and applied to every pixel.

    Styles that keep the layout are mostly a global colour change (a grade, a tint, a season), which
    a convolutional generator learns slowly and a PatchGAN barely rewards at first; this path can
    express one with a dozen numbers, so the adversarial gradient of every pixel pushes the same few
    parameters. It sees the image, so it can tell an image that needs the change from one that is
    already in the target domain (which the identity loss asks to pass through). The last layer
    starts at zero: the transform starts as the identity.
    """

    def __init__(self, channels: int, hidden: int = 64, grid: int = 4) -> None:
        super().__init__()
        self.channels, self.grid = channels, grid
        self.mlp = nn.Sequential(nn.Linear(channels * (2 + grid * grid), hidden), nn.ReLU(True),
                                 nn.Linear(hidden, channels * channels + channels))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], self.channels
        stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3)), F.adaptive_avg_pool2d(x, self.grid).flatten(1)], 1)
        params = self.mlp(stats)
        matrix = params[:, :c * c].reshape(n, c, c) + torch.eye(c, device=x.device, dtype=params.dtype)
        offset = params[:, c * c:].reshape(n, c, 1, 1)
        return torch.einsum("nij,njhw->nihw", matrix.to(x.dtype), x) + offset.to(x.dtype)


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

    ``colour`` (our addition) replaces that skip with a linear one through a ``ColourTransform``:
    ``clamp(T(x) + net(x), -1, 1)``, where T is a per-image colour matrix and offset that starts as
    the identity. The network then adds only what a colour transform cannot express (texture,
    local change). Linear, not through tanh: ``atanh`` starves dark and bright pixels of gradient
    (tanh' is 0.002 at 0.999), which are exactly the ones a grade moves most. The residual's last
    conv starts at zero (``build_generator``), so an untrained generator is exactly the identity: a
    run that never learns returns its input, which the no_translation warning then reports, rather
    than noise. It adds the weights ``colour.*`` beside the official keys.
    """

    size_multiple = 4

    def __init__(self, channels: int = 3, ngf: int = 64, n_blocks: int = 9, upsample: str = "transpose",
                 out_channels: int | None = None, skip: bool = False, colour: bool = False,
                 antialias: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels = channels, out_channels or channels
        self.n_blocks = n_blocks
        if (skip or colour) and self.in_channels != self.out_channels:
            raise ConfigError(f"a generator with a skip or a colour transform needs as many output channels as "
                              f"input channels, got {self.in_channels} and {self.out_channels}")
        if skip and colour:
            raise ConfigError("skip and colour are two kinds of skip; choose one")
        self.skip = skip
        self.skip_limit = SKIP_LIMIT  # an attribute: TorchScript (export) cannot read module globals
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7), norm_layer(ngf),
                                   nn.ReLU(True)]
        for mult in (1, 2):
            if antialias:  # CUT: a stride-1 conv, then the blur and subsampling
                layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, padding=1), norm_layer(ngf * mult * 2),
                           nn.ReLU(True), BlurDownsample(ngf * mult * 2)]
            else:
                layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                           norm_layer(ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):
            if antialias:
                layers += [BlurUpsample(ngf * mult), nn.Conv2d(ngf * mult, ngf * mult // 2, 3, padding=1),
                           norm_layer(ngf * mult // 2), nn.ReLU(True)]
            else:
                layers += _upsample(ngf * mult, ngf * mult // 2, upsample) + [norm_layer(ngf * mult // 2),
                                                                              nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, self.out_channels, 7)]
        self.model = nn.Sequential(*layers) if skip or colour else nn.Sequential(*layers, nn.Tanh())
        self.colour = ColourTransform(channels) if colour else None

    @classmethod
    def from_config(cls, model: "ModelConfig", in_channels: int, out_channels: int) -> "ResnetGenerator":
        return cls(in_channels, model.ngf, model.n_blocks, model.upsample, out_channels, model.skip, model.colour)

    @classmethod
    def encoder_layers(cls, n_blocks: int) -> int:
        """How many of ``model``'s layers come before the upsampling (what ``encode`` may return):
        pad, conv, norm, ReLU, two downsamplings of three layers, the blocks."""
        return 10 + n_blocks

    @property
    def receptive_radius(self) -> int:
        """How far padding at a tile edge reaches into the output, in input pixels, rounded up to the
        size multiple: 3 (7x7 conv) + 1 + 2 (the two stride-2 3x3 convs) + 8 per block (two 3x3 convs
        at quarter resolution) + 4 + 2 (the two upsamplings) + 3 (final 7x7 conv)."""
        radius = 15 + 8 * self.n_blocks
        return self.size_multiple * math.ceil(radius / self.size_multiple)

    def encode(self, x: torch.Tensor, layers: list[int]) -> list[torch.Tensor]:
        """The outputs of ``self.model``'s layers numbered ``layers`` (ascending, within the encoder:
        below ``encoder_layers(n_blocks)``) for input ``x``; the rest of the network is not run. CUT's PatchNCE
        loss compares these features of an image and of its translation."""
        features = []
        for index, layer in enumerate(self.model):
            x = layer(x)
            if index in layers:
                features.append(x)
                if len(features) == len(layers):
                    break
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.colour is not None:
            return (self.colour(x) + self.model(x)).clamp(-1, 1)
        if self.skip:
            return torch.tanh(self.model(x) + torch.atanh(x.clamp(-self.skip_limit, self.skip_limit)))
        return self.model(x)


@register("resnet_aa")
class AntialiasedResnetGenerator(ResnetGenerator):
    """CUT's generator (Park et al., 2020): the ResNet above with anti-aliased sampling. Each
    downsampling is a stride-1 conv, norm and ReLU followed by ``BlurDownsample``; each upsampling is
    ``BlurUpsample`` followed by a 3x3 conv, norm and ReLU. ``upsample`` does not apply (the config
    refuses ``resize`` with it). The layer indices are CUT's, so its PatchNCE layers 0, 4, 8, 12 and
    16 are the padded input, the two full- and half-resolution convs, and the first and fifth
    residual blocks, and its published weights (``latest_net_G.pth``) load with their own keys.
    """

    @classmethod
    def from_config(cls, model: "ModelConfig", in_channels: int, out_channels: int) -> "AntialiasedResnetGenerator":
        return cls(in_channels, model.ngf, model.n_blocks, "transpose", out_channels, model.skip, model.colour,
                   antialias=True)

    @classmethod
    def encoder_layers(cls, n_blocks: int) -> int:
        """The plain ResNet's, and one blur in each of the two downsamplings."""
        return 12 + n_blocks

    @property
    def receptive_radius(self) -> int:
        """As the plain ResNet's, plus the blurs: 3 (7x7 conv) + 1 + 1 (stride-1 conv and blur at full
        resolution) + 2 + 2 (the same at half) + 8 per block + 4 + 2 (blur and conv up to half) + 2 + 1
        (up to full) + 3 (final 7x7 conv), rounded up to the size multiple."""
        radius = 21 + 8 * self.n_blocks
        return self.size_multiple * math.ceil(radius / self.size_multiple)


def init_weights(net: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """Conv weights drawn as each family published them, biases zero: CycleGAN's ``normal`` is
    N(0, 0.02); CUT's ``xavier`` is Xavier-normal with gain 0.02. Linear layers (the colour
    transform's) keep their own initialisation."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            if kind == "xavier":
                nn.init.xavier_normal_(module.weight, gain)
            else:
                nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net


def init_kind(model: "ModelConfig") -> str:
    """How a family's networks start: CycleGAN's normal draw, or CUT's (and FastCUT's) Xavier draw."""
    return "normal" if model.family == "cyclegan" else "xavier"


def generator_class(name: str) -> type[Generator]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown generator {name!r}; choose one of: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build_generator(model: "ModelConfig", direction: str = "AtoB") -> Generator:
    """The generator ``model`` describes for ``direction`` (AtoB: channels_a in, channels_b out)."""
    ins, outs = (model.channels_a, model.channels_b) if direction == "AtoB" else (model.channels_b, model.channels_a)
    net = init_weights(generator_class(model.generator).from_config(model, ins, outs), init_kind(model))
    if getattr(net, "colour", None) is not None:  # the residual starts at zero: the identity (see ResnetGenerator)
        last = net.model[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return net


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
