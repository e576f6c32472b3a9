"""Training health: collapse, dominance, over-training and divergence warnings, best/, patience, report."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
from torch import nn

from cyclegan import runfolder as ckpt
from cyclegan.evaluate import health
from cyclegan.train import loop as trainer
from cyclegan.train import step
from cyclegan.cli import main
from cyclegan.evaluate.report import run_report
from cyclegan.evaluate.heldout import HeldOut, evaluate_heldout
from cyclegan.images import to_float
from cyclegan.evaluate.health import TrainingMonitor
from cyclegan.runfolder import RunWarnings
from cyclegan.train.losses import discriminator_adversarial
from cyclegan.train.loop import TrainingDiverged, merge_resume_config, train

from conftest import small_config
from test_evaluate_metrics import _smooth_images, _tiny_nets


def _heldout() -> HeldOut:
    return HeldOut(_smooth_images(8, 32, seed=1), _smooth_images(8, 32, seed=2))


def _kinds(run_or_warnings) -> list[str]:
    items = run_or_warnings.items if isinstance(run_or_warnings, RunWarnings) else ckpt.read_warnings(run_or_warnings)
    return [w["kind"] for w in items]


class _Constant(nn.Module):
    """A collapsed generator: the same image whatever the input."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.image = nn.Parameter(image, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.image.expand(len(x), -1, -1, -1)


def test_a_generator_that_outputs_a_constant_triggers_the_collapse_warning(tmp_path):
    held = _heldout()
    G_AB, G_BA, _, _ = _tiny_nets()
    warnings = RunWarnings(tmp_path)
    monitor = TrainingMonitor(warnings)
    collapsed = _Constant(to_float(held.images["B"][:1])[0])
    results = evaluate_heldout(collapsed, G_BA, held)
    assert results["AtoB"]["diversity"] == 0.0
    monitor.observe(1, 10, results, 1.0)
    assert _kinds(warnings) == ["mode_collapse"]
    assert "AtoB" in warnings.items[0]["message"] and "Try:" in warnings.items[0]["message"]
    monitor.observe(2, 20, results, 1.0)  # still collapsed: not repeated
    assert _kinds(tmp_path) == ["mode_collapse"]
    healthy = evaluate_heldout(G_AB, G_BA, held)
    assert healthy["AtoB"]["diversity"] > health.COLLAPSE_DIVERSITY  # an untrained generator has not collapsed
    monitor.observe(3, 30, healthy, 1.0)
    assert _kinds(tmp_path) == ["mode_collapse"]


def _overpowered_discriminator(held: HeldOut, G: nn.Module, D: nn.Module, steps: int = 60) -> None:
    """Give D a large advantage: train it alone against a frozen, untrained generator."""
    optimizer = torch.optim.Adam(D.parameters(), 2e-3, betas=(0.5, 0.999))
    real = to_float(held.images["B"])
    with torch.no_grad():
        fake = G(to_float(held.images["A"]))
    for _ in range(steps):
        optimizer.zero_grad()
        discriminator_adversarial("lsgan", D(real), D(fake)).backward()
        optimizer.step()


def test_a_discriminator_given_a_large_advantage_triggers_the_dominance_warning(tmp_path):
    held = _heldout()
    G_AB, G_BA, D_A, D_B = _tiny_nets()
    warnings = RunWarnings(tmp_path)
    monitor = TrainingMonitor(warnings)
    balanced = evaluate_heldout(G_AB, G_BA, held, D_A=D_A, D_B=D_B)
    monitor.observe(1, 1, balanced, 1.0)
    assert "discriminator_dominance" not in _kinds(warnings)
    _overpowered_discriminator(held, G_AB, D_B)
    results = evaluate_heldout(G_AB, G_BA, held, D_A=D_A, D_B=D_B)
    assert results["AtoB"]["d_auc"] >= health.DOMINANCE_AUC
    for evaluation in range(health.DOMINANCE_EVALS - 1):
        monitor.observe(2 + evaluation, 2 + evaluation, results, 1.0)
        assert "discriminator_dominance" not in _kinds(warnings)  # one confident evaluation is not a trend
    monitor.observe(9, 9, results, 1.0)
    assert _kinds(warnings) == ["discriminator_dominance"]
    assert "D_B" in warnings.items[0]["message"]


