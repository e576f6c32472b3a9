"""The fast path: the on-device image cache gives the DataLoader's pixels, torch.compile falls back
cleanly, fused Adam follows the device; CUDA-only checks skip without a GPU."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from cyclegan import runfolder as ckpt
from cyclegan.data import dataset as fastpath
from cyclegan.train import speed
from cyclegan.data.dataset import UnpairedDataset
from cyclegan.data.folders import find_images
from cyclegan.models.generators import build_generator
from cyclegan.train.pool import ImagePool
from cyclegan.train.loop import train
from cyclegan.train.step import Models, Optimizers, step_unless, train_step

from conftest import small_config

needs_cuda = pytest.mark.cuda  # selected by `pytest -m cuda`; conftest.py skips it without a GPU


def _dataset(shapes_dir, epoch: int) -> UnpairedDataset:
    dataset = UnpairedDataset(find_images(shapes_dir / "trainA"), find_images(shapes_dir / "trainB")[:7],
                              load_size=40, crop_size=32, flip=True, seed=3)
    dataset.set_epoch(epoch)
    return dataset


@pytest.mark.parametrize("epoch", [0, 5])
def test_cached_batches_have_the_dataloader_pixels(shapes_dir, epoch):
    dataset = _dataset(shapes_dir, epoch)
    cache = fastpath.ImageCache.build(dataset, torch.device("cpu"))
    assert cache is not None and cache.a.dtype == torch.uint8 and cache.a.shape == (12, 3, 40, 40)
    indices = [1, 3, 5, 7, 9, 11, 0]  # a shard, ending in a partial batch
    cached = list(fastpath.DeviceBatches(dataset, cache, indices, 3, torch.device("cpu")))
    loaded = list(DataLoader(Subset(dataset, indices), batch_size=3))
    assert len(cached) == len(loaded) == 3
    for (ca, cb), (la, lb) in zip(cached, loaded):
        assert torch.equal(ca, la) and torch.equal(cb, lb)


def test_a_cache_that_does_not_fit_falls_back_to_the_disk(shapes_dir, monkeypatch, caplog):
    monkeypatch.setattr(fastpath, "CACHE_SHARE", 1e-12)
    with caplog.at_level(logging.WARNING, logger="cyclegan.fastpath"):
        assert fastpath.ImageCache.build(_dataset(shapes_dir, 0), torch.device("cpu")) is None
    assert "decoding from disk" in caplog.text


def _generator() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_generator(small_config(Path(".")).model)


def test_compile_runs_the_same_network():
    net = _generator()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    compiled = speed.compile_or_eager(net, x, nullcontext,
                                         backend="eager")
    assert compiled is not net
    assert all(p.grad is None for p in net.parameters())  # the trial step leaves no gradients behind
    with torch.no_grad():
        assert torch.allclose(compiled(x), net(x), atol=1e-6)


def test_a_failing_compiler_falls_back_to_eager(caplog):
    net = _generator()

    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler here")

    with caplog.at_level(logging.WARNING, logger="cyclegan.fastpath"):
        out = speed.compile_or_eager(net, torch.zeros(1, 3, 32, 32), nullcontext,
                                        backend=broken_backend)
    assert out is net
    assert "training it eagerly" in caplog.text and "no C++ compiler here" in caplog.text
    assert all(p.grad is None for p in net.parameters())


def _all_weights(run) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v for n in ckpt.GENERATORS + ckpt.DISCRIMINATORS
            for k, v in ckpt.read_weights(run / f"{n}.safetensors").items()}


def test_compiled_cached_training_matches_the_plain_loop(tmp_path, shapes_dir, monkeypatch):
    """Same run, with --compile (eager backend: the graph capture without a C++ toolchain) and
    --cache-images: the weights are those of the plain loop, and the checkpoint keys stay plain."""
    monkeypatch.setattr(speed, "COMPILE_BACKEND", "eager")
    plain = train(small_config(shapes_dir, epochs=1, epochs_decay=0, eval_every=0), tmp_path / "plain")
    fast = train(small_config(shapes_dir, epochs=1, epochs_decay=0, eval_every=0, compile=True, cache_images=True),
                 tmp_path / "fast")
    a, b = _all_weights(plain), _all_weights(fast)
    assert a.keys() == b.keys() and not any("_orig_mod" in k for k in b)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5


def test_resumed_optimizer_keeps_this_devices_kernel_choice(config):
    models = Models.build(config, torch.device("cpu"))
    opt = Optimizers.build(models, config)
    saved_g, saved_d = opt.G.state_dict(), opt.D.state_dict()
    for state in (saved_g, saved_d):
        state["param_groups"][0]["fused"] = True  # as saved by a run on a GPU
    opt.load_state_dict(saved_g, saved_d)
    assert opt.G.param_groups[0]["fused"] is None and opt.D.param_groups[0]["fused"] is None


@pytest.mark.parametrize("fused", [True, None])  # CUDA's kernel (which also runs on the CPU), the CPU's default
def test_a_skipped_step_leaves_weights_moments_and_step_count_untouched(config, fused):
    net = build_generator(config.model)
    opt = torch.optim.Adam(net.parameters(), lr=0.1, fused=fused)

    def step(skip: float, grad: float) -> None:
        for p in net.parameters():
            p.grad = torch.full_like(p, grad)
        step_unless(opt, torch.tensor(skip))

    step(0.0, 1.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    moments = [opt.state[p]["exp_avg"].clone() for p in net.parameters()]
    step(1.0, float("nan"))
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(torch.equal(opt.state[p]["exp_avg"], m) for p, m in zip(net.parameters(), moments))
    assert all(float(opt.state[p]["step"]) == 1 for p in net.parameters())
    step(0.0, 1.0)
    assert any(not torch.equal(v, before[k]) for k, v in net.state_dict().items())


@needs_cuda
def test_cuda_uses_fused_adam_and_the_cache_on_the_gpu(shapes_dir, config):
    device = torch.device("cuda")
    opt = Optimizers.build(Models.build(config, device), config)
    assert opt.G.param_groups[0]["fused"] is True
    dataset = _dataset(shapes_dir, 1)
    cache = fastpath.ImageCache.build(dataset, device)
    assert cache is not None and cache.a.is_cuda
    (ca, cb), = list(fastpath.DeviceBatches(dataset, cache, [0, 2], 2, device))
    la, lb = next(iter(DataLoader(Subset(dataset, [0, 2]), batch_size=2)))
    assert torch.equal(ca.cpu(), la) and torch.equal(cb.cpu(), lb)


@needs_cuda
def test_cuda_fast_path_trains(tmp_path, shapes_dir):
    config = small_config(shapes_dir, epochs=1, epochs_decay=0, eval_every=0, device="cuda", amp="on",
                          channels_last=True, compile=True, cache_images=True)
    run = train(config, tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in _all_weights(run).values())


@needs_cuda
def test_cuda_training_step_never_waits_for_the_host(config):
    device = torch.device("cuda")
    models = Models.build(config, device)
    opt, pools = Optimizers.build(models, config), (ImagePool(4), ImagePool(4))
    a, b = torch.rand(2, 2, 3, 32, 32, device=device) * 2 - 1
    train_step(models, opt, pools, a, b, config, nullcontext)  # warm-up: lazy initialisation may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host sync inside the step now raises
    try:
        for _ in range(3):
            losses = train_step(models, opt, pools, a, b, config, nullcontext)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert float(losses["skipped"]) == 0.0


@pytest.mark.parametrize("iterations,seconds,expected", [
    (1000, 2.3, True),   # the paper networks at 128 px: 80 s of compiling back within ~150 steps
    (100, 2.3, False),
    (1000, 0.2, False),  # the tiny demo's steps: compiling would not pay back in 1,000 of them
    (10000, 0.2, True),
])
def test_compiling_on_a_cpu_pays_only_when_the_run_is_long_enough(iterations, seconds, expected):
    assert speed.compile_pays_back(iterations, seconds) is expected


def test_the_compile_tip_is_for_a_long_eager_cpu_run_only():
    tip = speed.compile_advice(5000, 2.3, "cpu", compiled=False)
    assert tip and "--compile" in tip
    assert speed.compile_advice(5000, 2.3, "cpu", compiled=True) is None
    assert speed.compile_advice(5000, 2.3, "cuda", compiled=False) is None
    assert speed.compile_advice(50, 2.3, "cpu", compiled=False) is None
