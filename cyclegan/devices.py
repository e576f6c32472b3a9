"""Where tensors live and at what precision: the one leaf that ``train/`` and ``translate/`` share.

A device is chosen once per process (``select_device``). bf16 autocast is chosen once too
(``choose_bf16``), from what was asked and what the hardware runs natively: CUDA, and a CPU with
bf16 instructions (x86 AVX512-BF16 or AMX, ARM's BF16 extension, Apple M2 and later). A CPU without
them only emulates bf16, which is slower than fp32, so it gets bf16 only when the user forces it.
channels_last is offered only on CUDA, where it pays.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import subprocess
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .config import AMP_MODES
from .errors import ConfigError

log = logging.getLogger(__name__)

Autocast = Callable[[], AbstractContextManager]

# Forces what ``cpu_has_native_bf16`` answers ("1" or "0"), for tests and for a user who knows
# better than the detection; unset: detect.
NATIVE_BF16_ENV = "CYCLEGAN_CPU_BF16"
# How much slower than fp32 a training step of the paper networks (128 px, batch 1) ran under
# forced bf16 autocast on an AMD EPYC with AVX2 only (BENCHMARKS.md, "bf16 and torch.compile on
# the CPU"); translation at 256 px slowed 20x to 80x there, more the wider the generator.
EMULATED_BF16_SLOWDOWN = 19.0
_X86_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names of the x86 bf16 instructions


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def native_bf16_in_cpuinfo(cpuinfo: str, machine: str) -> bool:
    """Whether a Linux /proc/cpuinfo text lists bf16 instructions for ``machine`` (``platform.machine()``).

    x86: the ``flags`` line names avx512_bf16 or amx_bf16. ARM: the ``Features`` line names bf16.
    Flags are whole words: avx512f alone (bf16 emulated in AVX-512) does not count.
    """
    wanted = _X86_FLAGS if machine.lower() in ("x86_64", "amd64", "i686", "x86") else ("bf16",)
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features") and any(flag in value.split() for flag in wanted):
            return True
    return False


@functools.cache
def _detect_native_bf16() -> bool:
    """The hardware's answer, asked once per process."""
    machine = platform.machine()
    # torch's own check (oneDNN's bf16 kernels can run here): on ARM it asks for the BF16 extension
    # (Linux, and Apple M2 and later), so its yes is enough. On x86 it also says yes where bf16 is
    # only emulated in AVX-512 (no faster than fp32), so there the CPU's flags must name the bf16
    # instructions too; they are readable on Linux only, and elsewhere an x86 CPU is taken to lack
    # them (fp32: never slower than it was).
    try:
        torch_says = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        torch_says = False
    if machine.lower() in ("arm64", "aarch64"):
        if torch_says:
            return True
        if platform.system() == "Darwin":
            return _sysctl("hw.optional.arm.FEAT_BF16") == "1"
    elif not torch_says:
        return False
    try:
        return native_bf16_in_cpuinfo(Path("/proc/cpuinfo").read_text(), machine)
    except OSError:
        return False


def _sysctl(name: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 in hardware; ``CYCLEGAN_CPU_BF16=1`` or ``0`` overrides the detection."""
    forced = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ConfigError(f"{NATIVE_BF16_ENV}={forced!r}: set it to 1 (this CPU has native bf16), 0 (it has not) "
                          "or leave it unset to detect")
    return _detect_native_bf16()


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; elsewhere what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


@dataclass(frozen=True)
class Precision:
    """What a run computes in, and the sentence that says why (logged at the start of training)."""

    bf16: bool
    reason: str

    def describe(self) -> str:
        return f"bf16 autocast: {'on' if self.bf16 else 'off'} ({self.reason})"


def choose_bf16(amp: str, device: torch.device, native_cpu: bool) -> Precision:
    """bf16 autocast or not, from ``amp`` (off, auto, on), the device and whether its CPU has native bf16.

    ``auto`` is bf16 where it is measured to help without hurting quality: on CUDA. On a CPU it stays
    fp32 even with native bf16 for now: there it measured about 1.8x faster (issue 24), but whether
    quality holds against fp32 over the photo benchmark's styles and seeds is not measured yet.
    ``on`` is bf16 everywhere, on a CPU without native bf16 too, where it is slower than fp32.
    """
    if amp not in AMP_MODES:
        raise ConfigError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if device.type == "cuda":
        if amp == "off":
            return Precision(False, "--amp or --amp auto turns it on: faster on CUDA")
        return Precision(True, "CUDA")
    if device.type != "cpu":
        return Precision(amp == "on", f"{device.type}: only when asked with --amp")
    slower = f"about {EMULATED_BF16_SLOWDOWN:.0f}x slower than fp32 on such a CPU"
    if amp == "on":
        if native_cpu:
            return Precision(True, "this CPU runs bf16 natively; --no-amp for fp32")
        return Precision(True, f"forced by --amp, but this CPU has no native bf16: {slower}; --no-amp for fp32")
    if native_cpu:
        return Precision(False, "this CPU runs bf16 natively; --amp turns it on: faster, but its quality "
                                "against fp32 is not measured yet")
    return Precision(False, f"this CPU has no native bf16; --amp forces it, {slower}")


def emulated_bf16(device: torch.device, bf16: bool) -> bool:
    """Whether bf16 on ``device`` would be emulated (a CPU without native bf16): slower than fp32."""
    return bf16 and device.type == "cpu" and not cpu_has_native_bf16()


def chosen_autocast(amp: str, device: torch.device) -> Autocast:
    """``choose_bf16`` for this machine, logged (a warning where bf16 will be slower than fp32),
    as the autocast factory that training, sampling, evaluation and translation enter."""
    precision = choose_bf16(amp, device, device.type == "cpu" and cpu_has_native_bf16())
    (log.warning if emulated_bf16(device, precision.bf16) else log.info)("%s", precision.describe())
    return autocast_for(device, precision.bf16)


def autocast_for(device: torch.device, bf16: bool) -> Autocast:
    """A factory of autocast contexts: bf16 on ``device`` when ``bf16``, else a no-op.

    A factory, not one context, because a context manager can be entered only once and the
    training step, sampling and evaluation each enter their own.
    """
    if not bf16:
        return nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def channels_last_wanted(asked: bool, device: torch.device) -> bool:
    """channels_last only on CUDA, where its convolution kernels are faster; the CPU ignores the flag
    (measured 1.02x there, within noise: issue 24)."""
    return asked and device.type == "cuda"
