"""The embedded dataset: deterministic, paired ground truth, and not solvable by recolouring."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cyclegan.errors import DataError
from cyclegan.data.synthetic import (BACKGROUND_A, OUTLINE_A, PALETTE_A, PALETTE_B, Shape, affine_colour_baseline,
                                colour_map_baseline, make_dataset, random_scene, render)


def _arrays(folder):
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]


def test_layout_counts_and_ground_truth_pairing(shapes_dir):
    for split, count in (("trainA", 12), ("trainB", 12), ("testA", 4), ("testB", 4), ("gt/AtoB", 4), ("gt/BtoA", 4)):
        assert len(list((shapes_dir / split).glob("*.png"))) == count
    assert sorted(p.name for p in (shapes_dir / "testA").iterdir()) == sorted(
        p.name for p in (shapes_dir / "gt" / "AtoB").iterdir())


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    one = make_dataset(tmp_path / "one", n_train=3, n_test=2, size=32, seed=4)
    two = make_dataset(tmp_path / "two", n_train=3, n_test=2, size=32, seed=4)
    other = make_dataset(tmp_path / "other", n_train=3, n_test=2, size=32, seed=5)
    for path in one.rglob("*.png"):
        assert path.read_bytes() == (two / path.relative_to(one)).read_bytes()
    assert (one / "trainA" / "00000.png").read_bytes() != (other / "trainA" / "00000.png").read_bytes()


def test_domains_are_unpaired(shapes_dir):
    a, b = _arrays(shapes_dir / "trainA"), _arrays(shapes_dir / "trainB")
    # A training scene redrawn in style B is not in trainB (different scenes, not two views of one).
    assert not any(np.array_equal(x, y) for x in a for y in b)


def test_round_trip_of_the_ground_truth_is_exact():
    rng = np.random.default_rng(0)
    for _ in range(5):
        shapes = random_scene(rng, 64)
        a, b = render(shapes, 64, "A"), render(shapes, 64, "B")
        assert a.size == b.size == (64, 64)
        assert np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() > 10  # the styles differ


def test_styles_differ_in_colour_and_in_structure_at_the_edges():
    shape = Shape("square", 32, 32, 12, colour=0)
    a = np.asarray(render([shape], 64, "A"))
    b = np.asarray(render([shape], 64, "B"))
    assert tuple(a[32, 32]) == tuple(PALETTE_A[0].astype(int))  # fill
    assert tuple(b[32, 32]) == tuple(PALETTE_B[0].astype(int))
    edge = 22  # first column inside the square: pixel centres 22.5 .. 41.5 lie within 9.6 of 32
    assert tuple(a[32, edge]) == tuple(OUTLINE_A.astype(int))  # A: black outline inside the edge
    assert tuple(b[32, edge]) == tuple(PALETTE_B[0].astype(int))
    assert tuple(a[32, edge - 1]) == tuple(BACKGROUND_A.astype(int))
    assert b[32, edge - 1].sum() < 0.6 * b[5, 5].sum()  # B: dark halo just outside the edge


def test_true_colours_are_the_nearest_so_identity_loss_favours_them():
    distances = np.abs(PALETTE_A[:, None, :] - PALETTE_B[None, :, :]).sum(-1)
    assert list(distances.argmin(1)) == [0, 1, 2]


def test_neither_identity_nor_a_global_colour_transform_solves_it(tmp_path):
    data = make_dataset(tmp_path / "shapes", n_train=1, n_test=30, size=64)  # the demo's image size
    for source, truth in (("testA", "gt/AtoB"), ("testB", "gt/BtoA")):
        xs, ys = _arrays(data / source), _arrays(data / truth)
        identity = float(np.mean([np.abs(x / 255.0 - y / 255.0).mean() for x, y in zip(xs, ys)]))
        # The best affine colour map, fitted on the answers, stays above the demo's bar of half the identity.
        assert affine_colour_baseline(xs, ys) > 0.5 * identity
    # Even a free per-colour lookup table, the ceiling of global colour maps, misses most of A->B.
    xs, ys = _arrays(data / "testA"), _arrays(data / "gt" / "AtoB")
    identity = float(np.mean([np.abs(x / 255.0 - y / 255.0).mean() for x, y in zip(xs, ys)]))
    assert colour_map_baseline(xs, ys) > 0.4 * identity


def test_refuses_to_overwrite_and_rejects_bad_sizes(tmp_path):
    make_dataset(tmp_path / "d", n_train=1, n_test=0, size=32)
    with pytest.raises(DataError, match="--overwrite"):
        make_dataset(tmp_path / "d", n_train=1, n_test=0, size=32)
    make_dataset(tmp_path / "d", n_train=2, n_test=0, size=32, overwrite=True)
    assert len(list((tmp_path / "d" / "trainA").iterdir())) == 2
    with pytest.raises(DataError, match="size"):
        make_dataset(tmp_path / "e", size=8)


def test_an_interrupted_build_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    """`make demo` treats an existing datasets/shapes as done: a build cut off half-way must leave no
    such folder, and the next build must succeed and clear what the interrupted one left."""
    from cyclegan.data import synthetic

    calls = {"n": 0}
    real_render = synthetic.render

    def render_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 10:
            raise KeyboardInterrupt
        return real_render(*args, **kwargs)

    out = tmp_path / "shapes"
    monkeypatch.setattr(synthetic, "render", render_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        make_dataset(out, n_train=8, n_test=2, size=32)
    assert not out.exists()
    monkeypatch.setattr(synthetic, "render", real_render)
    make_dataset(out, n_train=8, n_test=2, size=32)
    assert len(list((out / "trainA").iterdir())) == 8
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]  # the interrupted build's folder is gone


def test_an_existing_dataset_is_replaced_only_with_overwrite(tmp_path):
    out = make_dataset(tmp_path / "shapes", n_train=2, n_test=1, size=32)
    with pytest.raises(DataError, match="--overwrite"):
        make_dataset(out, n_train=3, n_test=1, size=32)
    assert len(list((out / "trainA").iterdir())) == 2
    make_dataset(out, n_train=3, n_test=1, size=32, overwrite=True)
    assert len(list((out / "trainA").iterdir())) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]
