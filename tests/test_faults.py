"""Faults injected for real: a run moved to another device, two trainers on one run folder, NaN
weights, a full disk, a SIGTERM, a killed best/ save, malformed run files, overwrites.

Each test makes the fault happen (a real second process, a real NaN gradient, a real full tmpfs
where the machine lets the test mount one) and checks that nothing was lost and that the user saw
one line, not a traceback.
"""

from __future__ import annotations

import copy
import errno
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from cyclegan import runfolder
from cyclegan.errors import CheckpointError, DiskFullError, RunLockedError
from cyclegan.train import loop
from cyclegan.train.loop import TrainingDiverged, train
from cyclegan.train.step import Models, Optimizers

from conftest import small_config
from test_download import server  # noqa: F401  (the fixture: a local mirror with Range support)


def cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """``cyclegan ARGS`` as a user runs it, in its own process."""
    return subprocess.run([sys.executable, "-m", "cyclegan", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "TQDM_DISABLE": "1"}, timeout=timeout)


def start_cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cyclegan", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TQDM_DISABLE": "1"})


def run_main(capsys, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``cyclegan ARGS`` run in this process (no torch import to pay)."""
    from cyclegan.cli import main

    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


_PROGRESS = re.compile(r"\d+/\d+ \[[^\]]*(it/s|s/it|\?)")


def one_line(stderr: str) -> str:
    """The one line a failed command printed (and that it printed only one, with no traceback)."""
    # a progress bar's redraws end in carriage returns, and its last one is blanked out: not lines
    lines = [line for line in re.split(r"[\r\n]", stderr) if line.strip() and not _PROGRESS.search(line)]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0].strip()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shapes_dir) -> Path:
    """A finished one-epoch run (trained once per module; tests work on copies)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(small_config(shapes_dir, epochs=1, epochs_decay=0), run)
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))



# --------------------------------------------------------------------------- 1. a run moves to another device

def _optimizers_after_one_step(models: Models, fused: bool | None) -> Optimizers:
    opt = Optimizers(*(torch.optim.Adam(itertools.chain(a.parameters(), b.parameters()), 1e-3, fused=fused)
                       for a, b in ((models.G_AB, models.G_BA), (models.D_A, models.D_B))))
    for optimizer in (opt.G, opt.D):
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = torch.full_like(p, 0.01)
        optimizer.step()
    return opt


def _assert_adam_policy(optimizer: torch.optim.Optimizer) -> None:
    """torch's own placement for the state it creates: step float32 on the parameter's device when
    fused, a float32 CPU scalar otherwise; the moments on the parameter's device, in its dtype."""
    for group in optimizer.param_groups:
        fused = bool(group.get("fused"))
        for p in group["params"]:
            state = optimizer.state[p]
            assert state["step"].dtype == torch.float32
            assert state["step"].device == (p.device if fused else torch.device("cpu"))
            for key in ("exp_avg", "exp_avg_sq"):
                assert state[key].device == p.device and state[key].dtype == p.dtype


@pytest.mark.parametrize("saved_dtype", [torch.float32, torch.float64])
def test_an_unfused_optimizer_state_resumes_into_a_fused_optimizer(config, saved_dtype):
    """A CPU run (unfused Adam) resumed where Adam is fused: the state follows the new optimizer's policy.

    float64: torch's unfused Adam keeps ``step`` in float64 under a float64 default dtype, and
    ``load_state_dict`` would hand that on to the fused kernel unchanged.
    """
    torch.manual_seed(0)
    saved_models = Models.build(config, torch.device("cpu"))
    saved = _optimizers_after_one_step(saved_models, fused=None)
    states = [copy.deepcopy(o.state_dict()) for o in (saved.G, saved.D)]  # load shares tensors otherwise
    for state in states:
        for value in state["state"].values():
            value["step"] = value["step"].to(saved_dtype)

    models = Models.build(config, torch.device("cpu"))
    for name, net in models.named().items():
        net.load_state_dict(saved_models.named()[name].state_dict())
    fused = Optimizers(*(torch.optim.Adam(itertools.chain(a.parameters(), b.parameters()), 1e-3, fused=True)
                         for a, b in ((models.G_AB, models.G_BA), (models.D_A, models.D_B))))
    fused.load_state_dict(*states)
    for optimizer in (fused.G, fused.D):
        assert all(group["fused"] for group in optimizer.param_groups)  # this device's choice is kept
        _assert_adam_policy(optimizer)

    # and the next step continues the saved one: fused and unfused Adam agree to rounding
    for opt, nets in ((saved, saved_models), (fused, models)):
        for p in nets.G_AB.parameters():
            p.grad = torch.full_like(p, -0.02)
        for p in nets.G_BA.parameters():
            p.grad = torch.zeros_like(p)
        opt.G.step()
    for a, b in zip(saved_models.G_AB.parameters(), models.G_AB.parameters()):
        torch.testing.assert_close(a, b)


