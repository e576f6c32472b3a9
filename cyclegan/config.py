"""Configuration: what the networks are (ModelConfig) and how they are trained (TrainConfig).

A run folder's ``config.json`` holds both, so a run can be rebuilt, resumed or served from that
file alone. CLI flags map one-to-one onto these fields (``--crop-size`` sets ``crop_size``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

GAN_LOSSES = ("lsgan", "bce", "hinge")
UPSAMPLE_MODES = ("transpose", "resize")
DEVICES = ("auto", "cpu", "cuda")
SELECT_BY = ("swd", "cycle_l1", "fid", "kid")  # held-out metrics, lower is better


@dataclass
class ModelConfig:
    """The networks. Defaults are the published CycleGAN ones (ResNet-9, 70x70 PatchGAN)."""

    channels: int = 3
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    n_layers_d: int = 3
    upsample: str = "transpose"  # "resize": nearest upsampling + conv, against checkerboard artifacts


@dataclass
class TrainConfig:
    """How to train. Defaults are the published CycleGAN ones, except where noted."""

    domain_a: str = ""
    domain_b: str = ""
    test_a: str = ""
    test_b: str = ""
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    batch_size: int = 1
    epochs: int = 100
    epochs_decay: int = 100
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    gan_loss: str = "lsgan"
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    seed: int = 0
    device: str = "auto"
    amp: bool = False  # bf16 autocast; only takes effect on CUDA
    channels_last: bool = False  # only takes effect on CUDA
    compile: bool = False  # torch.compile the networks; falls back to eager, with a warning, where it fails
    cache_images: bool = False  # decode once into a uint8 cache (when it fits) and crop/flip on the device
    num_workers: int = 0
    log_every: int = 50
    strict: bool = False  # an unreadable image in a folder is an error instead of a skip
    # Held-out evaluation (cyclegan.evaluate, cyclegan.health): not published settings, our additions.
    eval_every: int = 1  # epochs between held-out evaluations; 0 turns evaluation (and best/) off
    val_fraction: float = 0.05  # held out of each training folder when it has no test folder (<= 200 images)
    select_by: str = "swd"  # best-epoch metric, averaged over both directions: swd, cycle_l1, fid, kid
    patience: int = 0  # stop after this many evaluations without improvement; 0: never
    fid: bool = False  # also FID and KID at each evaluation (needs the metrics extra and Inception weights)
    inception_weights: str = ""  # local Inception weights for FID/KID; empty: torch-fidelity's download


@dataclass
class Config:
    """Everything a run needs; serialised as the run folder's ``config.json``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "paper"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        try:
            model = _build(ModelConfig, data.get("model", {}), "model")
            train = _build(TrainConfig, data.get("train", {}), "train")
        except TypeError as exc:  # a value of the wrong shape
            raise ConfigError(f"config is malformed: {exc}") from exc
        config = cls(model=model, train=train, preset=str(data.get("preset", "custom")))
        validate(config)
        return config

    def save(self, path: Path) -> None:
        from .checkpoint import atomic_write_bytes  # local import: checkpoint imports config

        atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: Path) -> "Config":
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing: is this a run folder made by `cyclegan train`?") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is not readable JSON ({exc}); restore it or start a new run") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} does not hold a JSON object; restore it or start a new run")
        return cls.from_dict(data)


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {section} config field(s): {', '.join(unknown)}")
    return cls(**values)


def preset(name: str) -> Config:
    """The named preset: ``paper`` (published defaults), ``fast`` (one GPU), ``tiny`` (CPU demo)."""
    if name == "paper":
        return Config(preset="paper")
    if name == "fast":
        # The published networks, fed in batches of 4 with bf16 autocast, channels_last, torch.compile
        # and the on-device image cache:
        # several times the images/s of the paper setting on a modern GPU.
        train = TrainConfig(batch_size=4, amp=True, channels_last=True, compile=True, cache_images=True,
                            num_workers=4)
        return Config(model=ModelConfig(), train=train, preset="fast")
    if name == "tiny":
        # Small enough to learn the synthetic shapes dataset in a few minutes on a laptop CPU.
        model = ModelConfig(ngf=16, ndf=16, n_blocks=3, n_layers_d=3)
        train = TrainConfig(load_size=64, crop_size=64, batch_size=4, epochs=6, epochs_decay=4,
                            lr=2e-4, pool_size=50, log_every=20)
        return Config(model=model, train=train, preset="tiny")
    raise ConfigError(f"unknown preset {name!r}; choose one of: paper, fast, tiny")


PRESETS = ("paper", "fast", "tiny")


def validate(config: Config) -> None:
    """Refuse combinations that cannot train, with the value at fault named."""
    m, t = config.model, config.train
    checks = [
        (m.channels in (1, 3), f"channels must be 1 or 3, got {m.channels}"),
        (m.ngf > 0 and m.ndf > 0, f"ngf and ndf must be positive, got {m.ngf} and {m.ndf}"),
        (m.n_blocks >= 0, f"n_blocks must be 0 or more, got {m.n_blocks}"),
        (m.n_layers_d >= 1, f"n_layers_d must be 1 or more, got {m.n_layers_d}"),
        (m.upsample in UPSAMPLE_MODES, f"upsample must be one of {UPSAMPLE_MODES}, got {m.upsample!r}"),
        (t.gan_loss in GAN_LOSSES, f"gan_loss must be one of {GAN_LOSSES}, got {t.gan_loss!r}"),
        (t.device in DEVICES or t.device.startswith("cuda:"),
         f"device must be auto, cpu, cuda or cuda:N, got {t.device!r}"),
        (t.crop_size >= 16 and t.crop_size % 4 == 0,
         f"crop_size must be a multiple of 4 and at least 16, got {t.crop_size}"),
        (t.load_size >= t.crop_size,
         f"load_size ({t.load_size}) must be at least crop_size ({t.crop_size})"),
        (t.batch_size >= 1, f"batch_size must be 1 or more, got {t.batch_size}"),
        (t.epochs >= 0 and t.epochs_decay >= 0 and t.epochs + t.epochs_decay >= 1,
         f"epochs + epochs_decay must be at least 1, got {t.epochs} + {t.epochs_decay}"),
        (t.lr > 0, f"lr must be positive, got {t.lr}"),
        (t.lambda_cycle >= 0 and t.lambda_identity >= 0, "lambda_cycle and lambda_identity must be >= 0"),
        (t.pool_size >= 0, f"pool_size must be 0 or more, got {t.pool_size}"),
        (t.num_workers >= 0, f"num_workers must be 0 or more, got {t.num_workers}"),
        (t.log_every >= 1, f"log_every must be 1 or more, got {t.log_every}"),
        (t.eval_every >= 0, f"eval_every must be 0 (off) or more, got {t.eval_every}"),
        (0 < t.val_fraction <= 0.5, f"val_fraction must be above 0 and at most 0.5, got {t.val_fraction}"),
        (t.select_by in SELECT_BY, f"select_by must be one of {SELECT_BY}, got {t.select_by!r}"),
        (t.fid or t.select_by not in ("fid", "kid"), f"select_by {t.select_by!r} needs --fid"),
        (t.patience >= 0, f"patience must be 0 (off) or more, got {t.patience}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


# Fields that may differ when resuming: they change how long or where training runs, not what is
# being trained. Anything else differing from the saved config.json is refused.
RESUMABLE_OVERRIDES = frozenset({"epochs", "epochs_decay", "device", "num_workers", "log_every", "strict",
                                 "compile", "cache_images",
                                 "eval_every", "patience", "fid", "inception_weights",
                                 "domain_a", "domain_b", "test_a", "test_b"})
