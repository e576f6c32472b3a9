"""The real-photo benchmark dataset (``make-dataset --kind photos``): layout, ground truth, splits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("skimage", reason="the photos dataset needs the bench extra (scikit-image)")

from cyclegan.cli import main  # noqa: E402
from cyclegan.data.photos import STYLES, load_photos, make_photos_dataset, painterly, region  # noqa: E402
from cyclegan.data.synthetic import affine_colour_baseline  # noqa: E402
from cyclegan.errors import DataError  # noqa: E402


@pytest.fixture(scope="module")
def photos_dir(tmp_path_factory):
    return make_photos_dataset(tmp_path_factory.mktemp("photos") / "photos", n_train=4, n_test=12, size=64)


def _array(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_layout_and_ground_truth_pairing(photos_dir):
    for split, count in (("trainA", 4), ("trainB", 4), ("testA", 12), ("testB", 12), ("gt/AtoB", 12), ("gt/BtoA", 12)):
        files = sorted((photos_dir / split).glob("*.png"))
        assert len(files) == count and Image.open(files[0]).size == (64, 64)
    for name in ("00000.png", "00007.png"):  # B is the painterly style of A, exactly, both ways
        assert np.array_equal(_array(photos_dir / "gt/AtoB" / name), np.asarray(painterly(Image.open(photos_dir / "testA" / name))))
        assert np.array_equal(_array(photos_dir / "testB" / name), np.asarray(painterly(Image.open(photos_dir / "gt/BtoA" / name))))


def test_same_seed_same_bytes_and_domains_unpaired(tmp_path, photos_dir):
    again = make_photos_dataset(tmp_path / "again", n_train=4, n_test=12, size=64)
    assert (again / "testA/00003.png").read_bytes() == (photos_dir / "testA/00003.png").read_bytes()
    painted_a = np.asarray(painterly(Image.open(photos_dir / "trainA/00000.png")))
    assert not any(np.array_equal(painted_a, _array(p)) for p in (photos_dir / "trainB").glob("*.png"))


def test_training_and_test_crops_come_from_separate_parts_of_each_photo():
    for photo in load_photos().values():
        train, test = region(photo, "train"), region(photo, "test")
        axis = 0 if photo.shape[0] >= photo.shape[1] else 1
        assert train.shape[axis] + test.shape[axis] == photo.shape[axis]
        assert np.array_equal(np.concatenate([train, test], axis=axis), photo)


def test_the_style_is_structural_not_a_colour_shift(photos_dir):
    for source, truth in (("testA", "gt/AtoB"), ("testB", "gt/BtoA")):
        names = sorted(p.name for p in (photos_dir / source).glob("*.png"))
        xs = [_array(photos_dir / source / n) for n in names]
        ys = [_array(photos_dir / truth / n) for n in names]
        identity = float(np.mean([np.abs(x / 255 - y / 255).mean() for x, y in zip(xs, ys)]))
        assert identity > 0.03  # the style changes the image well beyond rounding
        assert affine_colour_baseline(xs, ys) > 0.75 * identity  # the best colour transform barely helps


def test_cli_makes_it_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["make-dataset", "--kind", "photos", "--out", str(out), "--n-train", "2", "--n-test", "1",
                 "--size", "32"]) == 0
    assert "photos dataset" in capsys.readouterr().out and len(list((out / "trainB").glob("*.png"))) == 2
    assert main(["make-dataset", "--kind", "photos", "--out", str(out), "--n-train", "2"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(DataError, match="size"):
        make_photos_dataset(tmp_path / "q", size=1000)


@pytest.mark.parametrize("style", ["grade", "rose", "grain"])
def test_every_style_is_deterministic_changes_the_photo_and_pairs_its_truth(tmp_path, style):
    out = make_photos_dataset(tmp_path / style, n_train=2, n_test=4, size=64, style=style)
    again = make_photos_dataset(tmp_path / "again", n_train=2, n_test=4, size=64, style=style)
    assert (again / "gt/AtoB/00001.png").read_bytes() == (out / "gt/AtoB/00001.png").read_bytes()
    styled = STYLES[style](Image.open(out / "testA/00001.png"))
    assert np.array_equal(np.asarray(styled), _array(out / "gt/AtoB/00001.png"))
    assert np.array_equal(np.asarray(STYLES[style](Image.open(out / "gt/BtoA/00002.png"))), _array(out / "testB/00002.png"))
    moved = [np.abs(_array(out / "gt/AtoB" / n).astype(int) - _array(out / "testA" / n)).mean()
             for n in ("00000.png", "00001.png", "00002.png", "00003.png")]
    assert max(moved) > 2  # the style changes the photo (mean over pixels, 0-255)


def test_the_hue_selective_style_keeps_blue_and_grey_and_turns_orange():
    pixels = np.array([[[40, 60, 160], [128, 128, 128], [230, 120, 30]]], dtype=np.uint8)  # blue, grey, orange
    out = np.asarray(STYLES["rose"](Image.fromarray(pixels))).astype(int)
    assert np.abs(out[0, :2] - pixels[0, :2]).max() <= 3  # kept (up to HSV rounding)
    assert out[0, 2, 2] > pixels[0, 2, 2] + 25 and out[0, 2, 1] < pixels[0, 2, 1] - 60  # orange towards rose


def test_make_dataset_takes_a_style_and_refuses_an_unknown_one(tmp_path, capsys):
    assert main(["make-dataset", "--kind", "photos", "--style", "grade", "--out", str(tmp_path / "g"),
                 "--n-train", "1", "--n-test", "1", "--size", "64"]) == 0
    assert np.array_equal(_array(tmp_path / "g/gt/AtoB/00000.png"),
                          np.asarray(STYLES["grade"](Image.open(tmp_path / "g/testA/00000.png"))))
    with pytest.raises(DataError, match="unknown photo style 'sepia'"):
        make_photos_dataset(tmp_path / "x", style="sepia")
    assert main(["make-dataset", "--style", "grade", "--out", str(tmp_path / "s")]) == 1
    assert "--style is for --kind photos" in capsys.readouterr().err
