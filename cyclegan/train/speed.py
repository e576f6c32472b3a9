"""Speed on a GPU: torch.compile with a clean fallback to eager execution.

(Fused Adam lives with the optimizers in step.py; the on-device image cache in data/dataset.py.)
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import nn

from ..devices import Autocast

log = logging.getLogger(__name__)

COMPILE_BACKEND = "inductor"  # torch.compile's default; tests swap in "eager" to stay fast


def compile_or_eager(net: nn.Module, example: torch.Tensor, autocast: Autocast,
                     backend: str | Callable | None = None) -> nn.Module:
    """``torch.compile(net)`` when it compiles and runs forward and backward on ``example``; else
    ``net`` unchanged, with a warning saying why.

    Compilation is lazy, so the trial step is what surfaces a missing compiler or an unsupported op;
    it runs before training, so a failure never leaves an optimizer half-stepped. The trial's
    gradients are discarded.
    """
    backend = backend or COMPILE_BACKEND
    try:
        compiled = torch.compile(net, backend=backend)
        with autocast():
            out = compiled(example)
        out.float().mean().backward()
    except Exception as exc:  # noqa: BLE001 - compiler failures come in many types; all mean "run eagerly"
        root: BaseException = exc
        while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None:
            root = inner  # the compiler's own error, not dynamo's wrapper around it
        first_line = (str(root).strip().splitlines() or [""])[0]
        log.warning("torch.compile (%s) failed for %s, training it eagerly: %s: %s",
                    getattr(backend, "__name__", backend), type(net).__name__, type(root).__name__, first_line[:200])
        torch._dynamo.reset()
        compiled = net
    finally:
        net.zero_grad(set_to_none=True)
    return compiled
