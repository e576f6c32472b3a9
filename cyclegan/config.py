"""Configuration: what the networks are (ModelConfig) and how they are trained (TrainConfig).

A run folder's ``config.json`` holds both, so a run can be rebuilt, resumed or served from that
file alone. CLI flags map one-to-one onto these fields (``--crop-size`` sets ``crop_size``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .evaluate.table import SELECTABLE

GAN_LOSSES = ("lsgan", "bce", "hinge")
UPSAMPLE_MODES = ("transpose", "resize")
DEVICES = ("auto", "cpu", "cuda")
# bf16 autocast: off, auto (CUDA, and a CPU with native bf16 once measured to keep quality; devices.py) or on
AMP_MODES = ("off", "auto", "on")
# How a training image becomes a crop_size square (data/dataset.py), named as in the official code.
PREPROCESS = ("resize_and_crop", "scale_width_and_crop", "scale_shortside_and_crop", "crop")
# The transforms of ``--diffaug`` (train/augment.py implements each one).
AUGMENTATIONS = ("color", "translation", "cutout")
SELECT_BY = SELECTABLE  # the held-out metrics a run can pick its best epoch by (evaluate/table.py)
# Model families: what is trained and how (train/step.py for CycleGAN, train/cut_step.py for both CUTs).
FAMILIES = ("cyclegan", "cut", "fastcut")
CUT_NCE_LAYERS = (0, 4, 8, 12, 16)  # CUT's PatchNCE layers in its ResNet-9's encoder (models/generators.py)


@dataclass
class ModelConfig:
    """The networks. Defaults are the published CycleGAN ones (ResNet-9, 70x70 PatchGAN).

    ``generator`` names a class in models/generators.py's registry. ``channels_a`` and
    ``channels_b`` are each domain's image channels (1: grayscale, 3: RGB), as the official
    code's input_nc/output_nc: G_AB maps channels_a to channels_b, D_A judges channels_a images.
    """

    generator: str = "resnet"
    channels_a: int = 3
    channels_b: int = 3
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    n_layers_d: int = 3
    upsample: str = "transpose"  # "resize": nearest upsampling + conv, against checkerboard artifacts
    # Our additions, off in the published presets; `quality` turns on colour and resize upsampling
    # (measured in BENCHMARKS.md, "Translation quality"):
    skip: bool = False  # the generator learns a change to its input (a global skip), not the image anew
    # A per-image colour matrix and offset applied to the input, the network adding a residual on top
    # (models/generators.py, ColourTransform): for styles that are mostly a colour change.
    colour: bool = False
    spectral_norm: bool = False  # spectral norm on the discriminators' convs, in place of instance norm
    # The model family (``--model``): cyclegan, or cut / fastcut, which train each direction with its
    # own PatchNCE heads instead of a cycle (train/cut_step.py). config.json without it: cyclegan.
    family: str = "cyclegan"
    nce_layers: str = "0,4,8,12,16"  # CUT: the encoder layers whose features PatchNCE compares
    nce_width: int = 256  # CUT: units of each layer's PatchNCE MLP head
    # CUT and FastCUT only: train A->B alone (G_AB, D_B, F_AB), about half the time of both ways. The
    # run folder then holds no B->A generator, like a one-direction official import, and every place
    # that offers B->A says so. CycleGAN cannot: its cycle loss needs both generators.
    one_way: bool = False


@dataclass
class TrainConfig:
    """How to train. Defaults are the published CycleGAN ones, except where noted."""

    domain_a: str = ""
    domain_b: str = ""
    test_a: str = ""
    test_b: str = ""
    load_size: int = 286
    crop_size: int = 256
    preprocess: str = "resize_and_crop"  # one of PREPROCESS; the published default squashes to a square
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
    # CUT and FastCUT only (``--model``; published defaults, FastCUT's set by config.with_family):
    lambda_nce: float = 1.0  # weight of the PatchNCE loss (FastCUT: 10)
    nce_identity: bool = True  # also PatchNCE between target-domain images and their own translation (FastCUT: off)
    nce_patches: int = 256  # positions sampled per layer and image
    nce_temperature: float = 0.07
    flip_equivariance: bool = False  # translate a flipped input half the time and flip its features back (FastCUT: on)
    # Our addition: an exponential moving average of the generator weights (decay per step; 0: off).
    # The average is what samples, evaluation, best/ and the saved generators use.
    ema: float = 0.0
    # Our addition: differentiable augmentation of real and fake images alike before the discriminators
    # ("color,translation,cutout"; empty: off), against discriminators memorising small datasets.
    diffaug: str = ""
    seed: int = 0
    device: str = "auto"
    # bf16 autocast (devices.choose_bf16): "off"; "auto" where it is measured to help (CUDA; a CPU
    # stays fp32 until quality against fp32 is measured there); "on" everywhere, a CPU without
    # native bf16 included (slower there). config.json before this held true/false: read as auto/off.
    amp: str = "off"
    channels_last: bool = False  # only takes effect on CUDA
    compile: bool = False  # torch.compile the networks; falls back to eager, with a warning, where it fails
    cache_images: bool = False  # decode once into a uint8 cache (when it fits) and crop/flip on the device
    num_workers: int = 0
    log_every: int = 50
    # Off unless asked: it adds a dependency and an events folder that repeats metrics.csv and samples/.
    tensorboard: bool = False  # also write RUN/tensorboard/ (needs the tensorboard extra)
    strict: bool = False  # an unreadable image in a folder is an error instead of a skip
    # Held-out evaluation (cyclegan.evaluate, cyclegan.health): not published settings, our additions.
    eval_every: int = 1  # epochs between held-out evaluations; 0 turns evaluation (and best/) off
    val_fraction: float = 0.05  # held out of each training folder when it has no test folder (<= 200 images)
    select_by: str = "swd"  # best-epoch metric (evaluate/table.py's SELECTABLE), averaged over both directions
    patience: int = 0  # stop after this many evaluations without improvement; 0: never
    keep_epochs: int = 0  # keep the generators of the last N evaluated epochs in epochs/ (-1: all, 0: none)
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

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "config.json") -> "Config":
        """Parse a config.json's text; errors name ``source``."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{source} is not readable JSON ({exc}); restore it or start a new run") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source} does not hold a JSON object; restore it or start a new run")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}; restore it or start a new run") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        for section in ("model", "train"):
            if not isinstance(data.get(section, {}), dict):
                raise ConfigError(f"'{section}' must be a JSON object, got {data[section]!r}")
        model_values = dict(data.get("model", {}))
        if "channels" in model_values:  # config.json before per-domain channels: one count for both
            both = model_values.pop("channels")
            model_values.setdefault("channels_a", both)
            model_values.setdefault("channels_b", both)
        try:
            model = _build(ModelConfig, model_values, "model")
            train_values = dict(data.get("train", {}))
            if isinstance(train_values.get("amp"), bool):  # config.json before tri-state amp: true was CUDA only
                train_values["amp"] = "auto" if train_values["amp"] else "off"
            train = _build(TrainConfig, train_values, "train")
        except TypeError as exc:  # a value of the wrong shape
            raise ConfigError(f"config is malformed: {exc}") from exc
        config = cls(model=model, train=train, preset=str(data.get("preset", "custom")))
        validate(config)
        return config


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {section} config field(s): {', '.join(unknown)}")
    for f in dataclasses.fields(cls):  # a hand-edited or damaged file: a value of the wrong type
        kinds, wanted = _JSON_TYPES[f.type if isinstance(f.type, str) else f.type.__name__]
        value = values.get(f.name, f.default)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ConfigError(f"{section}.{f.name} must be {wanted}, got {value!r}")
    return cls(**values)


