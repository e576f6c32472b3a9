"""Training: one step updates both generators, then both discriminators; the loop around it
handles epochs, the learning-rate schedule, logging, samples, checkpoints and exact resume.

The loop is plain top-to-bottom code on purpose: read ``train`` from start to end to see
everything that happens to a run.
"""

from __future__ import annotations

import itertools
import logging
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import distributed, fastpath
from .config import RESUMABLE_OVERRIDES, Config, validate
from .data import UnpairedDataset, epoch_indices, eval_tensor, find_images, load_image
from .errors import CheckpointError, ConfigError, CycleGANError
from .losses import cycle_loss, discriminator_adversarial, generator_adversarial, identity_loss
from .evaluate import heldout_for
from .health import NONFINITE_LIMIT, RunHealth
from .metrics_log import METRICS_FILE, MetricsLog
from .networks import build_discriminator, build_generator
from .plots import save_sample_grid
from .pool import ImagePool

log = logging.getLogger(__name__)

SAMPLE_COUNT = 4  # rows in each epoch's sample grid


class TrainingInterrupted(CycleGANError):
    """Training stopped on request (Ctrl-C) after saving a resumable checkpoint."""


class TrainingDiverged(CycleGANError):
    """Training stopped because step after step had NaN/inf losses (see cyclegan.health)."""


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def lr_factor(epoch: int, epochs: int, epochs_decay: int) -> float:
    """Constant for ``epochs``, then linear decay toward zero over ``epochs_decay`` (as published)."""
    return 1.0 - max(0, epoch + 1 - epochs) / float(epochs_decay + 1)


@dataclass
class Models:
    G_AB: nn.Module
    G_BA: nn.Module
    D_A: nn.Module  # tells real A from B->A fakes
    D_B: nn.Module  # tells real B from A->B fakes

    @classmethod
    def build(cls, config: Config, device: torch.device) -> "Models":
        m = config.model
        return cls(build_generator(m).to(device), build_generator(m).to(device),
                   build_discriminator(m).to(device), build_discriminator(m).to(device))

    def named(self) -> dict[str, nn.Module]:
        return {"G_AB": self.G_AB, "G_BA": self.G_BA, "D_A": self.D_A, "D_B": self.D_B}


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
        return cls(
            torch.optim.Adam(itertools.chain(models.G_AB.parameters(), models.G_BA.parameters()), t.lr, betas,
                             fused=fused),
            torch.optim.Adam(itertools.chain(models.D_A.parameters(), models.D_B.parameters()), t.lr, betas,
                             fused=fused),
        )

    def load_state_dict(self, opt_g: dict, opt_d: dict) -> None:
        """Load saved optimizer states but keep this device's choice of fused kernels (a run saved on
        a GPU may resume on the CPU and the other way round)."""
        for optimizer, state in ((self.G, opt_g), (self.D, opt_d)):
            fused = [group.get("fused") for group in optimizer.param_groups]
            optimizer.load_state_dict(state)
            for group, flag in zip(optimizer.param_groups, fused):
                group["fused"] = flag


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


