"""Domains with different channel counts (official input_nc/output_nc): grayscale sketches or
thermal images on one side, colour photos on the other, through data, networks, training,
translation, evaluation, export and the app's run catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from cyclegan.app.catalog import inspect_run
from cyclegan.cli import main
from cyclegan.train.loop import train
from cyclegan.translate.translator import Translator

from conftest import small_config


@pytest.fixture(scope="module")
def gray_to_colour(tmp_path_factory, shapes_dir) -> tuple[Path, Path]:
    """(dataset, trained run): domain A the shapes in grayscale, domain B in colour; one short epoch."""
    root = tmp_path_factory.mktemp("channels")
    data = root / "data"
    for split in ("trainA", "testA"):
        (data / split).mkdir(parents=True)
        for path in sorted((shapes_dir / split).glob("*.png")):
            Image.open(path).convert("L").save(data / split / path.name)
    for split in ("trainB", "testB"):
        (data / split).symlink_to(shapes_dir / split)
    config = small_config(data, epochs=1, epochs_decay=0, lambda_identity=0.0)
    config.model.channels_a = 1
    return data, train(config, root / "run")


def test_a_grayscale_to_colour_run_trains_and_translates_both_ways(gray_to_colour, tmp_path):
    data, run = gray_to_colour
    translator = Translator.from_run(run, device="cpu")
    assert translator.generator("AtoB").model[1].in_channels == 1
    assert translator.generator("BtoA").model[-2].out_channels == 1
    gray = Image.open(next((data / "testA").glob("*.png")))
    assert gray.mode == "L"
    assert translator(gray, "AtoB").mode == "RGB"
    colour = Image.open(next((data / "testB").glob("*.png")))
    assert translator(colour, "BtoA").mode == "L"
    # any input mode is converted to the direction's source channels
    assert translator(colour, "AtoB").mode == "RGB" and translator(gray, "BtoA").mode == "L"
    assert translator(torch.zeros(1, 32, 32), "AtoB").shape == (3, 32, 32)
    for direction, folder, mode in (("AtoB", "testA", "RGB"), ("BtoA", "testB", "L")):
        out = tmp_path / direction
        assert main(["translate", "--run", str(run), "--direction", direction, "--input", str(data / folder),
                     "--output", str(out), "-q"]) == 0
        assert {Image.open(p).mode for p in out.glob("*.png")} == {mode}
    assert (run / "samples" / "epoch_001.png").exists()


def test_both_directions_on_one_folder_is_refused_when_channels_differ(gray_to_colour, tmp_path, capsys):
    data, run = gray_to_colour
    assert main(["translate", "--run", str(run), "--direction", "both", "--input", str(data / "testA"),
                 "--output", str(tmp_path / "out")]) == 1
    assert "different channel counts" in capsys.readouterr().err


def test_evaluate_export_and_the_app_catalog_handle_mixed_channels(gray_to_colour, tmp_path, capsys):
    data, run = gray_to_colour
    assert main(["evaluate", "--run", str(run), "--data", str(data)]) == 0
    table = capsys.readouterr().out
    assert "AtoB" in table and "BtoA" in table
    assert main(["export", "--run", str(run), "--direction", "AtoB", "--out", str(tmp_path / "g.pt")]) == 0
    scripted = torch.jit.load(str(tmp_path / "g.pt"))
    assert scripted(torch.zeros(1, 1, 33, 35)).shape == (1, 3, 33, 35)
    assert inspect_run(run).usable


def test_channels_flag_sets_both_domains_and_is_no_traceback(tmp_path, shapes_dir, capsys):
    args = ["train", "--data", str(shapes_dir), "--run", str(tmp_path / "r"), "--channels", "1", "--ngf", "8",
            "--ndf", "8", "--n-blocks", "1", "--n-layers-d", "2", "--load-size", "36", "--crop-size", "32",
            "--epochs", "1", "--epochs-decay", "0", "--device", "cpu", "--eval-every", "0", "-q"]
    assert main(args) == 0
    config = Translator.from_run(tmp_path / "r", device="cpu").config
    assert (config.model.channels_a, config.model.channels_b) == (1, 1)
    assert main(["train", "--data", str(shapes_dir), "--run", str(tmp_path / "bad"), "--channels", "2"]) == 1
    assert "must be 1 (grayscale) or 3 (RGB), got 2" in capsys.readouterr().err
