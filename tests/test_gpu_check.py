"""benchmarks/gpu_check.py, the one-command CUDA check: its CPU dry run passes every step (so the
script cannot rot while no GPU is at hand), and a failing step fails the run, by name, without
stopping the steps after it."""

from __future__ import annotations

import importlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
STEP_NAMES = ("1 pytest -m cuda", "2 training speed", "3 quality parity", "4 translation",
              "5 resume across devices", "6 translator, export, CUT", "7 profile")


@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports its neighbours train_speed and translate_speed
    return importlib.import_module("gpu_check")


def test_the_cpu_dry_run_passes_every_step(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    table = done.stdout
    assert "device cpu; torch " in table and ", CUDA " in table
    for name in STEP_NAMES:
        assert name in table
    assert "skipped (no CUDA)" in table and "CUT: 3 training steps on cpu, loss_G " in table
    assert "cross-device legs (cpu -> cuda, cuda -> cpu) need CUDA" in table
    assert table.rstrip().endswith("all 7 steps passed or skipped")
    rows = json.loads((out / "results.json").read_text())
    assert [row["status"] for row in rows] == ["skipped"] + ["ok"] * 6
    assert (out / "table.txt").read_text() == table
    assert (out / "profile_trace.json.gz").stat().st_size > 0


def test_a_failing_step_fails_the_run_by_name_and_the_next_steps_still_run(gpu_check, monkeypatch, tmp_path,
                                                                          capsys):
    def broken(ctx):
        raise RuntimeError("expected all tensors to be on the same device\nsecond line")

    monkeypatch.setitem(gpu_check.STEPS, 2, ("training speed", broken))
    code = gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path), "--only", "2,1"])
    table = capsys.readouterr().out
    assert code == 1
    assert "2 training speed" in table and "RuntimeError: expected all tensors to be on the same device" in table
    assert "second line" not in table
    assert "1 pytest -m cuda" in table  # ran after the failure
    assert table.rstrip().splitlines()[-1] == "FAILED: 2 training speed"


def test_a_compile_fallback_fails_the_step(gpu_check, monkeypatch, tmp_path):
    def falls_back(ctx):
        logging.getLogger("cyclegan.train.speed").warning("torch.compile (inductor) failed for Generator")
        return gpu_check.Row("ok", ["1.0 s/it"])

    monkeypatch.setitem(gpu_check.STEPS, 7, ("profile", falls_back))
    ctx = gpu_check.Context(gpu_check.torch.device("cpu"), gpu_check.QUICK, tmp_path, tmp_path)
    row = gpu_check.run_step(7, ctx)
    assert row.step == "7 profile" and row.status == "FAIL"
    assert row.lines[-1] == "torch.compile fell back to eager: torch.compile (inductor) failed for Generator"


@pytest.mark.parametrize("output, summary", [
    ("..s\n== short test summary info ==\nSKIPPED [1] x\n3 passed, 1 skipped in 4.2s\n", "3 passed, 1 skipped in 4.2s"),
    ("F\nFAILED tests/a.py::t - boom\n======= 1 failed, 2 passed in 9.1s =======\n", "1 failed, 2 passed in 9.1s"),
    ("\n46 deselected in 0.5s\n", "46 deselected in 0.5s"),
    ("ImportError while loading conftest\n", "no pytest summary line"),
])
def test_pytest_summary_is_the_closing_line(gpu_check, output, summary):
    assert gpu_check.pytest_summary(output) == summary
