"""Finding, validating and converting images: every kind of bad input gets a clear answer."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.config import PREPROCESS
from cyclegan.data.dataset import PREPROCESSORS, ImageCache, UnpairedDataset, augment, crop_params
from cyclegan.data.folders import find_images
from cyclegan.images import load_image, to_rgb
from cyclegan.errors import DataError


def _png(path, size=(40, 30), colour=(200, 30, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, format="PNG")
    return path


def _jpeg_bytes(size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        find_images(tmp_path / "nope", label="domain A folder")


def test_a_file_instead_of_a_folder(tmp_path):
    path = _png(tmp_path / "one.png")
    with pytest.raises(DataError, match="is not a folder"):
        find_images(path)


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="is empty"):
        find_images(tmp_path)


def test_folder_with_no_decodable_image(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.jpg").write_text("this is text")
    with pytest.raises(DataError, match="no readable image among its 2 file"):
        find_images(tmp_path)


def test_bad_files_are_skipped_with_a_warning_that_counts_and_names_them(tmp_path, caplog):
    good = [_png(tmp_path / f"good{i}.png") for i in range(2)]
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not a jpeg")
    (tmp_path / "truncated.jpg").write_bytes(_jpeg_bytes()[:300])
    with caplog.at_level(logging.WARNING):
        found = find_images(tmp_path, label="domain A folder")
    assert found == good
    message = caplog.text
    assert "skipped 3 unreadable file(s)" in message
    assert "empty.png" in message and "text.jpg" in message and "truncated.jpg" in message


def test_strict_makes_a_bad_file_an_error_naming_it(tmp_path):
    _png(tmp_path / "good.png")
    (tmp_path / "truncated.jpg").write_bytes(_jpeg_bytes()[:300])
    with pytest.raises(DataError, match="truncated.jpg"):
        find_images(tmp_path, strict=True)


def test_images_are_found_recursively_by_content_not_extension(tmp_path):
    a = _png(tmp_path / "sub" / "deeper" / "photo.data")
    b = _png(tmp_path / "top.PNG")
    _png(tmp_path / ".hidden" / "skip.png")
    assert sorted(find_images(tmp_path)) == sorted([a, b])


@pytest.mark.parametrize("side", [40, 200])  # over the limit (Pillow only warns), over twice it (Pillow raises)
def test_decompression_bomb_is_an_error_naming_the_file(tmp_path, monkeypatch, side):
    _png(tmp_path / "huge.png", size=(side, side))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match="huge.png is too large"):
        find_images(tmp_path)


def test_load_image_error_names_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"")
    with pytest.raises(DataError, match="bad.png"):
        load_image(tmp_path / "bad.png")


@pytest.mark.parametrize("mode,colour", [("L", 128), ("P", 3), ("CMYK", (0, 255, 255, 0)), ("I;16", 65535),
                                         ("I", 40000), ("F", 0.5)])
def test_every_mode_becomes_rgb(mode, colour):
    rgb = to_rgb(Image.new(mode, (5, 4), colour))
    assert rgb.mode == "RGB" and rgb.size == (5, 4)


def test_sixteen_bit_is_scaled_not_clipped():
    white = to_rgb(Image.new("I;16", (2, 2), 65535))
    mid = to_rgb(Image.new("I;16", (2, 2), 32768))
    assert white.getpixel((0, 0)) == (255, 255, 255)
    assert mid.getpixel((0, 0))[0] in (127, 128)


def test_transparency_is_composited_on_white():
    clear = Image.new("RGBA", (3, 3), (255, 0, 0, 0))
    half = Image.new("LA", (3, 3), (0, 128))
    assert to_rgb(clear).getpixel((1, 1)) == (255, 255, 255)
    assert to_rgb(half).getpixel((1, 1))[0] in (127, 128)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def test_a_small_image_is_upscaled_to_the_crop():
    tiny = Image.new("RGB", (7, 5), (10, 200, 10))
    out = augment(tiny, load_size=36, crop_size=32, flip=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 32, 32)
    assert out.min() >= -1 and out.max() <= 1


def test_dataset_items_are_a_pure_function_of_seed_epoch_and_index(shapes_dir):
    a, b = find_images(shapes_dir / "trainA"), find_images(shapes_dir / "trainB")[:5]
    one = UnpairedDataset(a, b, load_size=36, crop_size=32, flip=True, seed=3)
    two = UnpairedDataset(a, b, load_size=36, crop_size=32, flip=True, seed=3)
    assert len(one) == max(len(a), len(b))
    one.set_epoch(2)
    two.set_epoch(2)
    for i in (0, 7, 11):  # past the end of B: B indices wrap around
        assert all(torch.equal(x, y) for x, y in zip(one[i], two[i]))
    two.set_epoch(3)
    assert not torch.equal(one[0][0], two[0][0]) or not torch.equal(one[1][0], two[1][0])


def test_a_symlink_loop_does_not_hang_the_scan(tmp_path):
    good = _png(tmp_path / "sub" / "a.png")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert find_images(tmp_path) == [good]


def _noise(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(width * 1000 + height)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def test_every_preprocess_choice_is_in_the_config_and_the_dataset():
    assert set(PREPROCESSORS) == set(PREPROCESS)


@pytest.mark.parametrize("preprocess", PREPROCESS)
@pytest.mark.parametrize("size", [(90, 40), (40, 90), (20, 12)])  # wide, tall, smaller than the crop
def test_every_preprocess_gives_a_crop_size_square_from_a_non_square_image(preprocess, size):
    out = augment(_noise(*size), load_size=36, crop_size=32, flip=True,
                  generator=torch.Generator().manual_seed(0), preprocess=preprocess)
    assert out.shape == (3, 32, 32)
    assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("preprocess, expected", [
    ("resize_and_crop", (36, 36)),  # squashed to a square, as published
    ("scale_width_and_crop", (36, 32)),  # width 36; its height, 14 with the aspect kept, raised to the crop
    ("scale_shortside_and_crop", (90, 36)),  # aspect kept: 160x64 -> 90x36
    ("crop", (160, 64)),  # the image's own resolution
])
def test_what_each_preprocess_scales_a_wide_image_to(preprocess, expected):
    assert PREPROCESSORS[preprocess](_noise(160, 64), 36, 32).size == expected


def test_crop_alone_scales_up_only_an_image_smaller_than_the_crop():
    assert PREPROCESSORS["crop"](_noise(20, 40), 36, 32).size == (32, 64)


def test_the_default_preprocess_is_the_published_square_resize_then_crop():
    img = _noise(90, 40)
    out = augment(img, load_size=36, crop_size=32, flip=False, generator=torch.Generator().manual_seed(5))
    square = img.resize((36, 36), Image.BICUBIC)
    top, left, _ = crop_params(36, 36, 32, False, torch.Generator().manual_seed(5))
    expected = torch.from_numpy(np.array(square.crop((left, top, left + 32, top + 32)))).permute(2, 0, 1)
    assert torch.equal(((out + 1) * 127.5).round().to(torch.uint8), expected)


def test_a_dataset_with_another_preprocess_is_not_cached(shapes_dir, caplog):
    a, b = find_images(shapes_dir / "trainA"), find_images(shapes_dir / "trainB")
    dataset = UnpairedDataset(a, b, load_size=36, crop_size=32, flip=True, preprocess="crop")
    with caplog.at_level(logging.WARNING):
        assert ImageCache.build(dataset, torch.device("cpu")) is None
    assert "preprocess" in caplog.text
    assert dataset[0][0].shape == (3, 32, 32)