_JSON_TYPES = {"int": ((int,), "a whole number"), "float": ((int, float), "a number"), "str": ((str,), "a string"),
               "bool": ((bool,), "true or false")}  # the JSON values each field type takes


def preset(name: str) -> Config:
    """The named preset: ``paper`` (published defaults), ``quality`` (paper's networks with a per-image
    colour transform, resize upsampling and no identity loss), ``fast`` (one GPU), ``tiny`` (CPU demo)."""
    if name == "paper":
        return Config(preset="paper")
    if name == "quality":
        # The published networks and schedule, with what won across the photo benchmark's style suite
        # at equal iterations (BENCHMARKS.md, "Quality across the style suite"): a per-image colour
        # transform with the network as a residual on top (a photo's detail is kept from the first
        # step, and a colour style is a dozen numbers away), resize-convolution upsampling (far less
        # checkerboard), and no identity loss. The identity loss asks G_AB to leave real B images
        # alone; for the transform's shared numbers that pull is five times the adversarial one and
        # points the other way, so with it a colour grade never got applied (+0.5 dB over the input,
        # against +7 dB without). The previous `quality` (skip and resize) returned its input there.
        return Config(model=ModelConfig(colour=True, upsample="resize"), train=TrainConfig(lambda_identity=0.0),
                      preset="quality")
    if name == "fast":
        # The published networks, fed in batches of 4 with bf16 autocast, channels_last, torch.compile
        # and the on-device image cache:
        # several times the images/s of the paper setting on a modern GPU.
        train = TrainConfig(batch_size=4, amp="auto", channels_last=True, compile=True, cache_images=True,
                            num_workers=4)
        return Config(model=ModelConfig(), train=train, preset="fast")
    if name == "tiny":
        # Small enough to learn the synthetic shapes dataset in about 8 minutes on 2 CPU cores. Images
        # load at 72 px and train on random 64 px crops: without that jitter (load 64) the B->A result
        # swung with seed and CPU rounding (best/ 0.35x to 0.57x the identity's error); with it, at
        # most 0.32x in either direction over four runs (BENCHMARKS.md, "The demo's recipe: crop jitter").
        model = ModelConfig(ngf=16, ndf=16, n_blocks=3, n_layers_d=3)
        train = TrainConfig(load_size=72, crop_size=64, batch_size=4, epochs=6, epochs_decay=4,
                            lr=2e-4, pool_size=50, log_every=20)
        return Config(model=model, train=train, preset="tiny")
    raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")


