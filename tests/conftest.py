"""Shared fixtures: a small synthetic dataset and a tiny config (ngf 8, 32-64 px) for fast tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from cyclegan.config import Config, ModelConfig, TrainConfig
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


@pytest.fixture(scope="session")
def trained_tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, dataset) of the `tiny` preset trained on the full embedded dataset, as `make demo`
    does; about two minutes on a 2-core CPU, so it is trained once per session and shared."""
    from cyclegan.config import preset
    from cyclegan.train.loop import train

    root = tmp_path_factory.mktemp("learning")
    data = make_dataset(root / "shapes")
    config = preset("tiny")
    config.train.domain_a, config.train.domain_b = str(data / "trainA"), str(data / "trainB")
    config.train.test_a, config.train.test_b = str(data / "testA"), str(data / "testB")
    config.train.device = "cpu"
    return train(config, root / "run"), data


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
