"""Distributed training on 2 CPU processes (gloo): ranks stay identical and equal to one process
on the union batch, torchrun runs write one checkpoint, and resume works at the same or another
number of processes."""

from __future__ import annotations

import csv
import importlib.util
import os
import socket
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from cyclegan import runfolder as ckpt
from cyclegan.train import distributed
from cyclegan.errors import ConfigError
from cyclegan.train.pool import ImagePool
from cyclegan.train.loop import merge_resume_config, train
from cyclegan.train.step import Models, Optimizers, prepare_for_training, train_step

from conftest import small_config

STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch(step: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 * step + index)
    return torch.rand(1, 3, 32, 32, generator=g) * 2 - 1, torch.rand(1, 3, 32, 32, generator=g) * 2 - 1


def _train_steps(models: Models, config, world_size: int, rank: int, nets: Models) -> None:
    opt = Optimizers.build(models, config)
    pools = (ImagePool(0), ImagePool(0))  # pass-through, so ranks and a single process see the same fakes
    for step in range(STEPS):
        parts = [_batch(step, i) for i in range(2)]
        mine = parts if world_size == 1 else parts[rank:rank + 1]
        a, b = torch.cat([p[0] for p in mine]), torch.cat([p[1] for p in mine])
        train_step(nets, opt, pools, a, b, config, nullcontext)


def _rank_main(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    config = small_config(Path("."), pool_size=0)
    world = distributed.world_from_env()
    device = distributed.setup(world, torch.device("cpu"))
    torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
    models = Models.build(config, device)
    _train_steps(models, config, 2, rank, prepare_for_training(models, config, device, nullcontext))
    torch.save({n: m.state_dict() for n, m in models.named().items()}, f"{out}/rank{rank}.pt")
    distributed.cleanup()


def test_two_ranks_stay_identical_and_match_one_process_on_the_union_batch(tmp_path):
    mp.spawn(_rank_main, args=(_free_port(), str(tmp_path)), nprocs=2)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    config = small_config(Path("."), pool_size=0)
    torch.manual_seed(0)
    single = Models.build(config, torch.device("cpu"))
    initial = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in single.named().items()}
    _train_steps(single, config, 1, 0, single)
    for name, net in single.named().items():
        for key, value in net.state_dict().items():
            assert torch.equal(r0[name][key], r1[name][key]), f"{name}.{key} differs between ranks"
            # DDP's mean of per-rank gradients is the gradient of the batch of 2 on one process. Only
            # weights: a bias that feeds an instance norm has a gradient of exactly zero in theory, so
            # rounding noise decides the sign of its Adam step.
            if key.endswith("weight"):
                assert torch.allclose(r0[name][key], value, atol=1e-5), f"{name}.{key} differs from one process"
    assert any(not torch.equal(initial["G_AB"][k], v) for k, v in r0["G_AB"].items())  # it did train


