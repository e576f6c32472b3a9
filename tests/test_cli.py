"""The `cyclegan` command as a user runs it, on real files.

The end-to-end flow, the installed script and `-q` run as real subprocesses. Help and error handling
call ``main(argv)`` in this process: the same code path, without paying torch's import (seconds) per
case; an unexpected exception there fails the test outright, so "no traceback" is still checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SMALL = ["--preset", "tiny", "--ngf", "8", "--ndf", "8", "--n-blocks", "1", "--load-size", "32", "--crop-size", "32",
         "--epochs", "1", "--epochs-decay", "0", "--device", "cpu"]


def cyclegan(*args, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    result = subprocess.run([sys.executable, "-m", "cyclegan", *map(str, args)], capture_output=True, text=True,
                            env=env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def run_main(capsys, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``cyclegan ARGS`` run in this process."""
    from cyclegan.cli import main

    try:
        status = main([str(a) for a in args])
    except SystemExit as exit_:  # --help and argparse errors exit from inside the parser
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("command", ["train", "translate", "evaluate", "make-dataset"])
def test_every_command_has_help(capsys, command):
    status, out, _ = run_main(capsys, command, "--help")
    assert status == 0 and "usage: cyclegan " + command in out


def test_every_config_field_is_a_flag(capsys):
    from cyclegan.config import ModelConfig, TrainConfig
    import dataclasses

    out = run_main(capsys, "train", "--help")[1]
    flag = {"family": "--model"}  # the one field set by a flag of another name (it brings the family's defaults)
    for cls in (ModelConfig, TrainConfig):
        for field in dataclasses.fields(cls):
            assert flag.get(field.name, "--" + field.name.replace("_", "-")) in out
    assert "--family" not in out


def test_make_dataset_train_translate_evaluate(tmp_path):
    data = tmp_path / "shapes"
    cyclegan("make-dataset", "--out", data, "--n-train", 6, "--n-test", 3, "--size", 32)
    run = tmp_path / "run"
    cyclegan("train", "--data", data, "--run", run, *SMALL)
    assert (run / "G_AB.safetensors").exists() and (run / "samples" / "epoch_001.png").exists()

    out = tmp_path / "out"
    result = cyclegan("translate", "--run", run, "--direction", "BtoA", "--input", data / "testB", "--output", out)
    assert "translated 3" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]

    scores = json.loads(cyclegan("evaluate", "--run", run, "--data", data, "--json").stdout)
    for direction in ("AtoB", "BtoA"):
        assert {"l1", "psnr", "identity_l1", "identity_psnr"} <= scores[direction].keys()
        assert 0 < scores[direction]["identity_l1"] < 1
    table = cyclegan("evaluate", "--run", run, "--data", data).stdout
    assert "AtoB" in table and "identity" in table

    # Resume with more epochs continues the same run; a second `--run` with the same name is refused.
    cyclegan("train", "--resume", run, "--epochs", "2")
    assert (run / "samples" / "epoch_002.png").exists()
    refused = cyclegan("train", "--data", data, "--run", run, *SMALL, check=False)
    assert refused.returncode == 1 and "already exists" in refused.stderr


@pytest.mark.parametrize("args,message", [
    (["train", "--data", "{tmp}/missing", "--run", "{tmp}/r"], "does not exist"),
    (["train", "--run", "{tmp}/r"], "--data DIR"),
    (["train", "--resume", "{tmp}/nothing"], "does not exist"),
    (["train", "--data", "{tmp}", "--run", "{tmp}/r", "--crop-size", "30"], "multiple of 4"),
    (["translate", "--run", "{tmp}/nothing", "--direction", "AtoB", "--input", "{tmp}", "--output", "{tmp}/o"],
     "does not exist"),
    (["evaluate", "--run", "{tmp}/nothing", "--data", "{tmp}"], "does not exist"),
])
def test_user_mistakes_are_one_line_errors_without_traceback(tmp_path, capsys, args, message):
    status, _, err = run_main(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert status == 1
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1]


def test_resume_with_a_different_model_is_refused(tmp_path, capsys, shapes_dir):
    run = tmp_path / "run"
    assert run_main(capsys, "train", "--data", shapes_dir, "--run", run, *SMALL, "--eval-every", "0")[0] == 0
    status, _, err = run_main(capsys, "train", "--resume", run, "--ngf", "16")
    assert status == 1 and "cannot resume with a different ngf" in err


