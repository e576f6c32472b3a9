"""Where tensors live and at what precision: the one leaf that ``train/`` and ``translate/`` share.

A device is chosen once per process (``select_device``); bf16 autocast and channels_last are
offered only where they pay (CUDA), so results on the CPU never depend on them.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch

from .errors import ConfigError

Autocast = Callable[[], AbstractContextManager]


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def autocast_for(device: torch.device, bf16: bool) -> Autocast:
    """A factory of autocast contexts: bf16 on ``device`` when ``bf16``, else a no-op.

    A factory, not one context, because a context manager can be entered only once and the
    training step, sampling and evaluation each enter their own.
    """
    if not bf16:
        return nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def channels_last_wanted(asked: bool, device: torch.device) -> bool:
    """channels_last only on CUDA, where its convolution kernels are faster; the CPU ignores the flag."""
    return asked and device.type == "cuda"