PRESETS = ("paper", "quality", "fast", "tiny")


def with_family(config: Config, family: str) -> Config:
    """``config`` (a preset) made to train ``family``, with that family's published defaults.

    ``cut`` and ``fastcut`` (Park et al., 2020) use CUT's anti-aliased ResNet generator, no history
    pool and no identity loss of CycleGAN's kind (CUT has its own, in PatchNCE); ``fastcut`` weighs
    PatchNCE 10, drops its identity term and adds flip equivariance. The PatchNCE layers are CUT's
    0, 4, 8, 12 and 16; a generator with fewer than five residual blocks has no layer 16, so those
    beyond its encoder become its last block. The networks' sizes, the schedule and the data
    settings stay the preset's. Flags given after ``--model`` override all of this (and the command
line fits the layers again to a ``--n-blocks`` it was given, unless ``--nce-layers`` was too).
    """
    if family not in FAMILIES:
        raise ConfigError(f"unknown model {family!r}; choose one of: {', '.join(FAMILIES)}")
    m, t = config.model, config.train
    m.family = family
    if family == "cyclegan":
        return config
    m.generator, m.upsample = "resnet_aa", "transpose"
    m.nce_layers = cut_nce_layers(m.n_blocks)
    t.lambda_identity, t.pool_size = 0.0, 0
    fast = family == "fastcut"
    t.lambda_nce, t.nce_identity, t.flip_equivariance = (10.0, False, True) if fast else (1.0, True, False)
    return config


def cut_nce_layers(n_blocks: int) -> str:
    """CUT's PatchNCE layers for its generator with ``n_blocks`` blocks: those past the encoder
    (16 needs five blocks) become its last block."""
    from .models.generators import AntialiasedResnetGenerator  # torch: not needed to parse --help

    last = AntialiasedResnetGenerator.encoder_layers(n_blocks) - 1
    return ",".join(str(i) for i in sorted({min(i, last) for i in CUT_NCE_LAYERS}))


