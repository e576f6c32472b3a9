from pathlib import Path

import pytest
import torch

from cyclegan.config import ModelConfig
from cyclegan.models.discriminators import PatchDiscriminator, build_discriminator
from cyclegan.models.generators import (ResnetGenerator, build_generator,
                               count_parameters)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "official_resnet9_generator_keys.txt"


def test_paper_networks_have_the_published_parameter_counts():
    assert count_parameters(build_generator(ModelConfig())) == 11_378_179
    assert count_parameters(build_discriminator(ModelConfig())) == 2_764_737


def test_generator_keys_and_shapes_are_the_official_ones():
    if not REFERENCE.exists():
        pytest.skip(f"{REFERENCE} not found (shared/ is not beside the repository)")
    expected = []
    for line in REFERENCE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, shape = line.split(" ", 1)
            expected.append((name, [int(x) for x in shape.strip("[]").split(",")]))
    state = build_generator(ModelConfig()).state_dict()
    assert [(k, list(v.shape)) for k, v in state.items()] == expected


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
@pytest.mark.parametrize("size", [(32, 32), (36, 60)])
def test_generator_keeps_size_and_range(upsample, size):
    g = ResnetGenerator(ngf=8, n_blocks=2, upsample=upsample)
    out = g(torch.randn(2, 3, *size))
    assert out.shape == (2, 3, *size)
    assert out.abs().max() <= 1.0


def test_resize_upsampling_has_no_transposed_convolutions():
    g = ResnetGenerator(ngf=8, n_blocks=1, upsample="resize")
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())
    assert any(isinstance(m, torch.nn.Upsample) for m in g.modules())


def test_patch_discriminator_sees_70_pixel_patches():
    d = PatchDiscriminator(ndf=8, n_layers=3)
    # Instance norm mixes in whole-image statistics; the convolutions alone define the patch size.
    for i, layer in enumerate(d.model):
        if isinstance(layer, torch.nn.InstanceNorm2d):
            d.model[i] = torch.nn.Identity()
    x = torch.randn(1, 3, 256, 256, requires_grad=True)
    scores = d(x)
    centre = scores.shape[-1] // 2
    scores[0, 0, centre, centre].backward()
    touched = (x.grad.abs().sum(1)[0] > 0).nonzero()
    extent = (touched.max(0).values - touched.min(0).values + 1).tolist()
    assert extent == [70, 70]


def test_weights_start_normal_with_std_002():
    g = build_generator(ModelConfig(ngf=32, n_blocks=2))
    weights = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(weights.mean().item()) < 1e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert all(m.bias.abs().max() == 0 for m in g.modules() if isinstance(m, torch.nn.Conv2d))


def test_the_colour_generator_starts_as_the_identity_and_keeps_the_official_keys():
    model = ModelConfig(ngf=8, n_blocks=2, colour=True, upsample="resize")
    g = build_generator(model)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(g(x), x)  # colour transform at the identity, residual at zero
    official = set(build_generator(ModelConfig(ngf=8, n_blocks=2, upsample="resize")).state_dict())
    assert set(g.state_dict()) - official == {"colour.mlp.0.weight", "colour.mlp.0.bias",
                                              "colour.mlp.2.weight", "colour.mlp.2.bias"}
    with torch.no_grad():  # a transform that swaps red and blue is applied per pixel
        g.colour.mlp[2].bias.copy_(torch.tensor([-1.0, 0, 1, 0, 0, 0, 1, 0, -1, 0, 0, 0]))
    assert torch.allclose(g(x), x.flip(1), atol=1e-6)
    assert torch.allclose(torch.jit.script(g)(x), g(x))  # export's TorchScript path compiles it


def test_skip_and_colour_are_refused_together_and_across_channel_counts():
    from cyclegan.config import Config, TrainConfig, validate
    from cyclegan.errors import ConfigError
    with pytest.raises(ConfigError, match="choose one"):
        validate(Config(model=ModelConfig(skip=True, colour=True), train=TrainConfig()))
    with pytest.raises(ConfigError, match="same channels"):
        validate(Config(model=ModelConfig(colour=True, channels_b=1), train=TrainConfig(lambda_identity=0)))