def _set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def train_step(models: Models, opt: Optimizers, pools: tuple[ImagePool, ImagePool], real_a: torch.Tensor,
               real_b: torch.Tensor, config: Config, autocast) -> dict[str, torch.Tensor]:
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

    _set_requires_grad([D_A, D_B], False)
    opt.G.zero_grad(set_to_none=True)
    with autocast():
        fake_b = G_AB(real_a)
        fake_a = G_BA(real_b)
        adv = (generator_adversarial(t.gan_loss, frozen_b(fake_b))
               + generator_adversarial(t.gan_loss, frozen_a(fake_a)))
        cyc = cycle_loss(G_BA(fake_b), real_a, t.lambda_cycle) + cycle_loss(G_AB(fake_a), real_b, t.lambda_cycle)
        if t.lambda_identity > 0:
            idt = (identity_loss(G_AB(real_b), real_b, t.lambda_cycle, t.lambda_identity)
                   + identity_loss(G_BA(real_a), real_a, t.lambda_cycle, t.lambda_identity))
        else:
            idt = torch.zeros((), device=real_a.device)
        loss_g = adv + cyc + idt
    loss_g.backward()
    bad_g = distributed.nonfinite_on_any_rank(loss_g)  # an update from a NaN/inf loss would ruin the weights
    step_unless(opt.G, bad_g)

    _set_requires_grad([D_A, D_B], True)
    opt.D.zero_grad(set_to_none=True)
    pool_a, pool_b = pools
    with autocast():
        loss_d_a = discriminator_adversarial(t.gan_loss, D_A(real_a), D_A(pool_a.query(fake_a, bad_g)))
        loss_d_b = discriminator_adversarial(t.gan_loss, D_B(real_b), D_B(pool_b.query(fake_b, bad_g)))
    (loss_d_a + loss_d_b).backward()
    skipped = torch.maximum(bad_g, distributed.nonfinite_on_any_rank(loss_d_a + loss_d_b))
    step_unless(opt.D, skipped)
    return {"loss_G": loss_g.detach(), "loss_G_adv": adv.detach(), "loss_cycle": cyc.detach(),
            "loss_identity": idt.detach(), "loss_D_A": loss_d_a.detach(), "loss_D_B": loss_d_b.detach(),
            "skipped": skipped}


@contextmanager
def _stop_on_sigint(flag: dict[str, bool]) -> Iterator[None]:
    """First Ctrl-C asks the loop to stop after the current step; a second one stops at once."""
    try:
        previous = signal.getsignal(signal.SIGINT)
    except ValueError:  # not the main thread: no signal handling possible
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True
        log.warning("Stopping after this step and saving a resumable checkpoint (Ctrl-C again to abort)")

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def check_new_run(config: Config, run_dir: Path) -> None:
    """Refuse a run folder that already has files (never overwrite a run) or an invalid config."""
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise CheckpointError(f"run folder {run_dir} already exists; resume it with `cyclegan train --resume "
                              f"{run_dir}` or choose another --run name")
    validate(config)


def write_run_config(config: Config, run_dir: Path, resume: bool) -> None:
    """config.json of a new run (creating its folder), or the resumed run's (which may extend the epochs)."""
    if not resume:
        # checked again, not only before the images were found and decoded: that can take minutes,
        # and another `train` (or the app's Train tab) may have claimed the folder meanwhile
        check_new_run(config, run_dir)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    config.save(Path(run_dir) / ckpt.CONFIG_FILE)


def merge_resume_config(saved: Config, overrides: dict[str, object]) -> Config:
    """Apply command-line overrides to a saved config; refuse ones that would change what is trained."""
    model_fields = saved.model.__dataclass_fields__
    refused = []
    for name, value in overrides.items():
        section = saved.model if name in model_fields else saved.train
        current = getattr(section, name)
        if value == current:
            continue
        if name not in RESUMABLE_OVERRIDES:
            refused.append(f"{name} (saved {current!r}, given {value!r})")
            continue
        setattr(section, name, value)
    if refused:
        raise ConfigError("cannot resume with a different " + "; ".join(refused)
                          + ": drop these flags, or start a new run with --run")
    validate(saved)
    return saved


def _diverged(models: Models, save_checkpoint: Callable[[], None], epoch: int, step: int,
              run_dir: Path) -> "TrainingDiverged":
    """The error that ends a diverged run, after saving a checkpoint when the weights are still finite
    (skipped steps never reach the weights, but a step whose loss was finite can still break them)."""
    finite = all(torch.isfinite(p).all() for net in models.named().values() for p in net.parameters())
    if finite:
        save_checkpoint()
        kept = f"a resumable checkpoint at step {step} was saved"
    else:
        kept = "the weights are no longer finite, so the checkpoint of the last finished epoch was kept"
    return TrainingDiverged(
        f"training diverged at epoch {epoch}, step {step}: {NONFINITE_LIMIT} or more steps in a row had NaN/inf "
        f"losses; {kept}. Try a new run with a lower --lr or --gan-loss lsgan, or continue with "
        f"`cyclegan train --resume {run_dir}`")


