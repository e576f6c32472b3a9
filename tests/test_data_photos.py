"""The real-photo benchmark dataset (``make-dataset --kind photos``): layout, ground truth, splits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("skimage", reason="the photos dataset needs the bench extra (scikit-image)")

from cyclegan.cli import main  # noqa: E402
from cyclegan.data.photos import load_photos, make_photos_dataset, painterly, region  # noqa: E402
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
