import pytest
import torch

from cyclegan.train.losses import cycle_loss, discriminator_adversarial, generator_adversarial, identity_loss


def test_lsgan_is_squared_distance_to_the_labels():
    fake = torch.full((1, 1, 4, 4), 0.5)
    assert generator_adversarial("lsgan", fake).item() == pytest.approx(0.25)
    real = torch.full((1, 1, 4, 4), 0.8)
    # halved: 0.5 * ((0.8-1)^2 + 0.5^2)
    assert discriminator_adversarial("lsgan", real, fake).item() == pytest.approx(0.5 * (0.04 + 0.25))


def test_bce_is_non_saturating_on_logits():
    zeros = torch.zeros(2, 1, 3, 3)
    assert generator_adversarial("bce", zeros).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    confident = torch.full((2, 1, 3, 3), 20.0)
    assert generator_adversarial("bce", -confident).item() > 10  # still a strong gradient signal
    assert discriminator_adversarial("bce", confident, -confident).item() < 1e-6


def test_hinge_losses():
    assert generator_adversarial("hinge", torch.tensor([2.0, 4.0])).item() == -3.0
    assert discriminator_adversarial("hinge", torch.tensor([2.0]), torch.tensor([-2.0])).item() == 0.0
    assert discriminator_adversarial("hinge", torch.tensor([0.0]), torch.tensor([0.0])).item() == 1.0


def test_unknown_gan_loss_is_refused():
    with pytest.raises(ValueError):
        generator_adversarial("wgan", torch.zeros(1))


def test_cycle_and_identity_weights():
    a, b = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert cycle_loss(a, b, 10.0).item() == pytest.approx(10.0)
    assert identity_loss(a, b, lambda_cycle=10.0, lambda_identity=0.5).item() == pytest.approx(5.0)