def _sample_batch(paths: list[Path], size: int) -> torch.Tensor:
    return torch.stack([eval_tensor(load_image(p), size) for p in paths[:SAMPLE_COUNT]])


def _save_samples(models: Models, sample_a: list[Path], sample_b: list[Path], size: int, device: torch.device,
                  autocast, path: Path) -> None:
    """The epoch's sample grid, drawn with the plain (unwrapped, uncompiled) generators."""
    with torch.inference_mode(), autocast():
        a = _sample_batch(sample_a, size).to(device)
        b = _sample_batch(sample_b, size).to(device)
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
        fake_b, fake_a = models.G_AB(a), models.G_BA(b)
        columns = [a, fake_b, models.G_BA(fake_b), b, fake_a, models.G_AB(fake_a)]
    save_sample_grid(path, columns)


def prepare_for_training(models: Models, config: Config, device: torch.device, autocast) -> Models:
    """The networks as the training step calls them: channels_last (CUDA), compiled (``compile``),
    in DistributedDataParallel (several ranks).

    The modules in ``models`` themselves stay plain: they are what is saved, sampled and evaluated
    (a compiled module's state_dict keys carry an ``_orig_mod.`` prefix; a DDP one, ``module.``).
    """
    t = config.train
    channels_last = t.channels_last and device.type == "cuda"
    wrapped = {}
    for name, net in models.named().items():
        if channels_last:
            net.to(memory_format=torch.channels_last)
        if t.compile:
            example = torch.zeros(t.batch_size, config.model.channels, t.crop_size, t.crop_size, device=device)
            if channels_last:
                example = example.contiguous(memory_format=torch.channels_last)
            net = fastpath.compile_or_eager(net, example, autocast)
        wrapped[name] = distributed.wrap(net, device)
    return Models(**wrapped)


def _shard_length(length: int, world: distributed.World) -> int:
    """How much of an epoch's order the ranks share out: a multiple of the world size, so every rank
    runs the same number of steps (DDP needs that; the remainder is dropped, under one item per rank)."""
    usable = length - length % world.size
    if usable == 0:
        raise ConfigError(f"{length} training pair(s) cannot be split over {world.size} processes; "
                          "add images or launch fewer processes")
    return usable


def _restore_pools(pools: tuple[ImagePool, ImagePool], state: dict, world: distributed.World,
                   device: torch.device) -> None:
    """Each rank takes back the pool it saved; a rank that did not exist at save time starts empty."""
    saved = state.get("pools") or [{"A": state["pool_A"], "B": state["pool_B"]}]
    if world.rank < len(saved):
        pools[0].load_state_dict(saved[world.rank]["A"], device)
        pools[1].load_state_dict(saved[world.rank]["B"], device)
    else:
        log.info("Rank %d starts with empty history pools (the run was saved with %d process(es))",
                 world.rank, len(saved))


def _stop_now(stop: dict[str, bool], step: int, should_stop: Callable[[int], bool] | None,
              world: distributed.World, log_every: int, device: torch.device) -> bool:
    """Whether to stop after this step. Alone: as soon as asked. With several ranks all must stop at
    the same step, so the ranks agree only at logging steps (one tiny all-reduce, no per-step sync)."""
    if should_stop is not None and should_stop(step):
        stop["stop"] = True
    if not world.distributed:
        return stop["stop"]
    return step % log_every == 0 and distributed.any_rank(stop["stop"], device)


