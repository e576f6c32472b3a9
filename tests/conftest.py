"""Shared fixtures: a small synthetic dataset and a tiny config (ngf 8, 32-64 px) for fast tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The learning run trains in a background process while the rest of the suite runs (`learning_run`
# below). One torch thread per process lets the two share a 2-core machine: two multi-threaded torch
# processes on 2 cores slow each other many times over (their OpenMP threads spin waiting for each
# other). Set before torch is first imported; subprocesses inherit it; a value you set is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from cyclegan.config import Config, ModelConfig, TrainConfig  # noqa: E402  (after OMP_NUM_THREADS)
from cyclegan.data.synthetic import make_dataset


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """A 12-image-per-domain, 32 px copy of the embedded dataset (with test split and ground truth)."""
    return make_dataset(tmp_path_factory.mktemp("data") / "shapes", n_train=12, n_test=4, size=32)


def small_config(data: Path, **train_overrides) -> Config:
    """Tiny networks on 32 px crops: a training step takes milliseconds on a CPU."""
    train = TrainConfig(domain_a=str(data / "trainA"), domain_b=str(data / "trainB"),
                        test_a=str(data / "testA"), test_b=str(data / "testB"),
                        load_size=36, crop_size=32, batch_size=2, epochs=1, epochs_decay=1,
                        device="cpu", log_every=2, pool_size=4)
    for name, value in train_overrides.items():
        setattr(train, name, value)
    return Config(model=ModelConfig(ngf=8, ndf=8, n_blocks=1, n_layers_d=2), train=train, preset="test")


@pytest.fixture
def config(shapes_dir) -> Config:
    return small_config(shapes_dir)


LEARNING_TIMEOUT_S = 3600  # the run took 10 to 14 minutes on one core of a 2-core machine


def _needs_learning_run(item) -> bool:
    return "trained_tiny_run" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session, config, items):
    """Run the tests that wait for the background learning run last, so the rest overlap with it;
    skip the tests marked ``cuda`` where there is no CUDA device (the mark is what `pytest -m cuda`,
    benchmarks/gpu_check.py's first step, selects)."""
    items.sort(key=_needs_learning_run)  # stable: the usual order otherwise
    import torch

    if not torch.cuda.is_available():
        for item in items:
            if item.get_closest_marker("cuda"):
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(scope="session", autouse=True)
def learning_run(request, tmp_path_factory):
    """Start `make demo`'s training (the `tiny` preset on the full embedded dataset, the same command)
    in the background at the start of the session, when a collected test needs it; the suite's other
    tests run meanwhile. Yields (process, run folder, dataset, log file), or None when not needed."""
    if not any(_needs_learning_run(item) for item in request.session.items):
        yield None
        return
    root = tmp_path_factory.mktemp("learning")
    data, run, log = make_dataset(root / "shapes"), root / "run", root / "train.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cyclegan", "train", "--data", str(data), "--run", str(run), "--preset", "tiny",
             "--device", "cpu"], stdout=out, stderr=subprocess.STDOUT)
    yield process, run, data, log
    if process.poll() is None:  # the session ended (or was interrupted) before a test waited for it
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def trained_tiny_run(learning_run) -> tuple[Path, Path]:
    """(run folder, dataset) of the background learning run, once it has finished."""
    process, run, data, log = learning_run
    try:
        process.wait(timeout=LEARNING_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the learning run took over {LEARNING_TIMEOUT_S} s; its log: {log}")
    assert process.returncode == 0, f"the learning run failed:\n{log.read_text()[-4000:]}"
    return run, data


def write_random_run(run: Path, seed: int = 0, **model_overrides) -> Path:
    """A run folder with untrained generators (ngf 8, 1 block unless overridden): enough for anything
    that loads and applies a run (translate, export) without spending time on training."""
    import torch

    from cyclegan import runfolder as ckpt
    from cyclegan.models.generators import build_generator

    model = ModelConfig(**{"ngf": 8, "ndf": 8, "n_blocks": 1, "n_layers_d": 2, **model_overrides})
    config = Config(model=model, preset="test")
    torch.manual_seed(seed)
    run.mkdir(parents=True, exist_ok=True)
    for name in ckpt.GENERATORS:
        ckpt.save_weights(build_generator(model), ckpt.generator_path(run, name), step=0)
    ckpt.write_config(run, config)
    return run


@pytest.fixture
def random_run(tmp_path) -> Path:
    return write_random_run(tmp_path / "run")
