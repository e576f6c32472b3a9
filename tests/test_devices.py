"""Device and precision: native bf16 detection on the CPU, the bf16 choice and what it logs."""

from __future__ import annotations

import logging

import pytest
import torch

from cyclegan import devices
from cyclegan.devices import NATIVE_BF16_ENV, choose_bf16, chosen_autocast, cpu_has_native_bf16, native_bf16_in_cpuinfo
from cyclegan.errors import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
X86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 {extra}\nbugs\t\t: sysret_ss_attrs\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm {extra} dcpodp\nCPU implementer\t: 0x41\n"


@pytest.mark.parametrize("text,machine,expected", [
    (X86.format(extra="avx512f avx512_bf16"), "x86_64", True),
    (X86.format(extra="amx_bf16 amx_tile"), "x86_64", True),
    (X86.format(extra="avx512f avx512bw avx512vl"), "x86_64", False),  # bf16 only emulated in AVX-512
    (X86.format(extra=""), "x86_64", False),
    (X86.format(extra="bf16"), "x86_64", False),  # ARM's name means nothing on x86
    (ARM.format(extra="bf16 i8mm"), "aarch64", True),
    (ARM.format(extra="i8mm sve"), "aarch64", False),
    (ARM.format(extra="svebf16"), "aarch64", False),  # whole words only
])
def test_native_bf16_is_read_from_the_cpus_flags(text, machine, expected):
    assert native_bf16_in_cpuinfo(text, machine) is expected


def test_the_environment_overrides_the_detection(monkeypatch):
    monkeypatch.setenv(NATIVE_BF16_ENV, "1")
    assert cpu_has_native_bf16() is True
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    assert cpu_has_native_bf16() is False
    monkeypatch.setenv(NATIVE_BF16_ENV, "yes")
    with pytest.raises(ConfigError, match=NATIVE_BF16_ENV):
        cpu_has_native_bf16()


def test_an_x86_cpu_without_the_flags_is_never_taken_for_native(monkeypatch):
    """Even where torch's own check says yes (it does for AVX-512 alone), the flags must name bf16."""
    monkeypatch.delenv(NATIVE_BF16_ENV, raising=False)
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(devices.Path, "read_text", lambda self: X86.format(extra="avx512f avx512bw"))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    devices._detect_native_bf16.cache_clear()
    try:
        assert cpu_has_native_bf16() is False
        devices._detect_native_bf16.cache_clear()
        monkeypatch.setattr(devices.Path, "read_text", lambda self: X86.format(extra="avx512f avx512_bf16"))
        assert cpu_has_native_bf16() is True
    finally:
        devices._detect_native_bf16.cache_clear()


@pytest.mark.parametrize("amp,device,native,expected,says", [
    ("off", CPU, False, False, "no native bf16; --amp forces it"),
    ("auto", CPU, False, False, "no native bf16; --amp forces it"),
    ("on", CPU, False, True, "forced by --amp, but this CPU has no native bf16"),
    ("off", CPU, True, False, "runs bf16 natively; --amp turns it on"),
    ("auto", CPU, True, False, "not measured yet"),  # the CPU default waits for the quality evidence
    ("on", CPU, True, True, "runs bf16 natively"),
    ("off", CUDA, False, False, "--amp"),
    ("auto", CUDA, False, True, "CUDA"),
    ("on", CUDA, False, True, "CUDA"),
])
def test_bf16_is_chosen_by_what_was_asked_and_what_the_hardware_runs(amp, device, native, expected, says):
    precision = choose_bf16(amp, device, native)
    assert precision.bf16 is expected
    assert says in precision.describe()
    assert precision.describe().startswith(f"bf16 autocast: {'on' if expected else 'off'} (")


def test_an_unknown_amp_mode_is_refused():
    with pytest.raises(ConfigError, match="amp must be one of"):
        choose_bf16("yes", CPU, False)


def test_forced_bf16_on_a_cpu_without_it_computes_in_bf16_and_warns(monkeypatch, caplog):
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    conv = torch.nn.Conv2d(3, 4, 3)
    with caplog.at_level(logging.INFO, logger="cyclegan.devices"):
        forced, off = chosen_autocast("on", CPU), chosen_autocast("off", CPU)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "slower than fp32" in warnings[0].getMessage()
    assert any(r.levelno == logging.INFO and "bf16 autocast: off" in r.getMessage() for r in caplog.records)
    x = torch.rand(1, 3, 8, 8)
    with forced():
        assert conv(x).dtype == torch.bfloat16
    with off():
        assert conv(x).dtype == torch.float32
