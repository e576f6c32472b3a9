"""Bring a generator saved by the official CycleGAN code (or CUT's) into a run folder.

junyanz/pytorch-CycleGAN-and-pix2pix saves each generator as a pickled state_dict
(``latest_net_G_A.pth``; its pretrained ``horse2zebra.pth`` is the same thing for one direction).
Our ResnetGenerator uses the same layer order, so the keys load unchanged once three historical
differences are smoothed over: InstanceNorm running statistics that old PyTorch versions saved
(the official loader drops them too), a ``module.`` prefix left by DataParallel, and the block
layout of generators trained with dropout (a Dropout at index 4 shifts the second conv from
``conv_block.5`` to ``conv_block.6``; dropout does nothing at inference, so only the index changes).

taesungp/contrastive-unpaired-translation saves CUT's and FastCUT's generator (``latest_net_G.pth``,
A to B) the same way, with the same layer names plus the fixed blur filters of its anti-aliased
sampling (``model.7.filt``); such a file becomes a ``resnet_aa`` generator of a ``cut`` run.

The network's width (ngf), block count and input and output channels are read off the file's shapes. The file is
read with ``torch.load(weights_only=True)``: nothing in it is executed.

One file is one direction. The run folder gets that generator only (``G_AB`` for ``--direction
AtoB``, ``G_BA`` for ``BtoA``); a second import into the same folder adds the other direction
(official ``G_A`` maps A to B, ``G_B`` maps B to A). Asking a one-direction run for the other
direction is a clear error rather than a silent reuse of the wrong generator.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .. import runfolder
from ..config import Config, ModelConfig, validate
from ..errors import CheckpointError, CycleGANError
from ..models.generators import build_generator
from .translator import GENERATOR_FOR, OFFICIAL_PRESET, check_direction

log = logging.getLogger(__name__)

_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")
_DEFAULT_NGF, _DEFAULT_BLOCKS = 64, 9  # resnet_9blocks, what a file's shapes are compared to when unreadable
_EXPECTED = ("an official CycleGAN or CUT ResNet generator with instance norm (resnet_9blocks / resnet_6blocks, "
             "CUT's anti-aliased by default)")


def read_official(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict in an official ``.pth`` file, ``module.`` prefixes removed; CheckpointError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; pass the generator file, e.g. latest_net_G_A.pth")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  truncated zip, not a torch file, pickled code: torch raises many types
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path} cannot be read as PyTorch weights ({first_line}); if it was downloaded, "
                              "download it again (it may be incomplete)") from None
    if not isinstance(state, Mapping) or not state or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path} does not hold a state_dict of tensors; expected {_EXPECTED}")
    return {key.removeprefix("module."): value for key, value in state.items()}


def infer_model_config(state: Mapping[str, torch.Tensor], direction: str = "AtoB") -> ModelConfig:
    """ngf, channels and block count as the file's shapes say (the published ResNet-9 where they cannot).

    The first conv's input channels are the source domain's, the last conv's output channels the
    target's (official input_nc / output_nc), placed on A and B as ``direction`` says.
    """
    first = state.get("model.1.weight")
    ngf, channels_in = (first.shape[0], first.shape[1]) if first is not None and first.ndim == 4 \
        else (_DEFAULT_NGF, 3)
    convs = [(int(m.group(1)), v) for k, v in state.items()
             if (m := re.fullmatch(r"model\.(\d+)\.weight", k)) and v.ndim == 4]
    # the last conv's outputs, when the file has a generator's first conv (else: not a generator,
    # and the key check below says so)
    channels_out = max(convs, key=lambda item: item[0])[1].shape[0] if convs and first is not None else channels_in
    blocks = {match.group(1) for key in state if (match := re.match(r"model\.(\d+)\.conv_block\.", key))}
    a, b = (channels_in, channels_out) if direction == "AtoB" else (channels_out, channels_in)
    # CUT's generator keeps its anti-aliasing filters as buffers (``model.7.filt``): that marks a CUT file
    antialiased = any(key.endswith(".filt") for key in state)
    return ModelConfig(channels_a=int(a), channels_b=int(b), ngf=int(ngf), n_blocks=len(blocks) or _DEFAULT_BLOCKS,
                       upsample="transpose", generator="resnet_aa" if antialiased else "resnet",
                       family="cut" if antialiased else "cyclegan")


def _normalise_keys(net: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop instance-norm running statistics; move dropout-layout block convs to our indices."""
    norms = {name for name, module in net.named_modules() if isinstance(module, nn.InstanceNorm2d)}
    dropped = {f"{name}.{stat}" for name in norms for stat in _NORM_STATS} & set(state)
    if dropped:
        log.info("dropped %d instance-norm running statistics (unused by the network)", len(dropped))
    state = {k: v for k, v in state.items() if k not in dropped}
    if any(".conv_block.6." in k for k in state) and not any(".conv_block.5." in k for k in state):
        log.info("generator was trained with dropout; dropout is off at inference, loading its convs")
        state = {k.replace(".conv_block.6.", ".conv_block.5."): v for k, v in state.items()}
    return state


def load_official(path: str | Path, direction: str = "AtoB") -> tuple[ModelConfig, nn.Module]:
    """The network in an official generator file, loaded; CheckpointError listing what does not fit."""
    state = read_official(path)
    model = infer_model_config(state, direction)
    try:
        validate(Config(model=model))
    except CycleGANError as exc:
        raise CheckpointError(f"{path} is not {_EXPECTED}: {exc}") from None
    net = build_generator(model, direction)
    state = _normalise_keys(net, state)
    runfolder.check_state_dict(net, state, path, against=f"{_EXPECTED}, ngf {model.ngf}, {model.n_blocks} blocks")
    net.load_state_dict(state)
    return model, net.eval()


def _run_config(out: Path, model: ModelConfig) -> Config | None:
    """None if ``out`` already holds a run whose networks are ``model``; a new Config if ``out`` is new."""
    if runfolder.has_config(out):
        existing = runfolder.load_config(out)
        if existing.model != model:
            raise CheckpointError(f"{out} holds a run with a different network ({existing.model}) than this file "
                                  f"({model}); import into a new folder")
        return None
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"{out} exists and is not a run folder; choose a new folder for --out")
    return Config(model=model, preset=OFFICIAL_PRESET)


def import_official(pth: str | Path, out: str | Path, direction: str = "AtoB", overwrite: bool = False) -> Path:
    """Write the generator in ``pth`` into run folder ``out`` for ``direction``; returns the weight file.

    ``out`` may be new or an earlier import of the same network (to add the other direction). An
    existing generator of that direction is kept unless ``overwrite``.
    """
    out = Path(out)
    name = GENERATOR_FOR[check_direction(direction)]
    model, net = load_official(pth, direction)
    config = _run_config(out, model)
    target = runfolder.generator_path(out, name)
    if target.exists() and not overwrite:
        raise CheckpointError(f"{target} exists; pass --overwrite to replace it")
    runfolder.save_weights(net, target, 0, source=Path(pth).name)
    if config is not None:
        runfolder.write_config(out, config)
    log.info("imported %s as %s (%s, ngf %d, %d blocks)", pth, target, direction, model.ngf, model.n_blocks)
    return target
