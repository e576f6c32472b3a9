"""The losses: adversarial (three kinds), cycle consistency and identity (CycleGAN), PatchNCE (CUT).

The adversarial ones take raw discriminator scores (logits) so the three GAN losses share one
discriminator; each returns a scalar tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def generator_adversarial(kind: str, fake_scores: torch.Tensor) -> torch.Tensor:
    """How far the generator is from having its fakes scored as real."""
    if kind == "lsgan":
        return F.mse_loss(fake_scores, torch.ones_like(fake_scores))
    if kind == "bce":  # the non-saturating loss: -log D(G(x))
        return F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))
    if kind == "hinge":
        return -fake_scores.mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def discriminator_adversarial(kind: str, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Real-vs-fake loss for a discriminator, halved as published so D learns slower than G."""
    if kind == "lsgan":
        real = F.mse_loss(real_scores, torch.ones_like(real_scores))
        fake = F.mse_loss(fake_scores, torch.zeros_like(fake_scores))
    elif kind == "bce":
        real = F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
        fake = F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))
    elif kind == "hinge":
        real = F.relu(1.0 - real_scores).mean()
        fake = F.relu(1.0 + fake_scores).mean()
    else:
        raise ValueError(f"unknown GAN loss {kind!r}")
    return 0.5 * (real + fake)


def cycle_loss(reconstructed: torch.Tensor, original: torch.Tensor, weight: float) -> torch.Tensor:
    """weight * L1(F(G(x)), x): a translation must keep enough of the input to undo it."""
    return weight * F.l1_loss(reconstructed, original)


def identity_loss(mapped: torch.Tensor, original: torch.Tensor, lambda_cycle: float,
                  lambda_identity: float) -> torch.Tensor:
    """L1(G(y), y) weighted lambda_identity * lambda_cycle: an image already in the target domain
    should pass through unchanged, which keeps colours from drifting."""
    return lambda_identity * lambda_cycle * F.l1_loss(mapped, original)


def patch_nce(query: torch.Tensor, key: torch.Tensor, images: int, temperature: float) -> torch.Tensor:
    """CUT's PatchNCE loss for one layer: each output patch (a row of ``query``) must be closer to the
    input patch at its own position (the same row of ``key``) than to the image's other sampled
    input patches, a cross-entropy over cosine similarities divided by ``temperature`` (0.07 published).

    ``query`` and ``key`` hold unit vectors, (images x patches) x width, image by image; negatives
    come from the same image only, as published for unpaired translation. The key side is detached:
    the encoder learns from the translation's side. In fp32 even under autocast: at temperature
    0.07 the logits reach 14, where bf16 keeps barely two digits.
    """
    q = query.float().reshape(images, -1, query.shape[1])
    k = key.detach().float().reshape(images, -1, key.shape[1])
    logits = torch.bmm(q, k.transpose(1, 2)) / temperature  # images x P x P; row i's positive is column i
    target = torch.arange(logits.shape[1], device=logits.device).repeat(images)
    return F.cross_entropy(logits.flatten(0, 1), target)