def test_a_fused_state_resumes_into_an_unfused_optimizer(config):
    """The other way (a GPU run resumed on a CPU): ``step`` goes back to a CPU float32 scalar."""
    models = Models.build(config, torch.device("cpu"))
    fused = _optimizers_after_one_step(models, fused=True)
    plain = Optimizers(*(torch.optim.Adam(itertools.chain(a.parameters(), b.parameters()), 1e-3)
                         for a, b in ((models.G_AB, models.G_BA), (models.D_A, models.D_B))))
    plain.load_state_dict(fused.G.state_dict(), fused.D.state_dict())
    for optimizer in (plain.G, plain.D):
        assert not any(group["fused"] for group in optimizer.param_groups)
        _assert_adam_policy(optimizer)


@pytest.mark.cuda  # selected by `pytest -m cuda`; conftest.py skips it without a GPU
def test_a_cpu_run_resumes_on_cuda_and_steps(config):
    """The reported crash: a CPU run's state in CUDA's fused Adam, then one real step."""
    cpu_models = Models.build(config, torch.device("cpu"))
    cpu = _optimizers_after_one_step(cpu_models, fused=None)
    cuda = torch.device("cuda")
    models = Models.build(config, cuda)
    for name, net in models.named().items():
        net.load_state_dict(cpu_models.named()[name].state_dict())
    opt = Optimizers.build(models, config)  # fused on CUDA
    opt.load_state_dict(cpu.G.state_dict(), cpu.D.state_dict())
    for optimizer in (opt.G, opt.D):
        _assert_adam_policy(optimizer)
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = torch.full_like(p, 0.01)
        optimizer.step()
    torch.cuda.synchronize()
    assert all(torch.isfinite(p).all() for p in models.G_AB.parameters())


@pytest.mark.cuda
def test_a_cpu_trained_run_resumes_on_cuda_through_the_trainer(run):
    """The user's path: a run trained on a CPU, copied to a GPU machine, resumed with --device auto."""
    config = runfolder.load_config(run)
    config.train.device, config.train.epochs = "auto", 2
    train(config, run, resume=True)
    assert runfolder.load_state(run)["step"] == 12
    assert all(torch.isfinite(t).all() for t in runfolder.read_weights(runfolder.weights_path(run, "G_AB")).values())


# --------------------------------------------------------------------------- 2. two trainers on one run folder