def test_score_gap_reads_each_loss_on_its_own_scale():
    assert health.score_gap(1.0, 0.0, "lsgan") == 1.0
    assert health.score_gap(1.0, -1.0, "hinge") == 1.0
    assert health.score_gap(10.0, -10.0, "bce") == pytest.approx(1.0, abs=1e-4)
    assert health.score_gap(0.0, 0.0, "bce") == 0.0


def test_overtraining_warning_and_patience(tmp_path):
    warnings = RunWarnings(tmp_path)
    monitor = TrainingMonitor(warnings, patience=health.OVERTRAIN_EVALS + 1)
    verdicts = [monitor.observe(e, e, {}, v) for e, v in enumerate([5.0, 3.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0], 1)]
    assert [v.improved for v in verdicts[:3]] == [True, True, False]
    assert monitor.best == {"epoch": 2, "step": 2, "value": 3.0}
    assert _kinds(warnings) == ["overtraining"]
    assert warnings.items[0]["epoch"] == 2 + health.OVERTRAIN_EVALS
    assert [v.stop for v in verdicts] == [False] * 7 + [True]


def test_monitor_state_survives_a_round_trip():
    monitor = TrainingMonitor(RunWarnings.__new__(RunWarnings), patience=3)
    monitor.best, monitor.since_best, monitor.dominant, monitor.raised = {"epoch": 2, "step": 8, "value": 1.5}, 2, {"A": 1, "B": 0}, {"overtraining"}
    again = TrainingMonitor(RunWarnings.__new__(RunWarnings), patience=3)
    again.load_state_dict(monitor.state_dict())
    assert again.state_dict() == monitor.state_dict()


# --- through the trainer -----------------------------------------------------------------------


def _nan_on_calls(monkeypatch, calls: set[int] | None):
    """Make cycle_loss return NaN on the given calls (None: on every call)."""
    real = step.cycle_loss
    count = {"n": 0}

    def cycle_loss(*args, **kwargs):
        count["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls is None or count["n"] in calls else loss

    monkeypatch.setattr(step, "cycle_loss", cycle_loss)


def test_a_nan_loss_is_skipped_and_reported(tmp_path, shapes_dir, monkeypatch):
    _nan_on_calls(monkeypatch, {5})  # two cycle losses per step: the third step's first one
    run = train(small_config(shapes_dir, epochs=1, epochs_decay=1), tmp_path / "run")
    # then at most the end of training's own: two test-sized epochs rarely beat doing nothing
    assert _kinds(run)[0] == "divergence" and set(_kinds(run)[1:]) <= {"worse_than_nothing"}
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("skipped_steps")]
    assert [r["skipped_steps"] for r in rows] == ["1", "0"]
    for name in ckpt.GENERATORS + ckpt.DISCRIMINATORS:
        assert all(torch.isfinite(v).all() for v in ckpt.read_weights(run / f"{name}.safetensors").values())
    steps = [int(r["step"]) for r in csv.DictReader((run / "metrics.csv").open())]
    assert steps == sorted(set(steps))


def test_skipped_steps_are_reported_without_evaluation_too(tmp_path, shapes_dir, monkeypatch):
    _nan_on_calls(monkeypatch, {5})
    run = train(small_config(shapes_dir, epochs=1, epochs_decay=1, eval_every=0), tmp_path / "run")
    assert run_report(run)["skipped_steps"] == 1 and _kinds(run) == ["divergence"]


def test_repeated_nan_losses_stop_training_with_a_resumable_checkpoint(tmp_path, shapes_dir, monkeypatch):
    _nan_on_calls(monkeypatch, None)
    with pytest.raises(TrainingDiverged, match="in a row.*--resume"):  # 12 steps an epoch: the streak stops it
        train(small_config(shapes_dir, epochs=2, epochs_decay=0, batch_size=1), tmp_path / "run")
    state = ckpt.load_state(tmp_path / "run")
    assert state["step"] == health.NONFINITE_LIMIT
    assert _kinds(tmp_path / "run") == ["divergence"]  # the stop's
    monkeypatch.undo()
    train(ckpt.load_config(tmp_path / "run"), tmp_path / "run", resume=True)  # and it resumes


