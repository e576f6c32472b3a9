"""The training loop: run folder layout, exact resume, interruption, and refusing unsafe restarts."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import threading

import pytest
import torch

from cyclegan import runfolder as ckpt
from cyclegan.config import Config
from cyclegan.devices import NATIVE_BF16_ENV
from cyclegan.errors import CheckpointError, ConfigError, CycleGANError
from cyclegan.train.loop import TrainingInterrupted, lr_factor, merge_resume_config, train

from conftest import small_config


def _weights(run) -> dict[str, torch.Tensor]:
    out = {}
    for name in ckpt.GENERATORS + ckpt.DISCRIMINATORS:
        for key, value in ckpt.read_weights(run / f"{name}.safetensors").items():
            out[f"{name}.{key}"] = value
    return out


def _max_difference(a, b) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_run_folder_has_the_documented_layout(tmp_path, config):
    run = train(config, tmp_path / "run")
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "G_AB.safetensors", "G_BA.safetensors", "D_A.safetensors", "D_B.safetensors",
            "train_state.pt", "metrics.csv", "samples"} <= names
    assert {p.name for p in (run / "samples").iterdir()} == {"epoch_001.png", "epoch_002.png"}
    assert ckpt.load_config(run) == config
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert rows and {"epoch", "step", "lr", "loss_G", "loss_cycle", "loss_D_A", "loss_D_B"} <= rows[0].keys()
    assert not [p for p in run.rglob("*.tmp")]


def test_two_epochs_straight_equal_one_plus_resume_plus_one(tmp_path, shapes_dir):
    straight = train(small_config(shapes_dir, epochs=2, epochs_decay=0), tmp_path / "straight")
    split = train(small_config(shapes_dir, epochs=1, epochs_decay=0), tmp_path / "split")
    saved = merge_resume_config(ckpt.load_config(split), {"epochs": 2})
    train(saved, split, resume=True)
    assert _max_difference(_weights(straight), _weights(split)) <= 1e-6
    assert json.loads((split / "config.json").read_text())["train"]["epochs"] == 2


def test_a_kill_between_the_weight_files_and_train_state_still_resumes_exactly(tmp_path, shapes_dir):
    straight = train(small_config(shapes_dir, epochs=2, epochs_decay=0), tmp_path / "straight")
    split = train(small_config(shapes_dir, epochs=1, epochs_decay=0), tmp_path / "split")
    # what a kill part-way through the second epoch's save leaves: two networks already replaced by
    # their step-12 versions, train_state.pt still at step 6
    for name in ("G_AB", "D_B"):
        (split / f"{name}.safetensors").write_bytes((straight / f"{name}.safetensors").read_bytes())
    assert ckpt.load_state(split)["step"] == 6
    train(merge_resume_config(ckpt.load_config(split), {"epochs": 2}), split, resume=True)
    assert _max_difference(_weights(straight), _weights(split)) <= 1e-6


def test_a_first_attempt_at_a_bad_folder_leaves_no_run_behind(tmp_path, shapes_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CycleGANError, match="empty"):
        train(small_config(shapes_dir, domain_a=str(empty)), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    train(small_config(shapes_dir), tmp_path / "run")  # the retry with the right folder just works
    assert (tmp_path / "run" / ckpt.STATE_FILE).exists()


def test_an_interrupted_epoch_resumes_exactly(tmp_path, shapes_dir):
    config = small_config(shapes_dir, epochs=1, epochs_decay=1)
    straight = train(config, tmp_path / "straight")
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(small_config(shapes_dir, epochs=1, epochs_decay=1), tmp_path / "cut", should_stop=lambda step: step == 9)
    state = ckpt.load_state(tmp_path / "cut")
    assert (state["epoch"], state["batch"], state["step"]) == (1, 3, 9)  # 6 steps per epoch at batch 2
    train(ckpt.load_config(tmp_path / "cut"), tmp_path / "cut", resume=True)
    assert _max_difference(_weights(straight), _weights(tmp_path / "cut")) <= 1e-6
    steps = [int(r["step"]) for r in csv.DictReader((tmp_path / "cut" / "metrics.csv").open())]
    assert steps == sorted(set(steps))  # no row logged twice across the resume


def test_a_forced_bf16_run_resumes_bit_for_bit(tmp_path, shapes_dir, monkeypatch, caplog):
    """bf16 on a CPU without native bf16 (forced by --amp): the resumed run is the straight run, bit for bit."""
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    with caplog.at_level(logging.WARNING, logger="cyclegan.devices"):
        straight = train(small_config(shapes_dir, epochs=1, epochs_decay=1, amp="on"), tmp_path / "straight")
    assert "forced by --amp, but this CPU has no native bf16" in caplog.text
    with pytest.raises(TrainingInterrupted):
        train(small_config(shapes_dir, epochs=1, epochs_decay=1, amp="on"), tmp_path / "cut",
              should_stop=lambda step: step == 9)
    train(ckpt.load_config(tmp_path / "cut"), tmp_path / "cut", resume=True)
    assert _max_difference(_weights(straight), _weights(tmp_path / "cut")) == 0
    fp32 = train(small_config(shapes_dir, epochs=1, epochs_decay=1), tmp_path / "fp32")
    assert _max_difference(_weights(straight), _weights(fp32)) > 1e-4  # bf16 really was on


def test_ctrl_c_saves_a_resumable_checkpoint(tmp_path, shapes_dir):
    config = small_config(shapes_dir, epochs=50, epochs_decay=0)
    # What was there before (the default handler, or SIG_IGN when the suite runs as a background job)
    before = signal.getsignal(signal.SIGINT)

    def interrupt_once(step: int) -> bool:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends on Ctrl-C
        return False

    with pytest.raises(TrainingInterrupted):
        train(config, tmp_path / "run", should_stop=interrupt_once)
    assert ckpt.load_state(tmp_path / "run")["step"] in (3, 4)
    assert threading.current_thread() is threading.main_thread()
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


def test_an_existing_run_folder_is_never_overwritten(tmp_path, config):
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="already exists; resume it"):
        train(config, run)
    assert (run / "precious.txt").read_text() == "keep me"


def test_resume_refuses_a_different_model_but_allows_more_epochs(config):
    with pytest.raises(ConfigError, match=r"ngf \(saved 8, given 32\)"):
        merge_resume_config(config, {"ngf": 32})
    with pytest.raises(ConfigError, match="crop_size"):
        merge_resume_config(config, {"crop_size": 64})
    assert merge_resume_config(config, {"epochs": 5, "ngf": 8}).train.epochs == 5
    assert merge_resume_config(config, {"amp": "on"}).train.amp == "on"  # e.g. a GPU run carried on on a CPU


def test_resume_of_a_folder_without_state_is_a_clear_error(tmp_path, config):
    ckpt.write_config(tmp_path, config)
    with pytest.raises(CheckpointError, match="cannot be resumed"):
        train(config, tmp_path, resume=True)


@pytest.mark.parametrize("epoch,expected", [(0, 1.0), (99, 1.0), (100, 1 - 1 / 101), (199, 1 / 101)])
def test_learning_rate_is_constant_then_decays_linearly(epoch, expected):
    assert lr_factor(epoch, 100, 100) == pytest.approx(expected)


def test_the_time_estimate_is_logged_once_recorded_and_time_spent_carries_over_a_resume(tmp_path, shapes_dir,
                                                                                        monkeypatch, caplog, capsys):
    from cyclegan.cli import main
    from cyclegan.evaluate.report import run_report
    from cyclegan.train import clock

    monkeypatch.setattr(clock, "WARMUP_STEPS", 1)  # an estimate within the 6 steps of an epoch
    monkeypatch.setattr(clock, "FIRST_ESTIMATE_STEPS", 2)
    run = tmp_path / "run"
    with caplog.at_level("INFO"):
        train(small_config(shapes_dir, epochs=1, epochs_decay=0), run)
    assert len([r for r in caplog.records if r.getMessage().startswith("Speed:")]) == 1
    rows = ckpt.read_metrics(run)
    assert not rows[0].get("eta_seconds") and float(rows[-1]["eta_seconds"]) >= 0  # estimated from step 3 on
    spent = float(rows[-1]["seconds"])
    train(merge_resume_config(ckpt.load_config(run), {"epochs": 2}), run, resume=True)
    seconds = [float(r["seconds"]) for r in ckpt.read_metrics(run) if r.get("seconds")]
    assert seconds == sorted(seconds) and seconds[-1] > spent  # the clock went on, not back to 0
    report = run_report(run)
    assert (report["seconds_spent"], report["seconds_left"]) == (seconds[-1], 0.0)
    assert main(["report", "--run", str(run)]) == 0
    assert "spent; finished" in capsys.readouterr().out
