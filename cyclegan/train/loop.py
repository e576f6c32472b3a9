"""The training loop: epochs, the learning-rate schedule, logging, samples, held-out evaluation,
best/, warnings, plots, checkpoints and exact resume.

Plain top-to-bottom code on purpose: read ``train`` from start to end to see everything that
happens to a run, and ``_judge_epoch`` and ``_record_epoch`` for what follows each epoch (evaluate,
judge, save the checkpoint, then record, save best, warn, plot), each a call you can see.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import runfolder
from ..config import RESUMABLE_OVERRIDES, Config, validate
from ..data.dataset import ImageCache, UnpairedDataset, epoch_batches, epoch_indices, eval_tensor
from ..data.folders import find_images, heldout_for
from ..devices import Autocast, channels_last_wanted, chosen_autocast, select_device
from ..errors import CheckpointError, ConfigError, CycleGANError, TrainingInterrupted
from ..evaluate.health import NONFINITE_LIMIT, NonFiniteGuard, TrainingMonitor, nonfinite_networks
from ..evaluate.heldout import HeldOut, evaluate_heldout
from ..evaluate.inception import inception_network
from ..evaluate.plots import save_sample_grid, save_training_plots
from ..evaluate.table import SELECTION_RULES, flatten, selection_value
from ..evaluate.timing import LEFT, SPENT, TimeEstimate, duration, estimate, slow_run_advice
from ..images import load_image
from . import distributed
from .clock import StepClock
from .cut_step import cut_train_step, step_generator
from .pool import ImagePool
from .speed import compile_advice
from .step import GeneratorEMA, Models, Optimizers, prepare_for_training, train_step
from .tensorboard_log import TensorBoardLog, summary_writer_class

log = logging.getLogger(__name__)

SAMPLE_COUNT = 4  # rows in each epoch's sample grid


class TrainingDiverged(CycleGANError):
    """Training stopped because steps had NaN/inf losses (see evaluate/health.py), or the weights
    themselves went NaN/inf; the last finite checkpoint is kept."""


def lr_factor(epoch: int, epochs: int, epochs_decay: int) -> float:
    """Constant for ``epochs``, then linear decay toward zero over ``epochs_decay`` (as published)."""
    return 1.0 - max(0, epoch + 1 - epochs) / float(epochs_decay + 1)


@dataclass
class Run:
    """Everything one training run holds while it trains; ``train`` builds it, the helpers use it."""

    config: Config
    run_dir: Path
    world: distributed.World
    device: torch.device
    autocast: Autocast
    models: Models  # plain modules: what is saved, sampled and evaluated
    nets: Models  # the same networks as the step calls them (channels_last, compiled, DDP)
    opt: Optimizers
    pools: tuple[ImagePool, ImagePool]
    metrics: runfolder.MetricsLog
    warnings: runfolder.RunWarnings
    monitor: TrainingMonitor
    guard: NonFiniteGuard
    heldout: HeldOut | None  # None: evaluation is off, or this is not rank 0
    inception: nn.Module | None
    sample_paths: tuple[list[Path], list[Path]]
    clock: StepClock  # seconds per step, for the time estimate
    steps_per_epoch: int  # of this rank
    ema: GeneratorEMA | None = None  # --ema: the averaged generators, which everything but training uses
    tensorboard: TensorBoardLog | None = None  # --tensorboard, on rank 0
    epoch_end_seconds: float = 0.0  # the last epoch's end: samples, evaluation, checkpoint
    estimated: bool = False  # the first time estimate has been logged
    epoch: int = 0
    batch: int = 0  # batches done in the current epoch (by this rank)
    step: int = 0
    saved: tuple[int, int, int] | None = None  # (epoch, batch, step) of the checkpoint on disk; None: none yet
    started: float = field(default_factory=time.time)  # moved back on resume by the time already trained

    @property
    def total_epochs(self) -> int:
        return self.config.train.epochs + self.config.train.epochs_decay

    def generators(self) -> dict[str, nn.Module]:
        """The generators to sample, evaluate and save: the moving average with --ema, else the trained ones."""
        if self.ema is not None:
            return self.ema.nets
        return self.models.generators()  # a one-way run: G_AB alone


def train(config: Config, run_dir: str | Path, *, resume: bool = False,
          should_stop: Callable[[int], bool] | None = None) -> Path:
    """Train (or resume) the run in ``run_dir``; returns the run folder.

    To resume, pass the run's saved config (see ``merge_resume_config``) and ``resume=True``.

    ``should_stop(step)`` is polled after every step (tests and the app use it); Ctrl-C and
    SIGTERM do the same. Either way a resumable checkpoint is saved and TrainingInterrupted is raised.

    The run folder is locked for the whole call (``runfolder.lock_run``): a second trainer on the
    same folder is refused instead of mixing its files with this one's.
    """
    run_dir = Path(run_dir)
    world = distributed.world_from_env()  # one process unless launched by torchrun
    device = distributed.setup(world, select_device(config.train.device))
    with runfolder.lock_run(run_dir) if world.is_main else nullcontext():  # rank 0 alone writes the folder
        return _train(config, run_dir, world, device, resume, should_stop)


def _train(config: Config, run_dir: Path, world: distributed.World, device: torch.device, resume: bool,
           should_stop: Callable[[int], bool] | None) -> Path:
    """``train``'s body, with the run folder locked."""
    t = config.train
    if t.tensorboard:
        summary_writer_class()  # a missing package is an error now, before any image is read
    if resume:
        state = runfolder.load_state(run_dir)
    else:
        distributed.run_on_main(lambda: check_new_run(config, run_dir))
        state = None
    torch.manual_seed(t.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    # Held-out images (test folders, else a seeded split of the training folders) give the sample
    # grids and the per-epoch evaluation.
    paths_a, heldout_a = heldout_for(t, "A", find_images(t.domain_a, strict=t.strict, label="domain A folder"))
    paths_b, heldout_b = heldout_for(t, "B", find_images(t.domain_b, strict=t.strict, label="domain B folder"))
    log.info("Domain A: %d images from %s; domain B: %d images from %s; device %s",
             len(paths_a), t.domain_a, len(paths_b), t.domain_b, device)
    channels = (config.model.channels_a, config.model.channels_b)
    dataset = UnpairedDataset(paths_a, paths_b, t.load_size, t.crop_size, t.flip, t.seed, channels, t.preprocess)
    shard_length = _shard_length(len(dataset), world)
    # Written only now that the data is known to be usable: a first attempt at unreadable folders
    # leaves no half-made run folder behind to block the retry.
    distributed.run_on_main(lambda: write_run_config(config, run_dir, resume))
    cache = ImageCache.build(dataset, device) if t.cache_images else None

    models = Models.build(config, device)
    autocast = chosen_autocast(t.amp, device)  # logs what was chosen and why
    tensorboard = TensorBoardLog(run_dir, state["step"] if state else None) if t.tensorboard and world.is_main else None
    warnings = runfolder.RunWarnings(run_dir, write=world.is_main,  # only rank 0 writes the run folder
                                     also=tensorboard.warning if tensorboard else None)
    run = Run(config, run_dir, world, device, autocast, models, models, Optimizers.build(models, config),
              # Each rank keeps its own history of fakes, drawn from its own stream (rank 0's is the
              # single-process one).
              (ImagePool(t.pool_size, t.seed + 1 + 2 * world.rank), ImagePool(t.pool_size, t.seed + 2 + 2 * world.rank)),
              runfolder.MetricsLog(run_dir), warnings,
              TrainingMonitor(warnings, t.select_by, t.patience, t.gan_loss, config.model.family),
              NonFiniteGuard(warnings), *_heldout_set(config, heldout_a, heldout_b, device, world),
              sample_paths=(heldout_a, heldout_b), clock=StepClock(device),
              steps_per_epoch=math.ceil(shard_length // world.size / t.batch_size), tensorboard=tensorboard)
    if state is not None:
        _restore(run, state)
    if t.ema:
        run.ema = GeneratorEMA(models, t.ema)  # from the restored weights: an exact resume loads its average next
        if state is not None and "ema" in state:
            run.ema.load_state_dict(state["ema"])
    run.nets = prepare_for_training(models, config, device, autocast)

    stop = {"stop": False}
    with _stop_on_signals(stop), closing(tensorboard) if tensorboard else nullcontext():
        while run.epoch < run.total_epochs:
            lr = t.lr * lr_factor(run.epoch, t.epochs, t.epochs_decay)
            for optimizer in (run.opt.G, run.opt.D):
                for group in optimizer.param_groups:
                    group["lr"] = lr
            _train_one_epoch(run, dataset, cache, shard_length, lr, stop, should_stop)
            run.epoch += 1
            run.batch = 0
            ended = time.perf_counter()
            # The checkpoint before any other file: the extras that follow (samples, metrics, best/,
            # plots) may fail, on a full disk say, and must not take the epoch's training with them.
            judged = _judge_epoch(run) if world.is_main else None
            save_checkpoint(run)
            stop_early = _record_epoch(run, judged) if world.is_main else False
            run.epoch_end_seconds = time.perf_counter() - ended
            log.info("epoch %d/%d done (step %d, lr %.2e, %s spent%s)", run.epoch, run.total_epochs, run.step, lr,
                     duration(time.time() - run.started), _time_left_phrase(run))
            if distributed.any_rank(stop_early, device):
                break
        if world.is_main and run.heldout is not None:  # inside: its warning still reaches TensorBoard
            run.monitor.check_end(run.epoch, run.step)
    distributed.cleanup()
    return run_dir


def _heldout_set(config: Config, paths_a: list[Path], paths_b: list[Path], device: torch.device,
                 world: distributed.World) -> tuple[HeldOut | None, nn.Module | None]:
    """The held-out images (and the Inception network with --fid) unless evaluation is off.

    Only the main process of a distributed run evaluates and writes files.
    """
    t = config.train
    if not world.is_main:
        return None, None
    if t.eval_every == 0:
        log.info("Held-out evaluation is off (--eval-every 0): no best/ checkpoint, no collapse checks")
        return None, None
    channels = (config.model.channels_a, config.model.channels_b)
    heldout = HeldOut.from_paths(paths_a, paths_b, t.crop_size, device, channels)
    inception = inception_network(t.inception_weights) if t.fid else None
    return heldout, inception.to(device) if inception is not None else None


def _restore(run: Run, state: dict) -> None:
    """Carry on from train_state.pt.

    The networks come from train_state.pt, not from the *.safetensors beside it: a kill while a
    checkpoint was being written can leave those one save ahead of the optimizer state. Rows and
    warnings logged after the saved step belong to training that is now redone.
    """
    path = run.run_dir / runfolder.STATE_FILE
    for name, net in run.models.named().items():
        saved = state["models"].get(name, {})
        runfolder.check_state_dict(net, saved if isinstance(saved, dict) else {}, path)
        net.load_state_dict(saved)
    try:
        run.opt.load_state_dict(state["opt_G"], state["opt_D"])
        _restore_pools(run.pools, state, run.world, run.device)
    except (AttributeError, KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:  # a bad state
        reason = " ".join(str(exc).split())
        raise CheckpointError(f"{path} holds optimizer or pool state that does not fit this run ({type(exc).__name__}: "
                              f"{reason}); this run cannot be resumed exactly, start a new one") from None
    run.epoch, run.step = state["epoch"], state["step"]
    run.saved = (state["epoch"], state["batch"], state["step"])
    run.started -= state.get("elapsed", 0.0)  # metrics.csv's seconds go on from the time already trained
    run.batch = distributed.rank_batches_done(state["batch"], run.config.train.batch_size,
                                              state.get("world_size", 1), run.world.size)
    if run.world.is_main:
        run.metrics.truncate_after(run.step)
        run.warnings.truncate_after(run.step)
        if state.get("health"):
            run.monitor.load_state_dict(state["health"])
    log.info("Resuming %s at epoch %d, step %d", run.run_dir, run.epoch + 1, run.step)


def _train_one_epoch(run: Run, dataset: UnpairedDataset, cache: ImageCache | None, shard_length: int, lr: float,
                     stop: dict[str, int], should_stop: Callable[[int], bool] | None) -> None:
    """The steps of one epoch, from where a resume left it; losses to metrics.csv every log_every
    steps. Raises TrainingDiverged or TrainingInterrupted after saving a checkpoint."""
    t, world, device = run.config.train, run.world, run.device
    dataset.set_epoch(run.epoch)
    indices = epoch_indices(shard_length, start=run.batch * t.batch_size, rank=world.rank, world_size=world.size)
    loader = epoch_batches(dataset, cache, indices, t.batch_size, t.num_workers, device)
    channels_last = channels_last_wanted(t.channels_last, device)
    sums: dict[str, torch.Tensor] = {}
    updated = torch.zeros((), device=device)  # steps since the last log whose update was applied
    bar = tqdm(loader, desc=f"epoch {run.epoch + 1}/{run.total_epochs}", unit="it", leave=False,
               initial=run.batch, total=run.batch + len(loader), disable=not world.is_main)
    for real_a, real_b in bar:
        real_a = real_a.to(device, non_blocking=True)
        real_b = real_b.to(device, non_blocking=True)
        if channels_last:
            real_a = real_a.contiguous(memory_format=torch.channels_last)
            real_b = real_b.contiguous(memory_format=torch.channels_last)
        if run.config.model.family == "cyclegan":
            losses = train_step(run.nets, run.opt, run.pools, real_a, real_b, run.config, run.autocast)
        else:  # cut, fastcut
            losses = cut_train_step(run.nets, run.opt, run.pools, real_a, real_b, run.config, run.autocast,
                                    step_generator(t.seed, run.step, world.rank))
        skipped = losses.pop("skipped")  # 1.0: a NaN/inf loss, update skipped; its losses are left out
        for k, v in losses.items():
            sums[k] = sums.get(k, 0) + torch.where(skipped.bool(), 0.0, v.float())
        updated = updated + (1 - skipped)
        run.guard.note(skipped)  # counted on the device: no host sync
        if run.ema is not None:
            run.ema.update(run.models, skipped)
        run.step += 1
        run.batch += 1
        run.clock.tick()
        if world.is_main and not run.estimated and run.clock.ready():
            _announce_estimate(run)
        if run.step % t.log_every == 0:  # the host reads the losses back only here
            count = int(updated.item())  # the same on every rank: skips are agreed on
            sums = distributed.mean_over_ranks(sums)
            means = {k: (v / count).item() for k, v in sums.items()} if count else {}
            if world.is_main:
                eta = _estimate(run)
                run.metrics.append({"epoch": run.epoch + 1, "step": run.step, "lr": lr,
                                    SPENT: round(time.time() - run.started, 2),
                                    **({LEFT: round(eta.left_seconds)} if eta else {}), **means})
                if run.tensorboard is not None:
                    run.tensorboard.losses(run.step, lr, means)
            bar.set_postfix({k.removeprefix("loss_"): f"{v:.3f}" for k, v in means.items()})
            sums, updated = {}, torch.zeros((), device=device)
            reason = _too_many_skipped(run)
            if reason:
                bar.close()
                raise _diverged(run, reason)
        if _stop_now(stop, run.step, should_stop, world, t.log_every, device):
            bar.close()
            save_checkpoint(run)
            distributed.cleanup()
            asked = stop.get("signal", signal.SIGINT)
            raise TrainingInterrupted(f"stopped at epoch {run.epoch + 1}, step {run.step}"
                                      + (" on SIGTERM" if asked == signal.SIGTERM else "")
                                      + f"; checkpoint saved, continue with `cyclegan train --resume {run.run_dir}`",
                                      exit_status=128 + asked)
    bar.close()
    run.clock.pause()
    reason = _too_many_skipped(run, epoch_end=True)
    if reason:
        raise _diverged(run, reason)


def _estimate(run: Run) -> TimeEstimate | None:
    """The time estimate from here, once the first one was announced (None before)."""
    per_step = run.clock.read() if run.estimated else None
    if per_step is None:
        return None
    return estimate(per_step, run.steps_per_epoch, run.total_epochs, run.epoch, run.batch, run.epoch_end_seconds)


def _announce_estimate(run: Run) -> None:
    """Once, after the first few dozen steps: the speed and what the run will cost, before it costs
    it; a plain warning, with what to try, when the rest would take more than a day on a CPU."""
    run.estimated = True
    e = _estimate(run)
    unmeasured = "" if run.epoch_end_seconds else " plus its end (samples, held-out evaluation), not measured yet"
    log.info("Speed: %.3g s/step over the first %d steps after the warm-up; an epoch of %d steps takes about %s%s; "
             "all %d epochs about %s, of which %s are left. An estimate: it is refined after every epoch.",
             e.seconds_per_step, run.clock.steps, run.steps_per_epoch, duration(e.epoch_seconds), unmeasured,
             run.total_epochs, duration(e.total_seconds), duration(e.left_seconds))
    tip = compile_advice(run.total_epochs * run.steps_per_epoch - run.step, e.seconds_per_step, run.device.type,
                         run.config.train.compile)
    if tip:
        log.info(tip)
    advice = slow_run_advice(e.left_seconds, run.device.type, run.config.preset)
    if advice:
        log.warning(advice)


def _time_left_phrase(run: Run) -> str:
    """'; about 3 h 20 min left (estimated)' for the epoch's log line ('' before an estimate or at the end)."""
    e = _estimate(run)
    if e is None or run.epoch >= run.total_epochs:
        return ""
    return f"; about {duration(e.left_seconds)} left (estimated)"


@dataclass
class EpochVerdict:
    """An epoch's held-out evaluation and what the monitor made of it, before anything is written."""

    results: dict[str, dict[str, float]]
    flat: dict[str, float]
    value: float | None
    improved: bool
    stop: bool  # --patience ran out
    seconds: float


def _judge_epoch(run: Run) -> EpochVerdict | None:
    """After epoch ``run.epoch`` (rank 0 only), when due: evaluate on the held-out images and let the
    monitor judge it (best epoch, patience, warnings). Nothing is written here: the monitor's new
    state goes into the checkpoint saved next, and its warnings are held for ``_record_epoch``."""
    t = run.config.train
    due = run.epoch % max(t.eval_every, 1) == 0 or run.epoch == run.total_epochs
    if run.heldout is None or not due:
        return None
    started = time.time()
    g, m = run.generators(), run.models
    results = evaluate_heldout(g["G_AB"], g.get("G_BA"), run.heldout, D_A=m.D_A, D_B=m.D_B, autocast=run.autocast,
                               inception=run.inception)
    flat = flatten(results)
    value = selection_value(flat, t.select_by, run.epoch)
    if value is None:
        log.warning("held-out %s could not be computed this epoch; the best epoch is not updated", t.select_by)
    run.warnings.hold = True  # written by _record_epoch, after the checkpoint
    verdict = run.monitor.observe(run.epoch, run.step, results, value)
    return EpochVerdict(results, flat, value, verdict.improved, verdict.stop, time.time() - started)


def _record_epoch(run: Run, judged: EpochVerdict | None) -> bool:
    """After the epoch's checkpoint (rank 0 only): samples, warnings, metrics, best/, kept epochs and
    plots. A failure here (a full disk) loses none of the epoch's training. Returns True when
    --patience says to stop."""
    t = run.config.train
    run.warnings.release()
    save_samples(run)
    if run.tensorboard is not None:
        run.tensorboard.samples(run.step, run.epoch)
    skipped = run.guard.end_epoch(run.epoch, run.step)  # warns once for the epoch's skipped steps
    if judged is None:
        if skipped:  # recorded whether or not the epoch is evaluated, for `cyclegan report`
            run.metrics.append_or_merge({"epoch": run.epoch, "step": run.step, "skipped_steps": skipped})
        return False
    g, results = run.generators(), judged.results
    if run.tensorboard is not None:
        run.tensorboard.heldout(run.step, judged.flat)
    run.metrics.append_or_merge({"epoch": run.epoch, "step": run.step, **judged.flat, "skipped_steps": skipped,
                                 "eval_seconds": round(judged.seconds, 2)})
    if judged.improved:
        runfolder.save_best(run.run_dir, g, best_meta(run, judged.value, judged.flat))
    if t.keep_epochs:
        runfolder.keep_epoch(run.run_dir, run.epoch, g, run.step, t.keep_epochs)
    best = run.monitor.best
    save_training_plots(run.run_dir, best["epoch"] if best else None)
    swd = ", ".join(f"{d[0]}->{d[-1]} {v['swd']:.2f} (unchanged input {v['swd_identity']:.2f})"
                    for d, v in results.items())
    log.info("held-out epoch %d: SWD %s; best %s %.4g at epoch %d (%.1fs)", run.epoch, swd, t.select_by,
             best["value"] if best else float("nan"), best["epoch"] if best else 0, judged.seconds)
    if judged.stop:
        log.warning("Stopping early: held-out %s has not improved for %d evaluations (--patience); the best "
                    "epoch is %d, in %s", t.select_by, run.monitor.since_best, best["epoch"] if best else 0,
                    run.run_dir / runfolder.BEST_DIR)
    return judged.stop


def best_meta(run: Run, value: float, flat: dict[str, float]) -> dict:
    """best/meta.json: the chosen epoch, and why (the rule, its score, how many epochs it beat)."""
    t = run.config.train
    rule = SELECTION_RULES[t.select_by]
    evaluations = sum(1 for row in run.metrics.rows if row.get("val_swd_AtoB"))
    worse, idle = run.monitor.best_worse, run.monitor.best_untranslated
    lowest = run.monitor.lowest
    tie = (f" (within the sampling noise of the lowest, {lowest['value']:.4g}, so the later epoch is kept)"
           if lowest and value > lowest["value"] else "")
    problems = ([f"worse than doing nothing in {'; '.join(worse)}"] if worse else []) + (
        [f"translating nothing in {'; '.join(idle)}"] if idle else [])
    reason = (f"{rule.label}: {value:.4g}{tie}, the best of {evaluations} evaluation(s) so far; "
              + (f"but {' and '.join(problems)}, as every epoch so far" if problems else
                 "every direction translates and none is worse than returning the input unchanged"))
    return {"epoch": run.epoch, "step": run.step, "metric": f"val_{t.select_by}", "value": value,
            "rule": t.select_by, "reason": reason, "worse_than_nothing": worse, "no_translation": idle,
            "metrics": flat}


def save_samples(run: Run) -> None:
    """The epoch's sample grid, drawn with the plain (unwrapped, uncompiled) generators."""
    size, device, g = run.config.train.crop_size, run.device, run.generators()
    channels = (run.config.model.channels_a, run.config.model.channels_b)
    with torch.inference_mode(), run.autocast():
        a = _sample_batch(run.sample_paths[0], size, channels[0]).to(device)
        b = _sample_batch(run.sample_paths[1], size, channels[1]).to(device)
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
        fake_b = g["G_AB"](a)
        if "G_BA" in g:
            fake_a = g["G_BA"](b)
            columns = [a, fake_b, g["G_BA"](fake_b), b, fake_a, g["G_AB"](fake_a)]
        else:  # --one-way: A, its translation, and B beside them for what the target looks like
            columns = [a, fake_b, b]
    save_sample_grid(runfolder.sample_path(run.run_dir, run.epoch), columns)


def _sample_batch(paths: list[Path], size: int, channels: int) -> torch.Tensor:
    return torch.stack([eval_tensor(load_image(p, channels), size) for p in paths[:SAMPLE_COUNT]])


def save_checkpoint(run: Run) -> None:
    """The four networks' weights, then train_state.pt. Every rank calls this: each hands its pool
    to rank 0, which alone writes; the others wait.

    Never over finite weights with NaN/inf ones: then nothing is written, and TrainingDiverged
    names the network that went bad and the checkpoint that is kept.
    """
    bad = _nonfinite(run)
    if bad:
        raise TrainingDiverged(
            f"{' and '.join(bad)} went NaN/inf by step {run.step} (a step whose gradients were NaN/inf); nothing "
            f"was saved over the run's files: {_kept(run)}. Try a new run with a lower --lr or --gan-loss lsgan"
            + (f", or resume it with `cyclegan train --resume {run.run_dir}`" if run.saved else ""))
    pools_by_rank = distributed.gather_to_main({"A": run.pools[0].state_dict(), "B": run.pools[1].state_dict()})

    def write() -> None:
        named = run.models.named()
        for name, net in (named | run.generators()).items():  # the generator files hold what translation uses
            runfolder.save_weights(net, runfolder.weights_path(run.run_dir, name), run.step)
        runfolder.save_state(run.run_dir, {
            "epoch": run.epoch, "batch": run.batch, "step": run.step,
            "models": {name: net.state_dict() for name, net in named.items()},
            "opt_G": run.opt.G.state_dict(), "opt_D": run.opt.D.state_dict(),
            "world_size": run.world.size, "pools": pools_by_rank, "health": run.monitor.state_dict(),
            "elapsed": time.time() - run.started,
            **({"ema": run.ema.state_dict()} if run.ema is not None else {}),
        })

    distributed.run_on_main(write)
    run.saved = (run.epoch, run.batch, run.step)


def _nonfinite(run: Run) -> list[str]:
    """The networks (and --ema averages) that hold NaN/inf weights."""
    averages = {f"{name} (--ema average)": net for name, net in run.ema.nets.items()} if run.ema is not None else {}
    return nonfinite_networks(run.models.named() | averages)


def _kept(run: Run) -> str:
    """Which checkpoint on disk is the last good one, in words."""
    if run.saved is None:
        return "no checkpoint had been saved yet"
    epoch, batch, step = run.saved
    where = f"epoch {epoch}" if batch == 0 else f"within epoch {epoch + 1}"
    return f"the checkpoint of {where} (step {step}) is kept"


def _too_many_skipped(run: Run, epoch_end: bool = False) -> str:
    """At a logging step or an epoch's end: why training must stop for NaN/inf losses ('' if it need
    not): too many skipped steps in a row, or, at the epoch's end, too large a share of the epoch.
    The divergence warning is then written."""
    reason = ""
    if run.guard.check(run.step):
        reason = f"{NONFINITE_LIMIT} or more steps in a row had NaN/inf losses"
    elif epoch_end and run.guard.epoch_share_exceeded(run.steps_per_epoch):
        reason = (f"{run.guard.in_epoch} of the epoch's {run.steps_per_epoch} steps had NaN/inf losses (more than "
                  f"{run.guard.share:.0%})")
    if reason:
        run.guard.end_epoch(run.epoch + 1, run.step)
    return reason


def _diverged(run: Run, reason: str) -> TrainingDiverged:
    """The error that ends a diverged run, after saving a checkpoint when the weights are still finite
    (skipped steps never reach the weights, but a step whose loss was finite can still break them)."""
    bad = _nonfinite(run)
    if not bad:
        save_checkpoint(run)
        kept = f"a resumable checkpoint at step {run.step} was saved"
    else:
        kept = f"{' and '.join(bad)} went NaN/inf, so nothing was saved over them: {_kept(run)}"
    return TrainingDiverged(
        f"training diverged at epoch {run.epoch + 1}, step {run.step}: {reason}; {kept}. Try a new run with a lower "
        f"--lr or --gan-loss lsgan" + (f", or continue with `cyclegan train --resume {run.run_dir}`"
                                       if run.saved else ""))


@contextmanager
def _stop_on_signals(flag: dict) -> Iterator[None]:
    """The first Ctrl-C (SIGINT) or SIGTERM (a job scheduler, ``docker stop``) asks the loop to stop
    after the current step, saving a checkpoint; ``flag["signal"]`` records which came. A second
    one stops at once."""
    asked = (signal.SIGINT, signal.SIGTERM)
    try:
        previous = {signum: signal.getsignal(signum) for signum in asked}
    except ValueError:  # not the main thread: no signal handling possible
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        if flag["stop"]:
            if signum == signal.SIGTERM:
                raise SystemExit(128 + signum)
            raise KeyboardInterrupt
        flag["stop"] = True
        flag["signal"] = signum
        log.warning("Stopping after this step and saving a resumable checkpoint (%s again to abort)",
                    "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C")

    try:
        for signum in asked:
            signal.signal(signum, handler)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


def check_new_run(config: Config, run_dir: Path) -> None:
    """Refuse a run folder that already has files (never overwrite a run) or an invalid config."""
    runfolder.check_new_run_folder(run_dir)
    validate(config)


def write_run_config(config: Config, run_dir: Path, resume: bool) -> None:
    """config.json of a new run (creating its folder), or the resumed run's (which may extend the epochs)."""
    if not resume:
        # checked again, not only before the images were found and decoded: that can take minutes,
        # and another `train` (or the app's Train tab) may have claimed the folder meanwhile
        check_new_run(config, run_dir)
    runfolder.write_config(run_dir, config)


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


def _stop_now(stop: dict[str, int], step: int, should_stop: Callable[[int], bool] | None,
              world: distributed.World, log_every: int, device: torch.device) -> bool:
    """Whether to stop after this step. Alone: as soon as asked. With several ranks all must stop at
    the same step, so the ranks agree only at logging steps (one tiny all-reduce, no per-step sync)."""
    if should_stop is not None and should_stop(step):
        stop["stop"] = True
    if not world.distributed:
        return stop["stop"]
    return step % log_every == 0 and distributed.any_rank(stop["stop"], device)