def _scripted_evaluation(monkeypatch, values: list[float], snapshots: list[dict]):
    """Replace held-out evaluation by a fixed sequence of SWDs, keeping G_AB's weights at each call."""

    def fake(G_AB, G_BA, heldout, **kwargs):
        snapshots.append({k: v.clone() for k, v in G_AB.state_dict().items()})
        value = values[len(snapshots) - 1]
        per_direction = {"swd": value, "swd_identity": 9.0, "cycle_l1": 0.1, "identity_mapping_l1": 0.1,
                         "diversity": 1.0, "heldout_images": 4}
        return {"AtoB": dict(per_direction), "BtoA": dict(per_direction)}

    monkeypatch.setattr(trainer, "evaluate_heldout", fake)


def test_best_holds_the_best_epochs_weights_after_the_metric_improves_then_worsens(tmp_path, shapes_dir, monkeypatch):
    snapshots: list[dict] = []
    _scripted_evaluation(monkeypatch, [3.0, 2.0, 5.0], snapshots)
    run = train(small_config(shapes_dir, epochs=2, epochs_decay=1), tmp_path / "run")
    meta = ckpt.read_best(run)
    assert (meta["epoch"], meta["metric"], meta["value"]) == (2, "val_swd", 2.0)
    best = ckpt.read_weights(ckpt.generator_path(run, "G_AB", best=True))
    latest = ckpt.read_weights(ckpt.generator_path(run, "G_AB"))
    assert all(torch.equal(best[k], snapshots[1][k]) for k in best)
    assert any(not torch.equal(best[k], latest[k]) for k in best)
    assert ckpt.weights_step(ckpt.generator_path(run, "G_BA", best=True)) == meta["step"]
    assert {p.name for p in (run / "plots").iterdir()} >= {"losses.png", "lr.png", "heldout.png"}


def test_patience_stops_training_and_resume_keeps_counting(tmp_path, shapes_dir, monkeypatch):
    snapshots: list[dict] = []
    _scripted_evaluation(monkeypatch, [3.0, 2.0, 4.0, 4.0, 1.0, 1.0], snapshots)
    run = train(small_config(shapes_dir, epochs=3, epochs_decay=0, patience=2), tmp_path / "run")
    assert len(snapshots) == 3  # epoch 3 was the first without improvement; stopping needs two
    config = merge_resume_config(ckpt.load_config(run), {"epochs": 6})
    train(config, run, resume=True)
    assert len(snapshots) == 4  # epoch 4: the second evaluation without improvement, counted across the resume
    assert json.loads((run / "best" / "meta.json").read_text())["epoch"] == 2
    assert ckpt.load_state(run)["epoch"] == 4


def test_evaluation_off_writes_no_best(tmp_path, shapes_dir):
    run = train(small_config(shapes_dir, epochs=1, epochs_decay=0, eval_every=0), tmp_path / "run")
    assert not (run / "best").exists()
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert rows and not any(k.startswith("val_") for k in rows[0])


def test_report_shows_the_best_epoch_and_warnings(tmp_path, shapes_dir, capsys):
    run = train(small_config(shapes_dir, epochs=1, epochs_decay=1), tmp_path / "run")
    RunWarnings(run).add("overtraining", 2, 12, "Possible over-training: test message. Try: translate --best.")
    shutil.rmtree(run / "plots")  # the report redraws them
    assert main(["report", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    best = ckpt.read_best(run)
    assert f"best epoch     {best['epoch']}: val_swd" in out
    assert "epochs         2 of 2" in out and "Possible over-training: test message" in out
    assert (run / "plots" / "heldout.png").exists() and (run / "plots" / "discriminator.png").exists()
    assert main(["report", "--run", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # ours last; before it, at most the end of training's own (two test-sized epochs rarely beat doing nothing)
    kinds = [w["kind"] for w in report["warnings"]]
    assert report["evaluations"] == 2 and kinds[-1] == "overtraining" and set(kinds[:-1]) <= {"worse_than_nothing"}
    assert main(["report", "--run", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_translate_best_says_which_epoch(tmp_path, shapes_dir, caplog):
    run = train(small_config(shapes_dir, epochs=1, epochs_decay=0), tmp_path / "run")
    with caplog.at_level("INFO", logger="cyclegan"):
        assert main(["translate", "--run", str(run), "--best", "--direction", "AtoB", "--input",
                     str(shapes_dir / "testA"), "--output", str(tmp_path / "out")]) == 0
    assert any("Using best/ from epoch 1 (val_swd" in r.getMessage() for r in caplog.records)
