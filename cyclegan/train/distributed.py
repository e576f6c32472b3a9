"""Several processes, one run: torch.distributed set up from the variables torchrun exports.

``torchrun --nproc_per_node N -m cyclegan train ...`` starts N copies of the trainer; each reads
RANK, WORLD_SIZE and LOCAL_RANK, joins one process group (NCCL on CUDA, gloo on the CPU) and
trains on its own shard of every epoch, while DistributedDataParallel averages the gradients.
Only rank 0 touches the run folder; the others wait for it at a barrier. Without those variables
(a plain ``cyclegan train``) everything here is a no-op for a world of one.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import ConfigError, CycleGANError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among ``size`` processes and its GPU on this node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, evaluates, writes samples and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer; launch with torchrun") from None


def world_from_env() -> World:
    """The World torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (one process when unset)."""
    world = World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if world.size < 1 or not 0 <= world.rank < world.size:
        raise ConfigError(f"RANK={world.rank} and WORLD_SIZE={world.size} do not describe a process group; "
                          "launch with torchrun")
    return world


def setup(world: World, device: torch.device) -> torch.device:
    """Join the process group (unless alone) and return this rank's device.

    On CUDA each process takes GPU ``LOCAL_RANK`` and the backend is NCCL; on the CPU it is gloo.
    """
    if device.type == "cuda" and world.distributed:
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {world.local_rank} but this node has {torch.cuda.device_count()} "
                              "GPU(s); use --nproc_per_node at most the number of GPUs")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if world.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=world.rank, world_size=world.size,
                                device_id=device if device.type == "cuda" else None)
        log.info("Rank %d of %d joined the %s process group on %s", world.rank, world.size, backend, device)
    return device


def cleanup() -> None:
    """Leave the process group. The barrier first matters: gloo aborts a process that tears down
    its group while a peer is still talking to it."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_on_main(fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only and let every rank share its outcome.

    When ``fn`` raises a CycleGANError (say, the run folder already exists), every rank raises it,
    instead of the others waiting forever at the next collective. Returns ``fn``'s result on rank 0
    and None elsewhere.
    """
    if not dist.is_initialized():
        return fn()
    result, error = None, None
    if dist.get_rank() == 0:
        try:
            result = fn()
        except CycleGANError as exc:
            error = exc
    box: list[Any] = [error]
    dist.broadcast_object_list(box, src=0)
    if box[0] is not None:
        raise box[0]
    return result


def gather_to_main(obj: T) -> list[T] | None:
    """Every rank's ``obj`` on rank 0 (in rank order), None on the others; ``[obj]`` when alone."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is set on any rank, so that all ranks stop at the same step."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def nonfinite_on_any_rank(value: torch.Tensor) -> torch.Tensor:
    """1.0 when ``value`` is NaN/inf on any rank, else 0.0: a 0-dim float tensor on its device,
    computed without a host sync (one tiny all-reduce when distributed).

    Ranks must agree to skip a step: a rank that skipped while another stepped would leave their
    models out of step.
    """
    flag = (~torch.isfinite(value.detach())).any().float()
    if dist.is_initialized():
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return flag


def mean_over_ranks(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Average each tensor over the ranks in one collective (called at log time only)."""
    if not dist.is_initialized() or not values:
        return values
    keys = sorted(values)
    stacked = torch.stack([values[k].float() for k in keys])
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    stacked /= dist.get_world_size()
    return dict(zip(keys, stacked.unbind(0)))


def wrap(net: nn.Module, device: torch.device) -> nn.Module:
    """``net`` in DistributedDataParallel when several ranks train, else ``net`` itself.

    The networks have no batch norm, so there are no buffers to keep in sync; rank 0's weights
    are copied to the others when the wrapper is built.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return net
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids)


def unwrap(net: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (``net`` itself otherwise).

    Call this for a network whose forward must not prepare a gradient reduction: the
    discriminators in the generator step, where their parameters are frozen and no all-reduce for
    them follows; and any network at sampling or evaluation time.
    """
    return net.module if isinstance(net, DistributedDataParallel) else net


def rank_batches_done(batches_done: int, batch_size: int, saved_world: int, world: int) -> int:
    """Batches already done in an epoch, per rank, when a run saved at ``saved_world`` ranks resumes at ``world``.

    Ranks take strided shards of the epoch's order (rank r: items r, r+W, ...), so after ``b``
    batches on every rank the items done are exactly the first ``b * batch_size * W`` of the
    epoch. At a different world size the new ranks skip the largest whole number of batches
    inside that prefix: nothing is skipped that was not trained on, and fewer than
    ``batch_size * world`` items are trained on twice.
    """
    if saved_world == world:
        return batches_done
    return (batches_done * batch_size * saved_world) // (batch_size * world)
