"""Shared fixtures: a small synthetic dataset and a tiny config (ngf 8, 32-64 px) for fast tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from cyclegan.config import Config, ModelConfig, TrainConfig
from cyclegan.synthetic import make_dataset


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
