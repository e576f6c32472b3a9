"""--tensorboard: the event files, read back with TensorBoard's own reader, hold a run's losses,
learning rate, held-out metrics, warnings and sample grids, and a resumed run continues the same
curves. Without the package, the flag is a one-line error before anything is read or written."""

from __future__ import annotations

import sys

import pytest

from cyclegan import runfolder
from cyclegan.cli import main
from cyclegan.train.loop import merge_resume_config, train

from conftest import small_config


def _events(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runfolder.tensorboard_dir(run)), size_guidance={"scalars": 0, "images": 0,
                                                                                  "tensors": 0})
    events.Reload()
    return events


def test_a_run_and_its_resume_write_one_set_of_curves(tmp_path, shapes_dir):
    pytest.importorskip("tensorboard")
    run = train(small_config(shapes_dir, epochs=2, epochs_decay=0, tensorboard=True), tmp_path / "run")
    assert runfolder.load_config(run).train.tensorboard
    before = [e.step for e in _events(run).Scalars("loss/G")]
    # what a process killed after the step-12 checkpoint would leave: an event past it, redone on resume
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(runfolder.tensorboard_dir(run))) as stale:
        stale.add_scalar("loss/G", 99.0, 14)
    train(merge_resume_config(runfolder.load_config(run), {"epochs": 3}), run, resume=True)

    events = _events(run)
    scalars = set(events.Tags()["scalars"])
    assert {"loss/G", "loss/cycle", "train/lr", "heldout/swd_AtoB", "heldout/cycle_l1_BtoA", "select_by/swd"} <= scalars
    losses = events.Scalars("loss/G")
    steps = [e.step for e in losses]
    assert steps == sorted(set(steps)) and steps[:len(before)] == before and steps[-1] == 18  # 6 steps an epoch
    assert 99.0 not in [e.value for e in losses]
    assert [e.step for e in events.Scalars("heldout/swd_AtoB")] == [6, 12, 18]
    images = events.Images("samples")
    assert [i.step for i in images] == [6, 12, 18] and images[0].width > images[0].height > 0


def test_warnings_are_text_at_their_step(tmp_path):
    pytest.importorskip("tensorboard")
    from cyclegan.train.tensorboard_log import TensorBoardLog

    log = TensorBoardLog(tmp_path)
    warnings = runfolder.RunWarnings(tmp_path, also=log.warning)
    warnings.add("collapse", epoch=3, step=30, message="A->B outputs look alike")
    log.close()
    events = _events(tmp_path)
    [tag] = events.Tags()["tensors"]
    assert tag.startswith("warnings/collapse")
    [event] = events.Tensors(tag)
    assert event.step == 30 and b"A->B outputs look alike" in event.tensor_proto.string_val[0]


def test_without_the_package_the_flag_is_a_one_line_error(tmp_path, shapes_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # what an import then finds: nothing
    code = main(["train", "--data", str(shapes_dir), "--run", str(tmp_path / "run"), "--preset", "tiny",
                 "--device", "cpu", "--tensorboard"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert ".venv/bin/pip install -e '.[tensorboard]'" in err
    assert not (tmp_path / "run").exists()
