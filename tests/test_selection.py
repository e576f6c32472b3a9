"""Choosing the best epoch: the selection rules, the do-nothing guard, kept epochs and the
weight average (--ema) that every choice is made on."""

from __future__ import annotations

import pytest
import torch

from cyclegan import runfolder
from cyclegan.cli import main
from cyclegan.evaluate.health import TrainingMonitor
from cyclegan.evaluate.table import SELECTABLE, flatten, selection_value, worse_than_nothing
from cyclegan.train.loop import merge_resume_config, train
from cyclegan.translate.translator import Translator

from conftest import small_config


def _results(swd_ab: float, swd_ba: float, base: float = 10.0) -> dict[str, dict[str, float]]:
    return {d: {"swd": s, "swd_identity": base, "cycle_l1": 0.1, "identity_mapping_l1": 0.05}
            for d, s in (("AtoB", swd_ab), ("BtoA", swd_ba))}


def test_rules_score_a_flattened_evaluation_as_metrics_csv_stores_it():
    flat = flatten(_results(5.0, 20.0, base=10.0))
    assert selection_value(flat, "swd") == pytest.approx(12.5)
    assert selection_value(flat, "swd_ratio") == pytest.approx((0.5 + 2.0) / 2)
    assert selection_value(flat, "cycle_l1") == pytest.approx(0.1)
    assert selection_value(flat, "identity_l1") == pytest.approx(0.05)
    assert selection_value(flat, "last", epoch=7) < selection_value(flat, "last", epoch=6)
    assert selection_value(flat, "fid") is None  # not computed without --fid
    assert flat["val_swd_ratio"] == pytest.approx(1.25)
    # the same from a metrics.csv row, where every value is text
    assert selection_value({k: str(v) for k, v in flat.items()}, "swd_ratio") == pytest.approx(1.25)
    assert set(SELECTABLE) >= {"swd", "swd_coarse", "swd_ratio", "cycle_l1", "identity_l1", "last"}


def test_the_coarse_rule_ties_within_its_own_noise_and_keeps_the_later_epoch(tmp_path):
    """swd_coarse reads its own columns and bootstrap spread, not the full SWD's: here the full SWD
    gets worse at epoch 2 (finer texture changed) while the coarse one stays within its noise."""
    def results(full: float, coarse: float, coarse_sd: float) -> dict[str, dict[str, float]]:
        return {d: {"swd": full, "swd_sd": 0.1, "swd_identity": 100.0, "swd_coarse": coarse,
                    "swd_coarse_sd": coarse_sd, "cycle_l1": 0.1, "identity_mapping_l1": 0.05} for d in ("AtoB", "BtoA")}
    history = [results(40.0, 30.0, 2.0), results(60.0, 31.0, 2.0)]
    chosen = {}
    for rule in ("swd", "swd_coarse"):
        monitor = TrainingMonitor(runfolder.RunWarnings(tmp_path / rule), rule)
        for epoch, r in enumerate(history, 1):
            monitor.observe(epoch, epoch, r, selection_value(flatten(r), rule))
        chosen[rule] = monitor.best["epoch"]
    assert chosen == {"swd": 1, "swd_coarse": 2}
    assert selection_value(flatten(history[0]), "swd_coarse") == pytest.approx(30.0)


def test_worse_than_nothing_names_the_direction_and_its_numbers():
    assert worse_than_nothing(flatten(_results(5.0, 9.0))) == []
    worse = worse_than_nothing(flatten(_results(5.0, 12.0)))
    assert len(worse) == 1 and worse[0].startswith("BtoA") and "12.00" in worse[0] and "10.00" in worse[0]


def test_an_epoch_worse_than_doing_nothing_is_not_chosen_over_one_that_is_not(tmp_path):
    warnings = runfolder.RunWarnings(tmp_path)
    monitor = TrainingMonitor(warnings)
    history = [_results(12.0, 11.0), _results(8.0, 9.5), _results(2.0, 10.5), _results(7.0, 9.0)]
    chosen = []
    for epoch, results in enumerate(history, 1):
        value = selection_value(flatten(results), "swd")
        if monitor.observe(epoch, epoch, results, value).improved:
            chosen.append(epoch)
    # epoch 1 is worse than nothing; 2 beats it although its mean SWD is lower only a little; epoch 3
    # has the lowest mean SWD of all but B->A is worse than nothing; epoch 4 is clean and better than 2
    assert chosen == [1, 2, 4] and monitor.best["epoch"] == 4 and monitor.best_worse == []
    monitor.check_worse_than_nothing(4, 4)
    assert warnings.items == []


def test_when_every_epoch_is_worse_than_nothing_the_end_of_training_says_so(tmp_path):
    warnings = runfolder.RunWarnings(tmp_path)
    monitor = TrainingMonitor(warnings)
    for epoch, results in enumerate([_results(12.0, 11.0), _results(11.0, 10.5)], 1):
        monitor.observe(epoch, epoch, results, selection_value(flatten(results), "swd"))
    assert monitor.best["epoch"] == 2 and monitor.best_worse
    monitor.check_worse_than_nothing(2, 2)
    assert [w["kind"] for w in runfolder.read_warnings(tmp_path)] == ["worse_than_nothing"]
    assert "AtoB" in warnings.items[0]["message"] and "Try:" in warnings.items[0]["message"]