def nce_layer_list(text: str) -> list[int]:
    """``"0,4,8"`` -> [0, 4, 8]; ConfigError when it is not ascending whole numbers."""
    try:
        layers = [int(part) for part in text.split(",")]
    except ValueError:
        layers = []
    if not layers or layers != sorted(set(layers)) or layers[0] < 0:
        raise ConfigError(f"nce_layers must be ascending layer numbers separated by commas, e.g. 0,4,8,12,16; "
                          f"got {text!r}")
    return layers


def augmentations(policy: str) -> tuple[str, ...]:
    """``"color,translation"`` -> ("color", "translation"); "" -> () (no augmentation)."""
    return tuple(name.strip() for name in policy.split(",") if name.strip())


def validate(config: Config) -> None:
    """Refuse combinations that cannot train, with the value at fault named."""
    # Imported here, not at the top: the registry needs torch, and this module is read by the
    # command line's parser, which answers --help without it.
    from .models.generators import REGISTRY as GENERATORS

    m, t = config.model, config.train
    checks = [
        (m.channels_a in (1, 3) and m.channels_b in (1, 3),
         f"channels_a and channels_b must be 1 (grayscale) or 3 (RGB), got {m.channels_a} and {m.channels_b}"),
        (m.generator in GENERATORS, f"generator must be one of {tuple(GENERATORS)}, got {m.generator!r}"),
        (m.ngf > 0 and m.ndf > 0, f"ngf and ndf must be positive, got {m.ngf} and {m.ndf}"),
        (m.n_blocks >= 0, f"n_blocks must be 0 or more, got {m.n_blocks}"),
        (m.n_layers_d >= 1, f"n_layers_d must be 1 or more, got {m.n_layers_d}"),
        (m.upsample in UPSAMPLE_MODES, f"upsample must be one of {UPSAMPLE_MODES}, got {m.upsample!r}"),
        (t.gan_loss in GAN_LOSSES, f"gan_loss must be one of {GAN_LOSSES}, got {t.gan_loss!r}"),
        (t.amp in AMP_MODES, f"amp must be one of {AMP_MODES}, got {t.amp!r}"),
        (t.device in DEVICES or t.device.startswith("cuda:"),
         f"device must be auto, cpu, cuda or cuda:N, got {t.device!r}"),
        (t.crop_size >= 16 and t.crop_size % 4 == 0,
         f"crop_size must be a multiple of 4 and at least 16, got {t.crop_size}"),
        (t.preprocess in PREPROCESS, f"preprocess must be one of {PREPROCESS}, got {t.preprocess!r}"),
        (t.load_size >= t.crop_size,
         f"load_size ({t.load_size}) must be at least crop_size ({t.crop_size})"),
        (t.batch_size >= 1, f"batch_size must be 1 or more, got {t.batch_size}"),
        (t.epochs >= 0 and t.epochs_decay >= 0 and t.epochs + t.epochs_decay >= 1,
         f"epochs + epochs_decay must be at least 1, got {t.epochs} + {t.epochs_decay}"),
        (t.lr > 0, f"lr must be positive, got {t.lr}"),
        (t.lambda_cycle >= 0 and t.lambda_identity >= 0, "lambda_cycle and lambda_identity must be >= 0"),
        (m.channels_a == m.channels_b or t.lambda_identity == 0,
         f"lambda_identity must be 0 when the domains' channels differ ({m.channels_a} and {m.channels_b}): "
         "the identity loss feeds each generator images of its output domain; pass --lambda-identity 0"),
        (t.pool_size >= 0, f"pool_size must be 0 or more, got {t.pool_size}"),
        (0 <= t.ema < 1, f"ema must be 0 (off) or a decay below 1 such as 0.999, got {t.ema}"),
        (set(augmentations(t.diffaug)) <= set(AUGMENTATIONS),
         f"diffaug takes a comma-separated list of {', '.join(AUGMENTATIONS)}, got {t.diffaug!r}"),
        (not (m.skip or m.colour) or m.channels_a == m.channels_b,
         f"skip and colour need both domains to have the same channels, got {m.channels_a} and {m.channels_b}"),
        (not (m.skip and m.colour), "skip and colour are two kinds of skip; choose one"),
        (t.num_workers >= 0, f"num_workers must be 0 or more, got {t.num_workers}"),
        (t.log_every >= 1, f"log_every must be 1 or more, got {t.log_every}"),
        (t.eval_every >= 0, f"eval_every must be 0 (off) or more, got {t.eval_every}"),
        (0 < t.val_fraction <= 0.5, f"val_fraction must be above 0 and at most 0.5, got {t.val_fraction}"),
        (t.select_by in SELECT_BY, f"select_by must be one of {SELECT_BY}, got {t.select_by!r}"),
        (t.fid or t.select_by not in ("fid", "kid"), f"select_by {t.select_by!r} needs --fid"),
        (t.patience >= 0, f"patience must be 0 (off) or more, got {t.patience}"),
        (t.keep_epochs >= -1, f"keep_epochs must be -1 (all), 0 (none) or a number of epochs, got {t.keep_epochs}"),
        (m.family in FAMILIES, f"family must be one of {FAMILIES}, got {m.family!r}"),
        (not m.one_way or m.family != "cyclegan",
         "one_way trains a CUT or FastCUT model A->B only; CycleGAN's cycle loss needs both generators: "
         "add --model cut (or fastcut), or drop --one-way"),
        (not (m.one_way and t.select_by == "cycle_l1"),
         "select_by cycle_l1 needs the way back, which a one-way run does not train; choose swd or swd_ratio"),
        (m.generator != "resnet_aa" or m.upsample == "transpose",
         "the anti-aliased generator (resnet_aa, CUT's) upsamples through its own blur; drop --upsample resize"),
        (m.nce_width >= 1 and t.nce_patches >= 1, f"nce_width and nce_patches must be 1 or more, got {m.nce_width} "
                                                  f"and {t.nce_patches}"),
        (t.lambda_nce >= 0 and t.nce_temperature > 0,
         f"lambda_nce must be >= 0 and nce_temperature above 0, got {t.lambda_nce} and {t.nce_temperature}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if m.family != "cyclegan":
        _check_nce_layers(m, GENERATORS[m.generator])


def _check_nce_layers(m: ModelConfig, generator: type) -> None:
    """A CUT run's PatchNCE layers must lie in its generator's encoder (a ResNet's, which has ``encode``)."""
    if not hasattr(generator, "encoder_layers"):
        raise ConfigError(f"the {m.family} model needs a generator with an encoder (resnet or resnet_aa), "
                          f"got {m.generator!r}")
    layers, length = nce_layer_list(m.nce_layers), generator.encoder_layers(m.n_blocks)
    if layers[-1] >= length:
        raise ConfigError(f"nce_layers {m.nce_layers!r} reaches past the encoder: a {m.generator} generator with "
                          f"{m.n_blocks} blocks has encoder layers 0 to {length - 1}")


# Fields that may differ when resuming: they change how long or where training runs, not what is
# being trained. Anything else differing from the saved config.json is refused. device, amp and
# compile change the arithmetic (CUDA vs CPU kernels, bf16 vs fp32), so a resume that changes one of
# them goes on from the same weights and state but is no longer bit-exact with the straight run; a
# resume with the same ones is. Moving a run between a GPU (bf16) and a CPU (fp32) needs amp here.
RESUMABLE_OVERRIDES = frozenset({"epochs", "epochs_decay", "device", "num_workers", "log_every", "strict",
                                 "amp", "compile", "cache_images", "tensorboard",
                                 "eval_every", "patience", "fid", "inception_weights", "keep_epochs",
                                 "domain_a", "domain_b", "test_a", "test_b"})
