"""The quality additions: differentiable augmentation, the generator's global skip, spectral norm on
the discriminators, the checkerboard score and the memorising warning."""

from __future__ import annotations

import pytest
import torch

from cyclegan import runfolder
from cyclegan.config import AUGMENTATIONS, Config, ModelConfig, preset
from cyclegan.errors import ConfigError
from cyclegan.evaluate import health
from cyclegan.evaluate.metrics import checkerboard_energy
from cyclegan.models.discriminators import build_discriminator
from cyclegan.models.generators import ResnetGenerator, build_generator
from cyclegan.runfolder import RunWarnings
from cyclegan.train.augment import POLICIES, augment
from cyclegan.train.loop import train
from cyclegan.translate.translator import Translator

from conftest import small_config


def _images(n: int = 4, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_every_augmentation_the_config_accepts_is_implemented():
    assert set(POLICIES) == set(AUGMENTATIONS)


def test_an_empty_policy_changes_nothing_and_draws_no_random_numbers():
    x = _images()
    state = torch.get_rng_state()
    assert augment(x, "") is x
    assert torch.equal(torch.get_rng_state(), state)  # the published recipe's random stream is untouched


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_augmentations_keep_the_shape_change_the_image_and_pass_gradients(policy):
    torch.manual_seed(0)
    x = _images().requires_grad_(True)
    y = augment(x, policy)
    assert y.shape == x.shape and not torch.allclose(y, x)
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_shifts_content_and_fills_with_zeros():
    torch.manual_seed(1)
    x = torch.ones(8, 1, 16, 16)
    y = augment(x, "translation")
    shifted = [bool((img == 0).any()) for img in y]
    assert any(shifted)  # some images moved, leaving zeros where nothing came in
    for img in y:  # what is left is the shifted image: every non-zero value is still one
        assert set(img.unique().tolist()) <= {0.0, 1.0}


def test_cutout_zeroes_one_square_of_half_the_size():
    torch.manual_seed(2)
    y = augment(torch.ones(16, 1, 32, 32), "cutout")
    zeroed = (y == 0).flatten(1).sum(1)
    assert int(zeroed.max()) == 16 * 16  # a whole 16x16 square when it lies inside the image
    assert bool((zeroed > 0).all())


def test_unknown_augmentation_is_refused_by_name():
    config = preset("tiny")
    config.train.diffaug = "color,blur"
    with pytest.raises(ConfigError, match="diffaug"):
        Config.from_dict(config.to_dict())


def test_skip_generator_keeps_range_and_the_official_keys():
    plain, skipped = ResnetGenerator(3, 8, 2), ResnetGenerator(3, 8, 2, skip=True)
    assert list(plain.state_dict()) == list(skipped.state_dict())  # no new weights: official keys load
    skipped.load_state_dict(plain.state_dict())
    out = skipped(_images())
    assert out.shape == (4, 3, 32, 32) and out.abs().max() <= 1


def test_skip_generator_with_a_silent_network_returns_its_input():
    g = ResnetGenerator(3, 8, 1, skip=True)
    last = g.model[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = _images() * 0.99
    assert torch.allclose(g(x), x, atol=1e-5)


def test_skip_needs_equal_channels():
    with pytest.raises(ConfigError, match="skip"):
        Config.from_dict({"model": {"skip": True, "channels_a": 1, "channels_b": 3},
                          "train": {"lambda_identity": 0.0}})
    with pytest.raises(ConfigError, match="output channels"):
        ResnetGenerator(1, 8, 1, out_channels=3, skip=True)


def test_spectral_norm_bounds_each_conv_and_replaces_instance_norm():
    d = build_discriminator(ModelConfig(ndf=8, n_layers_d=2, spectral_norm=True))
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in d.modules())
    d.train()
    for _ in range(20):  # power iteration converges over forward passes
        d(_images())
    for module in d.modules():
        if isinstance(module, torch.nn.Conv2d):
            sigma = torch.linalg.matrix_norm(module.weight.detach().flatten(1), ord=2)
            assert float(sigma) == pytest.approx(1.0, abs=0.05)


def test_checkerboard_score_sees_a_period_two_pattern_and_not_smooth_images():
    smooth = torch.nn.functional.interpolate(_images(4, 8), size=64, mode="bilinear", align_corners=False)
    stripes = (torch.arange(64) % 2).float()
    board = ((stripes.view(1, 64) + stripes.view(64, 1)) % 2) * 0.1
    assert checkerboard_energy(smooth) < 1e-3
    assert checkerboard_energy(smooth + board) > 20 * checkerboard_energy(smooth)


def test_held_out_real_images_scored_as_fakes_raise_the_memorising_warning(tmp_path):
    warnings = RunWarnings(tmp_path)
    monitor = health.TrainingMonitor(warnings)
    scores = {"d_real": 0.5, "d_fake": 0.5}
    fine = {"AtoB": {"d_auc": 0.55} | scores, "BtoA": {"d_auc": 0.6} | scores}
    memorised = {"AtoB": {"d_auc": 0.15} | scores, "BtoA": {"d_auc": 0.6} | scores}
    monitor.observe(1, 1, fine, 1.0)
    monitor.observe(2, 2, memorised, 1.0)
    assert warnings.items == []  # one evaluation is not a trend
    monitor.observe(3, 3, memorised, 1.0)
    assert [w["kind"] for w in warnings.items] == ["discriminator_memorising"]
    assert "D_B" in warnings.items[0]["message"] and "--diffaug" in warnings.items[0]["message"]
    restored = health.TrainingMonitor(RunWarnings(tmp_path))
    restored.load_state_dict(monitor.state_dict())
    assert restored.memorising == {"A": 0, "B": 2}


def test_a_run_with_every_addition_trains_resumes_and_translates(tmp_path, shapes_dir):
    config = small_config(shapes_dir, diffaug="color,translation,cutout", ema=0.99, epochs=1, epochs_decay=0)
    config.model.skip = config.model.spectral_norm = True
    run = tmp_path / "run"
    train(config, run)
    saved = runfolder.load_config(run)
    assert saved.model.skip and saved.model.spectral_norm and saved.train.diffaug == config.train.diffaug
    saved.train.epochs_decay = 1
    train(saved, run, resume=True)
    assert runfolder.read_best(run) is not None
    translator = Translator.from_run(run, device="cpu", best=True)
    out = translator.translate_tensor(_images(2, 32), "AtoB")
    assert out.shape == (2, 3, 32, 32)
    assert isinstance(translator.generator("AtoB"), ResnetGenerator) and translator.generator("AtoB").skip
