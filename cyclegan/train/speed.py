"""Speed: torch.compile with a clean fallback to eager execution, and when compiling pays on a CPU.

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
# torch.compile on a CPU, paper networks at 128 px, batch 1 (issue 24, an AMD EPYC with AVX-512
# BF16): 76 s to compile (90 s with bf16), then each step 1.32x faster than eager.
CPU_COMPILE_SECONDS = 80.0
CPU_COMPILE_SPEEDUP = 1.32


def compile_pays_back(iterations: int, eager_seconds_per_it: float, compile_seconds: float = CPU_COMPILE_SECONDS,
                      speedup: float = CPU_COMPILE_SPEEDUP) -> bool:
    """Whether compiling saves time over ``iterations`` steps: each compiled step saves
    ``eager_seconds_per_it * (1 - 1 / speedup)``, and together they must outweigh the compile time."""
    return iterations * eager_seconds_per_it * (1 - 1 / speedup) > compile_seconds


def compile_advice(iterations_left: int, eager_seconds_per_it: float, device_type: str, compiled: bool) -> str | None:
    """A tip for a CPU run that trains eagerly although compiling would have paid back within it.

    Only a tip: on a CPU compiling stays off unless asked (``--compile``), because its cost
    (over a minute, a C++ compiler, more memory) is sure and its gain an estimate from one machine.
    """
    if compiled or device_type != "cpu" or not compile_pays_back(iterations_left, eager_seconds_per_it):
        return None
    saved = iterations_left * eager_seconds_per_it * (1 - 1 / CPU_COMPILE_SPEEDUP) - CPU_COMPILE_SECONDS
    return (f"torch.compile would likely pay back here: about {CPU_COMPILE_SECONDS:.0f} s to compile, then steps "
            f"about {CPU_COMPILE_SPEEDUP}x faster, saving about {saved / 60:.0f} min over the {iterations_left} "
            "steps left; stop and resume with --compile to use it (docs/cpu.md)")


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