def test_package_entry_point_is_installed():
    script = Path(sys.executable).parent / "cyclegan"
    assert script.exists(), "pip install -e . should have installed the `cyclegan` console script"
    assert subprocess.run([script, "--help"], capture_output=True).returncode == 0


def test_quiet_works_before_and_after_the_subcommand(tmp_path, shapes_dir):
    from conftest import write_random_run

    run = write_random_run(tmp_path / "run")  # -q is about logging, not about what was trained
    loud = cyclegan("translate", "--run", run, "--direction", "AtoB", "--input", shapes_dir / "testA",
                    "--output", tmp_path / "loud")
    assert "INFO" in loud.stderr or "translated" in loud.stdout
    for where, out in (("after", ["translate", "-q"]), ("before", ["-q", "translate"])):
        args = [*out, "--run", run, "--direction", "AtoB", "--input", shapes_dir / "testA",
                "--output", tmp_path / where]
        result = cyclegan(*args)
        assert "INFO" not in result.stderr, (where, result.stderr)
        assert len(list((tmp_path / where).glob("*.png"))) == 4


def test_help_and_light_commands_do_not_import_gradio():
    # Gradio takes seconds to import: only `cyclegan app` may load it
    code = ("import sys\nfrom cyclegan.cli import main\n"
            "for argv in (['--help'], ['translate', '--help'], ['app', '--help'], ['download', 'list']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('GRADIO', 'gradio' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "GRADIO False" in result.stdout


@pytest.mark.parametrize("argv,message", [
    ([], "required: COMMAND"),
    (["translate", "--run", "r", "--direction", "sideways", "--input", "i", "--output", "o"], "invalid choice"),
    (["train", "--crop-size", "big"], "invalid int value"),
    (["translate", "--run", "r", "--direction", "AtoB", "--input", "i", "--output", "o", "--max-pixels", "2k"],
     "WxH"),
    (["download"], "required: WHAT"),
    (["nonsense"], "invalid choice"),
])
def test_argument_mistakes_are_one_error_line_and_status_1(capsys, argv, message):
    from cyclegan.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "--help" in lines[0]


@pytest.mark.parametrize("value,pixels", [("4194304", 4194304), ("2048x2048", 4194304), ("1024X768", 786432),
                                          ("1000×1000", 10**6)])
def test_max_pixels_takes_a_count_or_a_size(value, pixels):
    from cyclegan.cli import build_parser

    args = build_parser().parse_args(["translate", "--run", "r", "--direction", "AtoB", "--input", "i",
                                      "--output", "o", "--max-pixels", value])
    assert args.max_pixels == pixels


@pytest.mark.parametrize("flags,amp", [(["--amp"], "on"), (["--amp", "auto"], "auto"), (["--amp", "off"], "off"),
                                       (["--no-amp"], "off"), (["--amp", "--epochs", "3"], "on")])
def test_amp_takes_off_auto_on_and_the_old_flags(flags, amp):
    from cyclegan.cli import build_parser

    args = build_parser().parse_args(["train", "--run", "r", *flags])
    assert args.amp == amp


def test_evaluate_of_a_run_without_data_folders_asks_for_data(tmp_path, capsys, monkeypatch):
    # an imported official run records no training folders: `.` must not become the held-out images
    from conftest import write_random_run

    run = write_random_run(tmp_path / "imported")
    monkeypatch.chdir(tmp_path)
    status, _, err = run_main(capsys, "evaluate", "--run", run, "--device", "cpu")
    assert status == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--data" in lines[0]


HEAVY_MODULES = ("torch", "torchvision", "gradio")


def test_the_parser_and_every_help_need_no_torch():
    """`cyclegan --help` and every `COMMAND --help` answer at once: building the parser and printing
    each help imports none of torch, torchvision or gradio (each command imports them when it runs).
    Checked in a fresh interpreter through sys.modules, so it is deterministic rather than timed."""
    script = f"""
import sys
from cyclegan.cli import build_parser
parser = build_parser()
seen = [parser]
while seen:
    p = seen.pop()
    p.format_help()
    for action in p._actions:
        if getattr(action, "choices", None) and isinstance(action.choices, dict):
            seen.extend(action.choices.values())
print(" ".join(m for m in {HEAVY_MODULES!r} if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"the parser imported {result.stdout.strip()}"