def _nan_rank_main(rank: int, port: int, out: str) -> None:
    """Three steps on two ranks; at the second, rank 1 alone sees a NaN image."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    config = small_config(Path("."), pool_size=0)
    device = distributed.setup(distributed.world_from_env(), torch.device("cpu"))
    models = Models.build(config, device)
    nets = prepare_for_training(models, config, device, nullcontext)
    opt = Optimizers.build(models, config)
    pools = (ImagePool(0), ImagePool(0))
    skipped = []
    for step in range(STEPS):
        a, b = _batch(step, rank)
        if step == 1 and rank == 1:
            a = torch.full_like(a, float("nan"))
        skipped.append(bool(train_step(nets, opt, pools, a, b, config, nullcontext)["skipped"]))
    torch.save({"skipped": skipped, **{n: m.state_dict() for n, m in models.named().items()}}, f"{out}/rank{rank}.pt")
    distributed.cleanup()


def test_a_nan_on_one_rank_is_skipped_by_every_rank(tmp_path):
    # A rank that skips alone would leave the gradient all-reduces out of step: the ranks would hang.
    processes = mp.spawn(_nan_rank_main, args=(_free_port(), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 120
    while not processes.join(timeout=5):
        if time.monotonic() > deadline:
            for process in processes.processes:
                process.kill()
            pytest.fail("the ranks hung after a NaN loss on one of them")
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0.pop("skipped") == r1.pop("skipped") == [False, True, False]
    for name, state in r0.items():
        for key, value in state.items():
            assert torch.isfinite(value).all() and torch.equal(value, r1[name][key]), f"{name}.{key}"


def _torchrun(args: list[str], port: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "cyclegan", "train",
                           *args], capture_output=True, text=True, timeout=180, env=env)


SMALL_FLAGS = ["--ngf", "8", "--ndf", "8", "--n-blocks", "1", "--n-layers-d", "2", "--load-size", "36",
               "--crop-size", "32", "--batch-size", "2", "--epochs-decay", "0", "--device", "cpu",
               "--log-every", "1", "--pool-size", "4", "--eval-every", "0"]


def test_torchrun_two_ranks_write_one_checkpoint_and_resume(tmp_path, shapes_dir):
    run = tmp_path / "run"
    tensorboard = ["--tensorboard"] if importlib.util.find_spec("tensorboard") else []
    first = _torchrun(["--data", str(shapes_dir), "--run-dir", str(run), "--epochs", "1", *SMALL_FLAGS, *tensorboard],
                      _free_port())
    assert first.returncode == 0, first.stderr[-3000:]
    state = ckpt.load_state(run)
    # 12 pairs over 2 ranks at batch 2: 3 steps per rank and epoch
    assert (state["epoch"], state["batch"], state["step"], state["world_size"]) == (1, 0, 3, 2)
    assert len(state["pools"]) == 2 and not torch.equal(state["pools"][0]["A"]["images"],
                                                        state["pools"][1]["A"]["images"])
    steps = [int(r["step"]) for r in csv.DictReader((run / "metrics.csv").open())]
    assert steps == [1, 2, 3]  # one writer: no row twice
    assert [p.name for p in (run / "samples").iterdir()] == ["epoch_001.png"]
    if tensorboard:  # rank 0 alone writes events
        assert len(list(ckpt.tensorboard_dir(run).iterdir())) == 1

    again = _torchrun(["--resume", str(run), "--epochs", "2"], _free_port())
    assert again.returncode == 0, again.stderr[-3000:]
    state = ckpt.load_state(run)
    assert (state["epoch"], state["step"]) == (2, 6)
    assert ckpt.weights_step(run / "G_AB.safetensors") == 6

    # and on with one process: its pool is rank 0's, its epochs twice as long
    train(merge_resume_config(ckpt.load_config(run), {"epochs": 3}), run, resume=True)
    state = ckpt.load_state(run)
    assert (state["epoch"], state["step"], state["world_size"]) == (3, 12, 1)


@pytest.mark.parametrize("saved_world,world", [(2, 2), (2, 1), (1, 2), (3, 2), (2, 3)])
@pytest.mark.parametrize("batches_done", [0, 1, 4, 5])
def test_resuming_mid_epoch_at_another_world_size_skips_only_what_was_trained(saved_world, world, batches_done):
    batch_size, length = 2, 60
    done = {i for r in range(saved_world) for i in list(range(r, length, saved_world))[:batches_done * batch_size]}
    new_batches = distributed.rank_batches_done(batches_done, batch_size, saved_world, world)
    skipped = {i for r in range(world) for i in list(range(r, length, world))[:new_batches * batch_size]}
    assert skipped <= done
    assert len(done - skipped) < batch_size * world


def test_a_bad_torchrun_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="RANK=2 and WORLD_SIZE=2"):
        distributed.world_from_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ConfigError, match="RANK='x'"):
        distributed.world_from_env()


def test_alone_nothing_is_wrapped_or_gathered(config):
    models = Models.build(config, torch.device("cpu"))
    assert distributed.wrap(models.G_AB, torch.device("cpu")) is models.G_AB
    assert distributed.gather_to_main(5) == [5]
    assert distributed.run_on_main(lambda: 7) == 7


def test_torchrun_trains_and_resumes_a_cut_run(tmp_path, shapes_dir):
    """CUT under DDP: its heads are wrapped too, and its encoder passes share the generators' gradient sync."""
    run = tmp_path / "run"
    flags = [f for f in SMALL_FLAGS if f not in ("--pool-size", "4")]
    first = _torchrun(["--data", str(shapes_dir), "--run-dir", str(run), "--epochs", "1", "--model", "cut", *flags],
                      _free_port())
    assert first.returncode == 0, first.stderr[-3000:]
    state = ckpt.load_state(run)
    assert (state["epoch"], state["step"], state["world_size"]) == (1, 3, 2) and "F_AB" in state["models"]
    again = _torchrun(["--resume", str(run), "--epochs", "2"], _free_port())
    assert again.returncode == 0, again.stderr[-3000:]
    assert ckpt.load_state(run)["step"] == 6
