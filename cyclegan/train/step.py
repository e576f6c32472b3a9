"""One CycleGAN update: both generators, then both discriminators on pooled fakes.

Also what every family's update works on: the networks (``Models``: two generators, two
discriminators, and CUT's PatchNCE heads), their optimizers, and the networks as the step calls them
(``prepare_for_training``: channels_last, compiled, in DDP). CUT's update is train/cut_step.py.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import torch
from torch import nn

from ..config import Config, nce_layer_list
from ..devices import Autocast, channels_last_wanted
from ..models.discriminators import build_discriminator
from ..models.generators import build_generator
from ..models.patchnce import PatchNCEHeads
from . import distributed, speed
from .augment import augment
from .losses import cycle_loss, discriminator_adversarial, generator_adversarial, identity_loss
from .pool import ImagePool


@dataclass
class Models:
    G_AB: nn.Module
    D_B: nn.Module  # tells real B from A->B fakes
    G_BA: nn.Module | None = None  # None only in a one-way CUT run (--one-way): A->B alone
    D_A: nn.Module | None = None  # tells real A from B->A fakes
    F_AB: nn.Module | None = None  # CUT's PatchNCE heads for A->B's encoder (models/patchnce.py); CycleGAN: None
    F_BA: nn.Module | None = None

    @classmethod
    def build(cls, config: Config, device: torch.device) -> "Models":
        m = config.model
        both = not m.one_way
        # Built in this order (G_AB, G_BA, D_A, D_B): the order their initial weights are drawn in.
        G_AB = build_generator(m, "AtoB").to(device)
        G_BA = build_generator(m, "BtoA").to(device) if both else None
        D_A = build_discriminator(m, "A").to(device) if both else None
        models = cls(G_AB=G_AB, G_BA=G_BA, D_A=D_A, D_B=build_discriminator(m, "B").to(device))
        if m.family != "cyclegan":
            layers = nce_layer_list(m.nce_layers)
            models.F_AB = PatchNCEHeads.for_generator(models.G_AB, layers, m.nce_width).to(device)
            if both:
                models.F_BA = PatchNCEHeads.for_generator(models.G_BA, layers, m.nce_width).to(device)
        return models

    def named(self) -> dict[str, nn.Module]:
        """The networks this run has, by the names their files and state use."""
        every = {"G_AB": self.G_AB, "G_BA": self.G_BA, "D_A": self.D_A, "D_B": self.D_B, "F_AB": self.F_AB,
                 "F_BA": self.F_BA}
        return {name: net for name, net in every.items() if net is not None}

    def generators(self) -> dict[str, nn.Module]:
        return {name: net for name, net in self.named().items() if name.startswith("G_")}


@dataclass
class Optimizers:
    G: torch.optim.Optimizer
    D: torch.optim.Optimizer

    @classmethod
    def build(cls, models: Models, config: Config) -> "Optimizers":
        t = config.train
        betas = (t.beta1, t.beta2)
        # Fused Adam on CUDA: one kernel for all parameters, and it skips a NaN/inf step on the device
        # (``step_unless``). The default elsewhere: on the CPU fused Adam would change the numbers the
        # demo and the learning test were tuned with, for nothing (a host sync costs nothing there).
        fused = True if next(models.G_AB.parameters()).is_cuda else None
        # CUT's heads learn with the generators, at the same rate (CUT gives them an Adam of their own
        # with the same settings, which is the same arithmetic: Adam's state is per parameter).
        named = models.named()
        generators = [net for name, net in named.items() if not name.startswith("D_")]
        discriminators = [net for name, net in named.items() if name.startswith("D_")]
        return cls(
            torch.optim.Adam(itertools.chain(*(g.parameters() for g in generators)), t.lr, betas, fused=fused),
            torch.optim.Adam(itertools.chain(*(d.parameters() for d in discriminators)), t.lr, betas, fused=fused),
        )

    def load_state_dict(self, opt_g: dict, opt_d: dict) -> None:
        """Load saved optimizer states but keep this device's choice of fused kernels (a run saved on
        a GPU may resume on the CPU and the other way round), with the state placed where those
        kernels read it (``place_state``)."""
        for optimizer, state in ((self.G, opt_g), (self.D, opt_d)):
            fused = [group.get("fused") for group in optimizer.param_groups]
            optimizer.load_state_dict(state)
            for group, flag in zip(optimizer.param_groups, fused):
                group["fused"] = flag
            place_state(optimizer)


def place_state(optimizer: torch.optim.Optimizer) -> None:
    """Put each parameter's loaded state where the optimizer that will use it needs it.

    torch's ``load_state_dict`` places ``step`` by the flags the state was *saved* with: a CPU run's
    (unfused) ``step`` stays a CPU tensor even when this optimizer is fused on CUDA, whose kernel
    then fails on its first step. The policy torch's Adam keeps for state it creates itself:
    ``step`` is float32 on the parameter's device for fused or capturable groups, and a float32
    CPU scalar (float64 under a float64 default dtype) otherwise; every other tensor (the
    moments) sits on the parameter's device in its dtype.
    """
    host_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    for group in optimizer.param_groups:
        on_device = bool(group.get("fused") or group.get("capturable"))
        for param in group["params"]:
            state = optimizer.state.get(param)
            if not state:
                continue
            for key, value in state.items():
                if key == "step":
                    value = value if torch.is_tensor(value) else torch.tensor(float(value))  # torch < 1.12: a number
                    state[key] = (value.to(device=param.device, dtype=torch.float32) if on_device
                                  else value.to(device="cpu", dtype=host_dtype))
                elif torch.is_tensor(value):
                    state[key] = value.to(device=param.device,
                                          dtype=param.dtype if param.is_floating_point() else value.dtype)


def step_unless(optimizer: torch.optim.Optimizer, skip: torch.Tensor) -> None:
    """``optimizer.step()`` unless ``skip`` is 1.0 (a NaN/inf loss).

    Fused Adam (CUDA) decides on the device, with no host sync: it reads ``found_inf`` as
    torch.amp.GradScaler hands it over, and where it is 1 the kernel leaves the weights, the
    moments and the step count untouched. Any other optimizer (the CPU's) asks the host, where
    that costs nothing.
    """
    if optimizer.param_groups[0].get("fused"):
        optimizer.found_inf = skip
        optimizer.step()
    elif not bool(skip):
        optimizer.step()


def set_requires_grad(nets: list[nn.Module | None], flag: bool) -> None:
    """``requires_grad`` of every parameter of ``nets`` (a one-way run's missing D_A is None: skipped)."""
    for net in nets:
        for p in net.parameters() if net is not None else ():
            p.requires_grad_(flag)


def train_step(models: Models, opt: Optimizers, pools: tuple[ImagePool, ImagePool], real_a: torch.Tensor,
               real_b: torch.Tensor, config: Config, autocast: Autocast) -> dict[str, torch.Tensor]:
    """One CycleGAN update: generators first (discriminators frozen), then discriminators on pooled fakes.

    Returns detached losses as tensors, so the caller decides when to pay for a host sync, and
    ``skipped``: 1.0 when a loss was NaN/inf on any rank. A NaN/inf generator loss skips the whole
    step (both updates, and its fakes stay out of the history pool); a NaN/inf discriminator loss
    skips the discriminator update, after the generator update was applied. All of it is decided
    on the device: with fused Adam (CUDA) the step never waits for the host.
    """
    t = config.train
    G_AB, G_BA, D_A, D_B = models.G_AB, models.G_BA, models.D_A, models.D_B
    # Frozen discriminators are called outside their DDP wrappers: a wrapper's forward prepares a
    # gradient all-reduce, which would never happen for parameters that get no gradient.
    frozen_a, frozen_b = distributed.unwrap(D_A), distributed.unwrap(D_B)

    set_requires_grad([D_A, D_B], False)
    opt.G.zero_grad(set_to_none=True)
    with autocast():
        fake_b = G_AB(real_a)
        fake_a = G_BA(real_b)
        # With --diffaug the discriminators see every image, real or fake, augmented (train/augment.py).
        adv = (generator_adversarial(t.gan_loss, frozen_b(augment(fake_b, t.diffaug)))
               + generator_adversarial(t.gan_loss, frozen_a(augment(fake_a, t.diffaug))))
        cyc = cycle_loss(G_BA(fake_b), real_a, t.lambda_cycle) + cycle_loss(G_AB(fake_a), real_b, t.lambda_cycle)
        if t.lambda_identity > 0:  # the config makes sure both domains then have the same channels
            idt = (identity_loss(G_AB(real_b), real_b, t.lambda_cycle, t.lambda_identity)
                   + identity_loss(G_BA(real_a), real_a, t.lambda_cycle, t.lambda_identity))
        else:
            idt = torch.zeros((), device=real_a.device)
        loss_g = adv + cyc + idt
    loss_g.backward()
    bad_g = distributed.nonfinite_on_any_rank(loss_g)  # an update from a NaN/inf loss would ruin the weights
    step_unless(opt.G, bad_g)

    loss_d_a, loss_d_b, skipped = update_discriminators(models, opt, pools, real_a, real_b, fake_a, fake_b, bad_g,
                                                       config, autocast)
    return {"loss_G": loss_g.detach(), "loss_G_adv": adv.detach(), "loss_cycle": cyc.detach(),
            "loss_identity": idt.detach(), "loss_D_A": loss_d_a.detach(), "loss_D_B": loss_d_b.detach(),
            "skipped": skipped}


def update_discriminators(models: Models, opt: Optimizers, pools: tuple[ImagePool, ImagePool], real_a: torch.Tensor,
                          real_b: torch.Tensor, fake_a: torch.Tensor | None, fake_b: torch.Tensor, bad_g: torch.Tensor,
                          config: Config, autocast: Autocast) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every family's discriminator update, after its generator update: D_A on real A against pooled
    B->A fakes, D_B on real B against pooled A->B fakes (a skipped generator step's fakes stay out of
    the pools). Returns both losses and ``skipped`` (1.0 when either update was skipped). A one-way
    run has no D_A: its loss is 0."""
    t, D_A, D_B = config.train, models.D_A, models.D_B
    set_requires_grad([D_A, D_B], True)
    opt.D.zero_grad(set_to_none=True)
    pool_a, pool_b = pools
    with autocast():
        loss_d_a = (discriminator_adversarial(t.gan_loss, D_A(augment(real_a, t.diffaug)),
                                              D_A(augment(pool_a.query(fake_a, bad_g), t.diffaug)))
                    if D_A is not None else torch.zeros((), device=real_a.device))
        loss_d_b = discriminator_adversarial(t.gan_loss, D_B(augment(real_b, t.diffaug)),
                                             D_B(augment(pool_b.query(fake_b, bad_g), t.diffaug)))
    (loss_d_a + loss_d_b).backward()
    skipped = torch.maximum(bad_g, distributed.nonfinite_on_any_rank(loss_d_a + loss_d_b))
    step_unless(opt.D, skipped)
    return loss_d_a, loss_d_b, skipped


def prepare_for_training(models: Models, config: Config, device: torch.device, autocast: Autocast) -> Models:
    """The networks as the training step calls them: channels_last (CUDA), compiled (``compile``),
    in DistributedDataParallel (several ranks).

    The modules in ``models`` themselves stay plain: they are what is saved, sampled and evaluated
    (a compiled module's state_dict keys carry an ``_orig_mod.`` prefix; a DDP one, ``module.``).
    """
    t = config.train
    channels_last = channels_last_wanted(t.channels_last, device)
    inputs = {"G_AB": config.model.channels_a, "G_BA": config.model.channels_b,
              "D_A": config.model.channels_a, "D_B": config.model.channels_b}
    wrapped = {}
    for name, net in models.named().items():  # a one-way run's missing networks stay None
        if channels_last:
            net.to(memory_format=torch.channels_last)
        if t.compile and name in inputs:  # the generators and discriminators; CUT's small heads run eager
            example = torch.zeros(t.batch_size, inputs[name], t.crop_size, t.crop_size, device=device)
            if channels_last:
                example = example.contiguous(memory_format=torch.channels_last)
            net = speed.compile_or_eager(net, example, autocast)
        wrapped[name] = distributed.wrap(net, device)
    return Models(**wrapped)


class GeneratorEMA:
    """An exponential moving average of the generators' weights (``--ema DECAY``).

    GAN generators oscillate from step to step; the average of the recent weights is a steadier
    model than any single step's (Karras et al., 2018, and most GANs since). It is updated after
    every generator step on the device, with no host sync: a skipped (NaN/inf) step leaves it as it
    was. The decay ramps up from 0 over the first steps ((1 + n) / (10 + n)), so early, poor
    weights fade out quickly.
    """

    def __init__(self, models: Models, decay: float) -> None:
        self.decay = decay
        self.nets = {name: copy.deepcopy(net).requires_grad_(False) for name, net in models.generators().items()}
        self.updates = 0

    @torch.no_grad()
    def update(self, models: Models, skipped: torch.Tensor) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        weight = (1 - decay) * (1 - skipped)  # 0 for a skipped step: the average stays as it was
        for name, ema in self.nets.items():
            source = distributed.unwrap(getattr(models, name))
            averaged = list(ema.parameters())
            torch._foreach_add_(averaged, torch._foreach_mul(torch._foreach_sub(list(source.parameters()), averaged),
                                                            weight))
        self.updates += 1

    def state_dict(self) -> dict:
        return {"updates": self.updates, **{name: net.state_dict() for name, net in self.nets.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        for name, net in self.nets.items():
            net.load_state_dict(state[name])