def train(config: Config, run_dir: str | Path, *, resume: bool = False,
          should_stop: Callable[[int], bool] | None = None) -> Path:
    """Train (or resume) the run in ``run_dir``; returns the run folder.

    To resume, pass the run's saved config (see ``merge_resume_config``) and ``resume=True``.

    ``should_stop(step)`` is polled after every step (tests and the app use it); Ctrl-C does the
    same. Either way a resumable checkpoint is saved and TrainingInterrupted is raised.
    """
    run_dir = Path(run_dir)
    world = distributed.world_from_env()  # one process unless launched by torchrun
    device = distributed.setup(world, select_device(config.train.device))
    if resume:
        state = ckpt.load_state(run_dir / ckpt.STATE_FILE)
    else:
        distributed.run_on_main(lambda: check_new_run(config, run_dir))
        state = None
    t = config.train
    torch.manual_seed(t.seed)
    use_cuda = device.type == "cuda"
    if use_cuda:
        torch.backends.cudnn.benchmark = True

    # Held-out images (test folders, else a seeded split of the training folders) give the sample
    # grids and the per-epoch evaluation.
    paths_a, sample_a = heldout_for(t, "A", find_images(t.domain_a, strict=t.strict, label="domain A folder"))
    paths_b, sample_b = heldout_for(t, "B", find_images(t.domain_b, strict=t.strict, label="domain B folder"))
    log.info("Domain A: %d images from %s; domain B: %d images from %s; device %s",
             len(paths_a), t.domain_a, len(paths_b), t.domain_b, device)
    dataset = UnpairedDataset(paths_a, paths_b, t.load_size, t.crop_size, t.flip, t.seed)
    shard_length = _shard_length(len(dataset), world)
    # Written only now that the data is known to be usable: a first attempt at unreadable folders
    # leaves no half-made run folder behind to block the retry.
    distributed.run_on_main(lambda: write_run_config(config, run_dir, resume))
    cache = fastpath.ImageCache.build(dataset, device) if t.cache_images else None

    models = Models.build(config, device)
    opt = Optimizers.build(models, config)
    # Each rank keeps its own history of fakes, drawn from its own stream (rank 0's is the single-process one).
    pools = (ImagePool(t.pool_size, t.seed + 1 + 2 * world.rank), ImagePool(t.pool_size, t.seed + 2 + 2 * world.rank))
    epoch, batch_in_epoch, step = 0, 0, 0
    metrics = MetricsLog(run_dir / METRICS_FILE)
    # best/, warnings.json and skipped steps; only rank 0 evaluates and writes
    health = RunHealth.create(run_dir, config, sample_a, sample_b, device, world.is_main)
    if state is not None:
        # The networks come from train_state.pt, not from the *.safetensors beside it: a kill while
        # a checkpoint was being written can leave those one save ahead of the optimizer state.
        for name, net in models.named().items():
            saved = state["models"].get(name, {})
            ckpt.check_state_dict(net, saved, run_dir / ckpt.STATE_FILE)
            net.load_state_dict(saved)
        opt.load_state_dict(state["opt_G"], state["opt_D"])
        _restore_pools(pools, state, world, device)
        epoch, step = state["epoch"], state["step"]
        batch_in_epoch = distributed.rank_batches_done(state["batch"], t.batch_size, state.get("world_size", 1),
                                                       world.size)
        if world.is_main:
            metrics.truncate_after(step)
            health.resume(state.get("health"), step)
        log.info("Resuming %s at epoch %d, step %d", run_dir, epoch + 1, step)
    amp = t.amp and use_cuda

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext()

    nets = prepare_for_training(models, config, device, autocast)  # what the step calls; `models` is what is saved

    def save_checkpoint() -> None:
        # Every rank calls this: each hands its pool to rank 0, which alone writes; the others wait.
        pools_by_rank = distributed.gather_to_main({"A": pools[0].state_dict(), "B": pools[1].state_dict()})

        def write() -> None:
            for name, net in models.named().items():
                ckpt.save_weights(net, run_dir / f"{name}.safetensors", step)
            ckpt.save_state(run_dir / ckpt.STATE_FILE, {
                "epoch": epoch, "batch": batch_in_epoch, "step": step,
                "models": {name: net.state_dict() for name, net in models.named().items()},
                "opt_G": opt.G.state_dict(), "opt_D": opt.D.state_dict(),
                "pool_A": pools[0].state_dict(), "pool_B": pools[1].state_dict(),
                "world_size": world.size, "pools": pools_by_rank, "health": health.state_dict(),
            })

        distributed.run_on_main(write)

    total_epochs = t.epochs + t.epochs_decay
    stop = {"stop": False}
    started = time.time()
    with _stop_on_sigint(stop):
        while epoch < total_epochs:
            lr = t.lr * lr_factor(epoch, t.epochs, t.epochs_decay)
            for optimizer in (opt.G, opt.D):
                for group in optimizer.param_groups:
                    group["lr"] = lr
            dataset.set_epoch(epoch)
            indices = epoch_indices(shard_length, start=batch_in_epoch * t.batch_size, rank=world.rank,
                                    world_size=world.size)
            loader = fastpath.epoch_batches(dataset, cache, indices, t, device)
            sums: dict[str, torch.Tensor] = {}
            updated = torch.zeros((), device=device)  # steps since the last log whose update was applied
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{total_epochs}", unit="it", leave=False,
                       initial=batch_in_epoch, total=batch_in_epoch + len(loader), disable=not world.is_main)
            for real_a, real_b in bar:
                real_a = real_a.to(device, non_blocking=True)
                real_b = real_b.to(device, non_blocking=True)
                if t.channels_last and use_cuda:
                    real_a = real_a.contiguous(memory_format=torch.channels_last)
                    real_b = real_b.contiguous(memory_format=torch.channels_last)
                losses = train_step(nets, opt, pools, real_a, real_b, config, autocast)
                skipped = losses.pop("skipped")  # 1.0: a NaN/inf loss, update skipped; its losses are left out
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0) + torch.where(skipped.bool(), 0.0, v.float())
                updated = updated + (1 - skipped)
                health.note_step(skipped)
                step += 1
                batch_in_epoch += 1
                if step % t.log_every == 0:  # the host reads the losses back only here
                    count = int(updated.item())  # the same on every rank: skips are agreed on
                    sums = distributed.mean_over_ranks(sums)
                    means = {k: (v / count).item() for k, v in sums.items()} if count else {}
                    if world.is_main:
                        metrics.append({"epoch": epoch + 1, "step": step, "lr": lr,
                                        "seconds": round(time.time() - started, 2), **means})
                    bar.set_postfix({k.removeprefix("loss_"): f"{v:.3f}" for k, v in means.items()})
                    sums, updated = {}, torch.zeros((), device=device)
                    if health.check_skipped(epoch + 1, step):
                        bar.close()
                        raise _diverged(models, save_checkpoint, epoch + 1, step, run_dir)
                if _stop_now(stop, step, should_stop, world, t.log_every, device):
                    bar.close()
                    save_checkpoint()
                    distributed.cleanup()
                    raise TrainingInterrupted(
                        f"stopped at epoch {epoch + 1}, step {step}; checkpoint saved, continue with "
                        f"`cyclegan train --resume {run_dir}`")
            bar.close()
            if health.check_skipped(epoch + 1, step):
                raise _diverged(models, save_checkpoint, epoch + 1, step, run_dir)
            epoch += 1
            batch_in_epoch = 0
            if world.is_main:
                _save_samples(models, sample_a, sample_b, t.crop_size, device, autocast,
                              run_dir / "samples" / f"epoch_{epoch:03d}.png")
            stop_early = world.is_main and health.end_epoch(epoch, step, models.named(), metrics, autocast)
            save_checkpoint()
            log.info("epoch %d/%d done (step %d, lr %.2e, %.0fs)", epoch, total_epochs, step, lr,
                     time.time() - started)
            if distributed.any_rank(stop_early, device):
                break
    distributed.cleanup()
    return run_dir
