"""One CUT (or FastCUT) update, in both directions: generators and PatchNCE heads, then discriminators.

CUT (Park et al., 2020) is one-sided: G maps A to B, a PatchGAN D judges its output, and instead of
a cycle back through a second generator, PatchNCE (train/losses.py) asks each patch of G(x) to be
recognisably the patch of x at its position, judged in G's own encoder through small heads
(models/patchnce.py). This tool promises both mappings, so a run trains two independent CUTs side by
side (A->B with G_AB, D_B and F_AB; B->A with G_BA, D_A and F_BA), summed into one generator update
and one discriminator update like CycleGAN's (train/step.py). Nothing links the two directions, so
``--one-way`` (``ModelConfig.one_way``) drops the B->A one and trains CUT as published, A->B alone.

Published defaults (config.with_family): LSGAN, PatchNCE weight 1 plus an identity term on
target-domain images (CUT), or weight 10 without it and with flip equivariance (FastCUT), 256
patches per layer, temperature 0.07, no history pool. One difference of order: CUT updates D before
G; here G goes first, as in our CycleGAN step, so a NaN/inf generator loss skips the whole step the
same way in both families.

Two shortcuts that leave the arithmetic CUT's: the source's encoder features, which CUT computes in a
pass of their own, are taken from the translation's forward pass (the same input through the same
layers), and with the identity term the x and y halves share one draw of patch positions (CUT draws
each anew), so their two PatchNCE terms are one mean over the pair.

The patch positions and the flips are drawn from a generator seeded by (seed, step, rank), so a
resumed run draws what the uninterrupted one would have: no random state to save.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..config import Config, nce_layer_list
from ..devices import Autocast
from ..models.patchnce import sample_positions
from . import distributed
from .augment import augment
from .losses import generator_adversarial, patch_nce
from .pool import ImagePool
from .step import Models, Optimizers, set_requires_grad, step_unless, update_discriminators


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The draws of one step on one rank (patch positions, flips), the same on every resume."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_009 + rank)


@contextmanager
def captured(G: nn.Module, layers: list[int], wanted: bool) -> Iterator[list[torch.Tensor]]:
    """While the block runs, the outputs of ``G``'s layers ``layers`` are appended to the yielded list
    (when ``wanted``): the main forward pass then also gives PatchNCE the source's features, which
    CUT computes in a second pass through the encoder."""
    features: list[torch.Tensor] = []
    net = distributed.unwrap(G)
    handles = [net.model[i].register_forward_hook(lambda module, inputs, output: features.append(output.detach()))
               for i in layers] if wanted else []
    try:
        yield features
    finally:
        for handle in handles:
            handle.remove()


def nce_loss(G: nn.Module, heads: nn.Module, source: torch.Tensor, translated: torch.Tensor, flipped: bool,
             layers: list[int], config: Config, draws: torch.Generator,
             keys: list[torch.Tensor] | None = None) -> torch.Tensor:
    """PatchNCE between ``source`` and its translation, averaged over the layers and weighted by
    lambda_nce. With flip equivariance the translation was made from the flipped source: its
    features are flipped back, so each position still faces the source patch it came from.
    ``keys``: the source's encoder features at ``layers`` if already at hand (``captured``), else
    computed here."""
    t = config.train
    encoder = distributed.unwrap(G)  # a second way into G's weights; the DDP forward was G(...) itself
    queries = encoder.encode(translated, layers)
    if flipped:
        queries = [torch.flip(q, [3]) for q in queries]
    with torch.no_grad():  # the loss detaches the key side (losses.patch_nce): no graph to keep for it
        keys = keys if keys is not None else encoder.encode(source, layers)
        positions = sample_positions(keys, t.nce_patches, draws)
        key_vectors = heads(keys, positions)
    query_vectors = heads(queries, positions)
    images = source.shape[0]
    total = sum(patch_nce(q, k, images, t.nce_temperature) for q, k in zip(query_vectors, key_vectors))
    return t.lambda_nce * total / len(layers)


def cut_train_step(models: Models, opt: Optimizers, pools: tuple[ImagePool, ImagePool], real_a: torch.Tensor,
                   real_b: torch.Tensor, config: Config, autocast: Autocast,
                   draws: torch.Generator) -> dict[str, torch.Tensor]:
    """One CUT update of both directions; returns detached losses and ``skipped`` as train/step.py's
    ``train_step`` does (a NaN/inf generator loss skips the whole step, a NaN/inf discriminator loss
    the discriminator update)."""
    t, layers = config.train, nce_layer_list(config.model.nce_layers)
    D_A, D_B = models.D_A, models.D_B
    frozen = {"A": distributed.unwrap(D_A) if D_A is not None else None, "B": distributed.unwrap(D_B)}  # see train_step
    directions = [("B", models.G_AB, models.F_AB, real_a, real_b), ("A", models.G_BA, models.F_BA, real_b, real_a)]
    directions = [d for d in directions if d[1] is not None]  # --one-way: A->B alone

    set_requires_grad([D_A, D_B], False)
    opt.G.zero_grad(set_to_none=True)
    fakes, adv, nce = {}, torch.zeros((), device=real_a.device), torch.zeros((), device=real_a.device)
    with autocast():
        for target, G, heads, x, y in directions:
            flipped = t.flip_equivariance and bool(torch.rand((), generator=draws) < 0.5)
            # With the identity term, y goes through G beside x (one pass for both, as CUT does) and
            # y's translation must keep y's patches: PatchNCE over the pair is the mean of CUT's two terms.
            source = torch.cat([x, y]) if t.nce_identity else x
            # The forward pass gives the source's features for free, unless it ran on the flipped source
            # (or compiled, where hooks are not reliable): then nce_loss encodes the source itself.
            reuse = t.lambda_nce > 0 and not flipped and not t.compile
            with captured(G, layers, reuse) as keys:
                out = G(torch.flip(source, [3]) if flipped else source)
            fake = out[:x.shape[0]]
            fakes[target] = fake
            adv = adv + generator_adversarial(t.gan_loss, frozen[target](augment(fake, t.diffaug)))
            if t.lambda_nce > 0:
                nce = nce + nce_loss(G, heads, source, out, flipped, layers, config, draws,
                                     keys if reuse else None)
        loss_g = adv + nce
    loss_g.backward()
    bad_g = distributed.nonfinite_on_any_rank(loss_g)
    step_unless(opt.G, bad_g)

    loss_d_a, loss_d_b, skipped = update_discriminators(models, opt, pools, real_a, real_b, fakes.get("A"), fakes["B"],
                                                       bad_g, config, autocast)
    losses = {"loss_G": loss_g.detach(), "loss_G_adv": adv.detach(), "loss_nce": nce.detach(),
              "loss_D_A": loss_d_a.detach(), "loss_D_B": loss_d_b.detach(), "skipped": skipped}
    if D_A is None:  # --one-way: there is no D_A to log a loss for
        del losses["loss_D_A"]
    return losses