def test_kept_epochs_translate_and_report_says_why_an_epoch_was_chosen(tmp_path, shapes_dir, capsys):
    config = small_config(shapes_dir, epochs=3, epochs_decay=0, keep_epochs=2, select_by="swd_ratio")
    run = train(config, tmp_path / "run")
    assert runfolder.kept_epochs(run) == [2, 3]
    image = torch.zeros(3, 32, 32)
    kept = Translator.from_run(run, device="cpu", epoch=2)(image, "AtoB")
    latest = Translator.from_run(run, device="cpu")(image, "AtoB")
    assert kept.shape == latest.shape and not torch.equal(kept, latest)
    assert main(["translate", "--run", str(run), "--epoch", "1", "--direction", "AtoB",
                 "--input", str(shapes_dir / "testA"), "--output", str(tmp_path / "out")]) == 1
    assert "no generators kept for epoch 1; kept epochs: 2, 3" in capsys.readouterr().err
    assert main(["translate", "--run", str(run), "--epoch", "3", "--direction", "AtoB", "-q",
                 "--input", str(shapes_dir / "testA"), "--output", str(tmp_path / "out")]) == 0
    meta = runfolder.read_best(run)
    assert meta["rule"] == "swd_ratio" and "input-unchanged SWD" in meta["reason"]
    assert main(["report", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"best epoch     {meta['epoch']}: val_swd_ratio" in out and "chosen by the mean of each direction's SWD" in out
    assert "kept epochs    2, 3" in out


def test_ema_generators_are_what_is_saved_and_resume_is_exact(tmp_path, shapes_dir):
    config = small_config(shapes_dir, epochs=2, epochs_decay=0, ema=0.9, eval_every=0)
    straight = train(config, tmp_path / "straight")
    state = runfolder.load_state(straight)
    raw = state["models"]["G_AB"]
    saved = runfolder.read_weights(straight / "G_AB.safetensors")
    assert set(saved) == set(raw) and any(not torch.equal(saved[k], raw[k]) for k in raw)  # the average, not G
    assert torch.equal(saved["model.1.weight"], state["ema"]["G_AB"]["model.1.weight"])

    split = train(small_config(shapes_dir, epochs=1, epochs_decay=0, ema=0.9, eval_every=0), tmp_path / "split")
    train(merge_resume_config(runfolder.load_config(split), {"epochs": 2}), split, resume=True)
    for name in runfolder.GENERATORS:
        a, b = runfolder.read_weights(straight / f"{name}.safetensors"), runfolder.read_weights(split / f"{name}.safetensors")
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


class _Sink(list):
    def add(self, kind: str, epoch: int, step: int, message: str) -> None:
        self.append(kind)


def _evaluation(swd: float, sd: float = 0.0, change: float = 0.1) -> dict[str, dict[str, float]]:
    return {d: {"swd": swd, "swd_sd": sd, "swd_identity": 100.0, "domain_gap": 3.0, "change": change}
            for d in ("AtoB", "BtoA")}


def test_a_later_epoch_within_the_sampling_noise_of_the_lowest_is_kept():
    monitor = TrainingMonitor(_Sink())
    picks = []
    for epoch, (swd, sd) in enumerate([(50.0, 2.0), (40.0, 2.0), (41.0, 2.0), (46.0, 2.0), (41.5, 2.0)], 1):
        if monitor.observe(epoch, epoch, _evaluation(swd, sd), swd).improved:
            picks.append(epoch)
    # 41 is within the noise of 40 (sd of the mean of both directions: 2/sqrt(2) each, so about 2 apart);
    # 46 is not; 41.5 is again within the noise of the lowest, 40, not of the chosen 41 (no creeping upwards)
    assert picks == [1, 2, 3, 5] and monitor.lowest["value"] == 40.0
    no_noise = TrainingMonitor(_Sink())
    assert [no_noise.observe(e, e, _evaluation(v), v).improved for e, v in enumerate([40.0, 41.0], 1)] == [True, False]


def test_an_epoch_that_translates_nothing_is_never_chosen_over_one_that_translates(tmp_path):
    warnings = runfolder.RunWarnings(tmp_path)
    monitor = TrainingMonitor(warnings)
    # epochs 1-3 return their input (tiny change, SWD as the input's), epoch 4 translates, and
    # epoch 5 returns the input with a lower SWD than epoch 4
    history = [(99.0, 0.004), (98.0, 0.003), (97.0, 0.01), (95.0, 0.08), (92.0, 0.004)]
    for epoch, (swd, change) in enumerate(history, 1):
        monitor.observe(epoch, epoch, _evaluation(swd, change=change), swd)
    assert monitor.best["epoch"] == 4 and monitor.best_untranslated == []
    kinds = [w["kind"] for w in runfolder.read_warnings(tmp_path)]
    assert kinds == ["no_translation", "no_translation"]  # after three evaluations in a row, per direction
    assert "No translation in AtoB: for 3 evaluations in a row" in runfolder.read_warnings(tmp_path)[0]["message"]


def test_the_end_of_training_says_when_the_chosen_epoch_translates_nothing(tmp_path):
    warnings = runfolder.RunWarnings(tmp_path)
    monitor = TrainingMonitor(warnings)
    monitor.observe(1, 1, _evaluation(99.0, change=0.002), 99.0)
    monitor.check_end(1, 1)
    messages = [w["message"] for w in runfolder.read_warnings(tmp_path)]
    assert len(messages) == 1 and messages[0].startswith("The chosen epoch (1) translates nothing in AtoB")


def test_a_run_that_learns_nothing_is_told_so_in_warnings_and_best(tmp_path):
    from cyclegan.data.synthetic import make_dataset
    data = make_dataset(tmp_path / "shapes", n_train=8, n_test=12, size=32)
    config = small_config(data, lr=1e-9, lambda_identity=0.0, epochs=1, epochs_decay=0)
    config.model.colour, config.model.upsample = True, "resize"  # starts as the identity, and stays there
    run = train(config, tmp_path / "run")
    assert "no_translation" in [w["kind"] for w in runfolder.read_warnings(run)]
    meta = runfolder.read_best(run)
    assert meta["no_translation"] and "translating nothing" in meta["reason"]