def _wait_for_lock(run: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    lock = run / runfolder.LOCK_FILE
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        if lock.exists() and lock.read_text().strip() == str(process.pid):
            return
        time.sleep(0.1)
    raise AssertionError("the first trainer never took the lock")


def test_a_second_trainer_is_refused_by_pid_readers_are_not_and_a_killed_trainers_lock_never_blocks(
        run, shapes_dir, tmp_path, capsys):
    """Two real processes: a trainer in a subprocess, and this one as the second trainer and a reader."""
    first = start_cli("train", "--resume", run, "--epochs", "1000", "-q")
    try:
        _wait_for_lock(run, first)
        before = (run / runfolder.METRICS_FILE).read_bytes()
        status, _, err = run_main(capsys, "train", "--resume", run, "--epochs", "1000")
        assert status == 1
        line = one_line(err)
        assert f"PID {first.pid}" in line and str(run) in line
        assert (run / runfolder.METRICS_FILE).read_bytes()[:len(before)] == before  # its rows were not touched
        status, _, err = run_main(capsys, "translate", "--run", run, "--direction", "AtoB", "--input",
                                  shapes_dir / "testA", "--output", tmp_path / "out")
        assert status == 0, err  # a reader is not locked out
        first.kill()  # kill -9: the lock file stays, naming a dead process
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert (run / runfolder.LOCK_FILE).read_text().strip() == str(first.pid)
    with runfolder.lock_run(run):  # the kernel released the dead process's lock: taken at once
        with pytest.raises(RunLockedError, match=f"PID {os.getpid()}"):
            with runfolder.lock_run(run):  # and held against a second opener, even in the same process
                pass


def test_a_new_run_that_fails_before_its_first_file_leaves_no_folder(tmp_path, shapes_dir):
    config = small_config(shapes_dir)
    config.train.domain_a = str(tmp_path / "missing")
    with pytest.raises(Exception):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- 3. NaN/inf weights

def _nan_gradient_on_steps(monkeypatch, steps: set[int]) -> None:
    """A real NaN gradient: on these training steps (1-based) a hook turns G_AB's first weight's
    gradient to NaN during the real backward pass. The loss stays finite, so the step is not skipped."""
    real, calls = loop.train_step, {"n": 0}

    def train_step(models, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] not in steps:
            return real(models, *args, **kwargs)
        handle = next(models.G_AB.parameters()).register_hook(lambda grad: grad * float("nan"))
        try:
            return real(models, *args, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(loop, "train_step", train_step)


def _digests(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*.safetensors"))
            + [run / runfolder.STATE_FILE]}


def test_nan_weights_are_never_saved_over_finite_ones(run, monkeypatch):
    """The NaN gradient on the last step of epoch 2: the end-of-epoch save refuses, epoch 1 is kept."""
    before = _digests(run)  # epoch 1 (6 steps), with best/ and its weights
    config = runfolder.load_config(run)
    config.train.epochs = 2
    config.train.keep_epochs = -1
    _nan_gradient_on_steps(monkeypatch, {6})  # the resumed run's 6th step: step 12, the end of epoch 2
    with pytest.raises(TrainingDiverged) as caught:
        train(config, run, resume=True)
    message = str(caught.value)
    assert "\n" not in message and "G_AB went NaN/inf" in message and "epoch 1 (step 6) is kept" in message
    assert "G_BA" not in message.split("went")[0]
    assert _digests(run) == before  # nothing written over: the generators, D, best/, the state
    assert not (run / runfolder.EPOCHS_DIR).exists() and runfolder.load_state(run)["step"] == 6
    monkeypatch.undo()
    config.train.keep_epochs = 0
    train(config, run, resume=True)  # and the kept checkpoint resumes
    assert runfolder.load_state(run)["step"] == 12


def test_scattered_skipped_steps_stop_an_epoch(tmp_path, shapes_dir, monkeypatch):
    """Every other step with a real NaN loss: never two in a row, but half the epoch, so training stops."""
    from cyclegan.train import step

    real, calls = step.cycle_loss, {"n": 0}

    def cycle_loss(*args, **kwargs):  # called twice a step: NaN on steps 1, 3, 5, ...
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] % 4 == 1 else loss

    monkeypatch.setattr(step, "cycle_loss", cycle_loss)
    with pytest.raises(TrainingDiverged, match=r"3 of the epoch's 6 steps had NaN/inf losses \(more than 25%\)"):
        train(small_config(shapes_dir, epochs=3, epochs_decay=0), tmp_path / "run")
    assert runfolder.load_state(tmp_path / "run")["step"] == 6  # stopped after epoch 1, with a checkpoint


# --------------------------------------------------------------------------- 4. the disk fills

FREE_BYTES = 16 * 1024  # what a full disk leaves: room for the lock and a metrics row, not for weights


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """A folder on a real 64 MiB tmpfs (root, where mounting is allowed), and ``fill()`` to leave it
    FREE_BYTES free and ``free()`` to give the space back. Elsewhere: a plain folder where, once
    filled, every fsync of a file in it fails with ENOSPC, as the kernel reports a full disk."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True).returncode == 0
    filler = disk / "filler"

    class Disk:
        path, real = disk, mounted

        @staticmethod
        def fill() -> None:
            if mounted:
                stats = os.statvfs(disk)
                with open(filler, "wb") as f:
                    f.write(b"\0" * (stats.f_bavail * stats.f_frsize - FREE_BYTES))
                return
            real_fsync = os.fsync

            def fsync(fd: int) -> None:
                if os.readlink(f"/proc/self/fd/{fd}").startswith(str(disk)):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                real_fsync(fd)

            monkeypatch.setattr(os, "fsync", fsync)

        @staticmethod
        def free() -> None:
            filler.unlink(missing_ok=True)
            monkeypatch.undo()

    yield Disk
    if mounted:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.endswith(".part")]


def test_a_full_disk_during_training_is_one_line_keeps_the_checkpoint_and_resumes_once_freed(
        trained, small_disk, capsys):
    run = Path(shutil.copytree(trained, small_disk.path / "run"))
    before = _digests(run)
    small_disk.fill()
    status, _, err = run_main(capsys, "train", "--resume", run, "--epochs", "2")
    assert status == 1
    line = one_line(err)
    assert line.startswith("error: disk full while writing ") and str(run) in line
    assert _digests(run) == before and not _temporaries(run)  # the last good checkpoint, intact
    small_disk.free()
    status, _, err = run_main(capsys, "train", "--resume", run, "--epochs", "2")  # space is back: it continues
    assert status == 0, err
    assert runfolder.load_state(run)["step"] == 12


def test_the_checkpoint_is_saved_before_the_epochs_extras_which_may_fail(run, monkeypatch):
    """The extras (here the sample grid) fail on a full disk: the epoch's checkpoint is on disk already."""
    def no_space(path, columns):
        raise DiskFullError.of(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path)

    monkeypatch.setattr(loop, "save_sample_grid", no_space)
    config = runfolder.load_config(run)
    config.train.epochs = 2
    with pytest.raises(DiskFullError, match="disk full while writing .*epoch_002.png"):
        train(config, run, resume=True)
    assert runfolder.load_state(run)["step"] == 12  # epoch 2's training was saved
    assert runfolder.weights_step(runfolder.weights_path(run, "G_AB")) == 12


def test_translate_on_a_full_disk_is_one_line_and_leaves_no_temporary_file(trained, shapes_dir, small_disk,
                                                                             capsys):
    out = small_disk.path / "out"
    out.mkdir()
    small_disk.fill()
    status, _, err = run_main(capsys, "-q", "translate", "--run", trained, "--direction", "AtoB", "--input",
                              shapes_dir / "trainA", "--output", out)
    line = one_line(err)
    assert status == 1 and line.startswith("error: disk full while writing ") and str(out) in line
    assert not _temporaries(out)


def test_a_download_onto_a_full_disk_is_one_line_and_leaves_no_part_file(server, small_disk, capsys):  # noqa: F811
    server.files["/datasets/horse2zebra.zip"] = os.urandom(256 * 1024)
    out = small_disk.path / "datasets"
    out.mkdir()
    small_disk.fill()
    status, _, err = run_main(capsys, "-q", "download", "dataset", "horse2zebra", "--out", out)
    line = one_line(err)
    assert status == 1 and line.startswith("error: disk full while writing ") and "horse2zebra.zip.part" in line
    assert list(out.iterdir()) == []  # no .part, no .download folder


# --------------------------------------------------------------------------- 5. best/ as a pair

def test_a_best_pair_cut_short_is_refused_in_one_line(run, shapes_dir, tmp_path, capsys):
    translate = ["translate", "--run", run, "--direction", "both", "--input", shapes_dir / "testA", "--best"]
    status, _, err = run_main(capsys, *translate, "--output", tmp_path / "good")
    assert status == 0, err  # the pair as saved
    meta = runfolder.read_best(run)
    assert set(meta["files"]) == {"G_AB.safetensors", "G_BA.safetensors"}
    # what a kill after the first generator file of the next best epoch leaves: a new G_AB beside the old G_BA
    config = runfolder.load_config(run)
    newer = Models.build(config, torch.device("cpu")).G_AB
    runfolder.save_weights(newer, runfolder.weights_path(run, "G_AB", best=True), step=meta["step"])
    status, _, err = run_main(capsys, *translate, "--output", tmp_path / "mixed")
    line = one_line(err)
    assert status == 1 and "G_AB.safetensors is not the file" in line and "mixed" in line
    assert not (tmp_path / "mixed").exists()


def test_a_best_folder_from_before_file_hashes_is_checked_by_step(run):
    meta = runfolder.read_best(run)
    del meta["files"]
    (run / runfolder.BEST_DIR / runfolder.BEST_META).write_text(json.dumps(meta))
    runfolder.check_best(run)  # the pair agrees on its step
    net = Models.build(runfolder.load_config(run), torch.device("cpu")).G_BA
    runfolder.save_weights(net, runfolder.weights_path(run, "G_BA", best=True), step=meta["step"] + 6)
    with pytest.raises(CheckpointError, match="G_BA.safetensors is not the file"):
        runfolder.check_best(run)


# --------------------------------------------------------------------------- 8. SIGTERM

def test_sigterm_saves_at_the_next_step_and_exits_143(run):
    trainer = start_cli("train", "--resume", run, "--epochs", "1000")
    try:
        deadline = time.monotonic() + 120
        while not any(int(row["step"]) > 6 for row in runfolder.read_metrics(run)):  # in the loop, past the resume
            assert trainer.poll() is None and time.monotonic() < deadline, trainer.stderr.read()
            time.sleep(0.1)
        trainer.send_signal(signal.SIGTERM)
        _, err = trainer.communicate(timeout=120)
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()
    assert trainer.returncode == 143
    line = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert len(line) == 1 and "on SIGTERM" in line[0] and "Traceback" not in err
    step = runfolder.load_state(run)["step"]
    assert step > 6 and runfolder.weights_step(runfolder.weights_path(run, "G_AB")) == step


# --------------------------------------------------------------------------- 7. malformed run files

@pytest.mark.parametrize("edit,named", [
    (lambda c: c.update(model="resnet"), "'model' must be a JSON object"),
    (lambda c: c["model"].update(ngf="64"), "model.ngf must be a whole number, got '64'"),
    (lambda c: c["train"].update(lr=None), "train.lr must be a number, got None"),
    (lambda c: c["train"].update(flip=1), "train.flip must be true or false, got 1"),
])
def test_a_malformed_config_is_one_line_and_the_app_lists_the_run_as_unusable(run, shapes_dir, tmp_path, capsys,
                                                                                edit, named):
    from cyclegan.app.catalog import inspect_run

    config = json.loads((run / runfolder.CONFIG_FILE).read_text())
    edit(config)
    (run / runfolder.CONFIG_FILE).write_text(json.dumps(config))
    status, _, err = run_main(capsys, "translate", "--run", run, "--direction", "AtoB", "--input",
                              shapes_dir / "testA", "--output", tmp_path / "out")
    line = one_line(err)
    assert status == 1 and named in line and str(run / runfolder.CONFIG_FILE) in line
    info = inspect_run(run)
    assert not info.usable and named in info.reason
    assert "run/config.json" in info.reason and str(run) not in info.reason  # no server path in the browser


@pytest.mark.parametrize("edit,named", [
    (lambda s: s.update(epoch="1"), "malformed epoch"),
    (lambda s: s.update(opt_G={"state": {}, "param_groups": []}), "optimizer or pool state that does not fit"),
    (lambda s: s.update(pools=[{"A": {"images": "x"}}]), "optimizer or pool state that does not fit"),
])
def test_a_malformed_train_state_is_one_line(run, capsys, edit, named):
    state = runfolder.load_state(run)
    edit(state)
    torch.save(state, run / runfolder.STATE_FILE)
    status, _, err = run_main(capsys, "train", "--resume", run, "--epochs", "2")
    line = one_line(err)
    assert status == 1 and named in line and str(run / runfolder.STATE_FILE) in line


# --------------------------------------------------------------------------- 6. overwrites that delete data

def test_translate_never_writes_over_its_input(trained, shapes_dir, tmp_path, capsys):
    folder = Path(shutil.copytree(shapes_dir / "testA", tmp_path / "photos"))
    photo = sorted(folder.iterdir())[0]
    original = photo.read_bytes()
    status, _, err = run_main(capsys, "translate", "--run", trained, "--direction", "AtoB", "--input", photo,
                              "--output", folder, "--overwrite")
    line = one_line(err)
    assert status == 1 and f"the output {photo} would replace an input" in line
    assert photo.read_bytes() == original


def test_translate_never_writes_a_clip_over_itself(trained, tmp_path, capsys):
    pytest.importorskip("av")
    from cyclegan.data.synthetic import pan_frames
    from test_video import make_clip

    clip = make_clip(tmp_path / "clip.mp4", pan_frames(4, size=32))
    original = clip.read_bytes()
    status, _, err = run_main(capsys, "translate", "--run", trained, "--direction", "AtoB", "--input", clip,
                              "--output", clip, "--overwrite")
    assert status == 1 and "would replace an input" in one_line(err) and clip.read_bytes() == original


def test_overwrite_deletes_only_a_folder_the_same_command_made(trained, tmp_path, capsys):
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    before = _digests(run)
    status, _, err = run_main(capsys, "make-dataset", "--out", run, "--n-train", "1", "--n-test", "0",
                              "--size", "32", "--overwrite")
    assert status == 1 and "not made by `cyclegan make-dataset`" in one_line(err)
    status, _, err = run_main(capsys, "-q", "download", "model", "horse2zebra", "--out", run, "--overwrite",
                              "--base-url", "http://127.0.0.1:9")  # refused before any download is tried
    assert status == 1 and "not made by `cyclegan download model`" in one_line(err)
    assert _digests(run) == before  # the trained run is untouched
    made = tmp_path / "made"
    for n_train in (1, 2):  # a folder make-dataset made is replaced
        status, _, err = run_main(capsys, "make-dataset", "--out", made, "--n-train", n_train, "--n-test", "0",
                                  "--size", "32", "--overwrite")
        assert status == 0, err
    assert len(list((made / "trainA").iterdir())) == 2


# --------------------------------------------------------------------------- 10. downloads

class ChangingFile:
    """A server whose file changes (same size, new ETag) after the first response was cut off; it
    honours If-Range as RFC 9110 says: the rest only while the validator still matches."""

    def __init__(self, etag: bool = True, length: bool = True) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.versions = [os.urandom(64 * 1024), os.urandom(64 * 1024)]
        self.served = 0
        self.asked: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                outer.asked.append(dict(self.headers))
                version = min(outer.served, 1)
                data, tag = outer.versions[version], f'"v{version}"'
                asked, condition = self.headers.get("Range"), self.headers.get("If-Range")
                start = int(asked.removeprefix("bytes=").rstrip("-")) if asked and condition in (None, tag) else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                if etag:
                    self.send_header("ETag", tag)
                if length:
                    self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:] if outer.served else data[:len(data) // 2]  # the first one is cut off
                self.wfile.write(body)
                self.close_connection = True
                outer.served += 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_resumed_download_of_a_file_that_changed_starts_over_instead_of_splicing(tmp_path, monkeypatch):
    from cyclegan.data import download as dl

    monkeypatch.setattr(dl, "RETRY_WAIT", 0.0)
    server = ChangingFile()
    try:
        got = dl.fetch(server.url + "/x.zip", tmp_path / "x.zip", progress=False)
    finally:
        server.close()
    assert server.asked[1].get("If-Range") == '"v0"'  # the resume named the version it began with
    assert got.read_bytes() == server.versions[1]  # the whole new file, not v0's head and v1's tail
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.zip"]  # no .part, no validator left


def test_a_body_without_content_length_is_capped(tmp_path, monkeypatch, capsys):
    from cyclegan.data import download as dl

    monkeypatch.setattr(dl, "MAX_BYTES", 16 * 1024)
    server = ChangingFile(etag=False, length=False)
    server.served = 1  # the whole file, in one response, of no announced length
    try:
        status, _, err = run_main(capsys, "-q", "download", "dataset", "horse2zebra", "--out", tmp_path,
                                  "--base-url", server.url)
    finally:
        server.close()
    assert status == 1 and "more than the 16384 bytes a download may be" in one_line(err)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- 9. the app beyond this machine

@pytest.mark.parametrize("flags,refused", [
    ([], False),
    (["--host", "127.0.0.2"], False),
    (["--host", "::1"], False),
    (["--host", "0.0.0.0"], True),
    (["--host", "myserver.example"], True),
    (["--share"], True),
    (["--host", "0.0.0.0", "--auth", "ann:s3:cret"], False),
    (["--host", "0.0.0.0", "--trust-network"], False),
])
def test_the_app_is_not_served_beyond_this_machine_without_a_password(flags, refused, monkeypatch):
    from cyclegan.app.settings import AUTH_ENV, settings_from_args
    from cyclegan.cli import build_parser

    monkeypatch.delenv(AUTH_ENV, raising=False)
    args = build_parser().parse_args(["app", *flags])
    if refused:
        with pytest.raises(Exception, match="add --auth USER:PASS") as caught:
            settings_from_args(args)
        assert type(caught.value).__name__ == "ConfigError"
    else:
        settings = settings_from_args(args)
        assert settings.auth == (("ann", "s3:cret") if "--auth" in flags else None)


def test_the_password_can_come_from_the_environment_and_reaches_gradio(monkeypatch, tmp_path):
    from cyclegan.app import server, settings as app_settings
    from cyclegan.cli import build_parser

    monkeypatch.setenv(app_settings.AUTH_ENV, "ann:pw")
    settings = app_settings.settings_from_args(build_parser().parse_args(
        ["app", "--host", "0.0.0.0", "--checkpoints", str(tmp_path), "--datasets", str(tmp_path), "--device", "cpu"]))
    launched = {}

    class Demo:  # stands in for the Gradio page: serve() hands its settings to launch()
        def queue(self, **kwargs):
            pass

        def launch(self, **kwargs):
            launched.update(kwargs)

        def close(self):
            pass

    monkeypatch.setattr(server, "build_ui", lambda state: Demo())
    previous = signal.getsignal(signal.SIGTERM)
    try:
        server.serve(settings)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert launched["auth"] == ("ann", "pw") and launched["server_name"] == "0.0.0.0"


def test_dataset_uploads_are_limited_in_files_bytes_and_pixels(tmp_path):
    from PIL import Image

    from cyclegan.app.catalog import DatasetUploadLimits, save_uploaded_dataset
    from cyclegan.errors import DataError

    small = [tmp_path / f"s{i}.png" for i in range(3)]
    for path in small:
        Image.new("RGB", (16, 16), (10, 20, 30)).save(path)
    large = tmp_path / "large.png"
    Image.new("RGB", (200, 100), (10, 20, 30)).save(large)
    root = tmp_path / "datasets"
    with pytest.raises(DataError, match="4 files uploaded, over the app's 3"):
        save_uploaded_dataset(root, "many", small[:2], small[2:] + [large], DatasetUploadLimits(max_files=3))
    with pytest.raises(DataError, match="over the app's 0 MB"):
        save_uploaded_dataset(root, "heavy", small[:1], small[1:], DatasetUploadLimits(max_total_bytes=100))
    assert not root.exists() or list(root.iterdir()) == []  # refused before anything was copied
    saved = save_uploaded_dataset(root, "mixed", [small[0], large], [small[1]], DatasetUploadLimits(max_pixels=10_000))
    assert saved.kept == {"trainA": 1, "trainB": 1}
    assert len(saved.skipped) == 1 and saved.skipped[0].startswith("large.png: 200x100") and "limit" in saved.skipped[0]


def test_errors_shown_in_the_browser_carry_no_server_paths(trained, tmp_path):
    from cyclegan.app.common import user_error
    from cyclegan.app.translate import UploadLimits, translate_uploads
    from cyclegan.translate.translator import Translator

    bad = tmp_path / "uploads" / "deep" / "holiday.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a picture")
    result = translate_uploads(Translator.from_run(trained, device="cpu"), [bad], ["AtoB"], False,
                               UploadLimits(2**20, 10**6, 64), tmp_path / "out")
    assert result.failures and all(str(tmp_path) not in f for f in result.failures)
    assert "holiday.png" in result.failures[0]
    shown = str(user_error(CheckpointError(f"{trained / 'best'} is incomplete; see https://example.org/a/b")))
    assert str(trained) not in shown and "run/best is incomplete" in shown and "https://example.org/a/b" in shown
