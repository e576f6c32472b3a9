"""Translator and `cyclegan translate`: any size, any format, both ways, batches, tiles, bad input."""

from __future__ import annotations

import io
import itertools
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_random_run
from PIL import Image, ImageOps

from cyclegan import runfolder as ckpt
from cyclegan.translate import tiling
from cyclegan.cli import main
from cyclegan.config import Config, ModelConfig
from cyclegan.errors import CheckpointError, ConfigError, DataError
from cyclegan.models.generators import build_generator
from cyclegan.images import read_picture
from cyclegan.translate.translator import Translator


def _photo(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A smooth colour image with some texture, like a downscaled photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([128 + 100 * np.sin(xx / 9 + seed), 128 + 100 * np.cos(yy / 7), (xx + yy) % 256], axis=-1)
    rgb += rng.normal(0, 8, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).convert(mode)


def _smooth(height: int, width: int) -> torch.Tensor:
    """(3, H, W) in [-1, 1] with only low frequencies, the content a thumbnail keeps."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    return 0.9 * torch.stack([torch.sin(6 * xx + 2 * yy), torch.cos(5 * yy - xx), 2 * xx * yy - 1]).clamp(-1, 1)


@pytest.fixture
def translator(random_run) -> Translator:
    return Translator.from_run(random_run, device="cpu")


def _generators(seed: int = 0, **model) -> tuple[Config, dict]:
    config = Config(model=ModelConfig(**{"ngf": 8, "n_blocks": 1, **model}))
    torch.manual_seed(seed)
    return config, {"G_AB": build_generator(config.model), "G_BA": build_generator(config.model)}


# --------------------------------------------------------------------------- the Python API

def test_call_accepts_pil_path_and_tensor_and_keeps_odd_sizes(translator, tmp_path):
    image = _photo(45, 37)
    image.save(tmp_path / "x.png")
    from_pil = translator(image, "AtoB")
    from_path = translator(tmp_path / "x.png", "AtoB")
    from_tensor = translator(torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1, "AtoB")
    assert from_pil.size == from_path.size == (45, 37)
    assert from_tensor.shape == (3, 37, 45)
    assert np.array_equal(np.array(from_pil), np.array(from_path))
    as_pixels = ((from_tensor.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    assert np.abs(as_pixels - np.array(from_pil)).max() <= 1
    assert not np.array_equal(np.array(from_pil), np.array(image))  # it did translate


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (7, 2), (9, 13)])
def test_tiny_images_translate_to_their_own_size(translator, size):
    out = translator(Image.new("RGB", size, (200, 30, 90)), "BtoA")
    assert out.size == size


def test_alpha_is_carried_through_unchanged(translator):
    image = _photo(30, 20, mode="RGBA")
    alpha = np.random.default_rng(1).integers(0, 256, (20, 30), dtype=np.uint8)
    image.putalpha(Image.fromarray(alpha))
    out = translator(image, "AtoB")
    assert out.mode == "RGBA"
    assert np.array_equal(np.array(out.getchannel("A")), alpha)


def test_a_one_direction_run_says_which_direction_it_lacks(random_run, tmp_path):
    (random_run / "G_BA.safetensors").unlink()
    translator = Translator.from_run(random_run, device="cpu")
    assert translator.directions == ("AtoB",)
    assert translator(_photo(16, 16), "AtoB").size == (16, 16)
    with pytest.raises(CheckpointError, match="no G_BA generator.*cannot translate BtoA"):
        translator(_photo(16, 16), "BtoA")


def test_run_without_generators_is_a_clear_error(random_run):
    for name in ckpt.GENERATORS:
        ckpt.generator_path(random_run, name).unlink()
    with pytest.raises(CheckpointError, match="has no generator weights"):
        Translator.from_run(random_run, device="cpu")
    with pytest.raises(CheckpointError, match="no best weights"):
        Translator.from_run(random_run, device="cpu", best=True)


def test_config_that_does_not_match_the_weights_is_a_clear_error(random_run):
    config = ckpt.load_config(random_run)
    config.model.ngf = 16
    ckpt.write_config(random_run, config)
    with pytest.raises(CheckpointError, match=r"G_AB\.safetensors does not match the network in config.json: "
                                              r".*shape mismatches model\.1\.weight"):
        Translator.from_run(random_run, device="cpu")


def test_bf16_autocast_stays_close_to_float32(random_run):
    image = _smooth(40, 52)[None]
    full = Translator.from_run(random_run, device="cpu").translate_tensor(image, "AtoB")
    half = Translator.from_run(random_run, device="cpu", bf16=True).translate_tensor(image, "AtoB")
    assert half.dtype == torch.float32
    assert 0 < (half - full).abs().mean() < 0.05


def test_bf16_on_a_cpu_without_native_bf16_warns_that_it_is_slower(random_run, monkeypatch, caplog):
    monkeypatch.setenv("CYCLEGAN_CPU_BF16", "0")
    with caplog.at_level(logging.WARNING):
        Translator.from_run(random_run, device="cpu", bf16=True)
    assert "no native bf16" in caplog.text and "slower than fp32" in caplog.text
    caplog.clear()
    monkeypatch.setenv("CYCLEGAN_CPU_BF16", "1")
    with caplog.at_level(logging.WARNING):
        Translator.from_run(random_run, device="cpu", bf16=True)
    assert "bf16" not in caplog.text


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_on_cuda_matches_cpu(random_run):
    image = _smooth(64, 80)[None]
    cpu = Translator.from_run(random_run, device="cpu").translate_tensor(image, "AtoB")
    cuda = Translator.from_run(random_run, device="cuda", bf16=True).translate_tensor(image, "AtoB")
    assert (cuda - cpu).abs().mean() < 0.05


# --------------------------------------------------------------------------- tiling

def test_tile_spans_cover_with_aligned_overlapping_tiles():
    for length in (130, 131, 500, 1001, 4000):
        spans = tiling.tile_spans(length, 132, 64)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(start % 4 == 0 for start, _ in spans)
        assert all(prev_end - start >= 64 for (_, prev_end), (start, _) in itertools.pairwise(spans))
        assert all(end - start <= 132 + 3 for start, end in spans)


def test_blend_weights_cross_fade_to_one_in_the_overlap():
    margin = 24
    overlap = tiling.overlap_for(margin)
    left, right = (0, 132), (132 - overlap, 264 - overlap)
    length = right[1]
    w_left = tiling.blend_weights(*left, length, margin)
    w_right = tiling.blend_weights(*right, length, margin)
    shared = slice(right[0], left[1])
    total = w_left[shared.start - left[0]:] + w_right[:shared.stop - right[0]]
    assert torch.allclose(total, torch.ones_like(total))
    assert w_left[-margin:].max() == 0 and w_right[:margin].max() == 0  # where tile-edge padding reaches
    assert w_left[0] == 1 and w_right[-1] == 1  # image borders keep full weight


@pytest.mark.parametrize("n_blocks, generator", [(1, "resnet"), (2, "resnet"), (2, "resnet_aa")])
def test_tiles_with_shared_statistics_equal_the_whole_image_pass(n_blocks, generator):
    """resnet_aa: CUT's generator, whose blurs widen what a pixel sees (its receptive_radius says by how much)."""
    config, generators = _generators(n_blocks=n_blocks, generator=generator)
    translator = Translator(config, generators, torch.device("cpu"))
    net, image = generators["G_AB"], _smooth(147, 229) + 0.1 * torch.randn(3, 147, 229)
    with torch.inference_mode():
        stats = tiling.instance_norm_stats(net, translator._forward, image[None])
        whole = translator._forward(tiling.with_fixed_stats(net, stats), image[None])[0]
        tile = 2 * tiling.overlap_for(translator.margin) + 4
        tiled = tiling.translate_tiled(
            tiling.with_fixed_stats(net, stats), translator._forward, image, tile=tile, margin=translator.margin,
            out_channels=3, to_input=lambda crop: crop[None], to_output=lambda rows: rows, out_dtype=torch.float32)
    assert len(tiling.tile_spans(229, tile, tiling.overlap_for(translator.margin))) >= 2
    assert (tiled.permute(2, 0, 1) - whole).abs().max() <= 1e-4
    # and the recorded statistics are the network's own: the fixed-stats pass is the ordinary pass
    assert (whole - translator.translate_tensor(image[None], "AtoB")[0]).abs().max() <= 1e-4


def _column_steps(image: torch.Tensor) -> torch.Tensor:
    return (image[:, :, 1:] - image[:, :, :-1]).abs().amax(dim=(0, 1))


def test_tiled_translation_matches_whole_image_and_shows_no_seam():
    config, generators = _generators(seed=3)
    height, width = 203, 297
    image = _smooth(height, width)[None]
    whole = Translator(config, generators, torch.device("cpu")).translate_tensor(image, "AtoB")[0]
    tiled_translator = Translator(config, generators, torch.device("cpu"), max_pixels=height * width // 3,
                                  tile_size=132)
    tiled = tiled_translator.translate_tensor(image, "AtoB")[0]
    assert tiled.shape == whole.shape
    inner = (slice(None), slice(16, -16), slice(16, -16))
    assert (tiled - whole)[inner].abs().mean() < 0.04
    # Naive tiling (each tile on its own, with its own instance-norm statistics) shows steps at the
    # tile edges that the whole image does not have; the blended tiles do not.
    naive = torch.zeros_like(whole)
    whole_translator = Translator(config, generators, torch.device("cpu"))
    for y0, y1 in tiling.tile_spans(height, 132, 0):
        for x0, x1 in tiling.tile_spans(width, 132, 0):
            naive[:, y0:y1, x0:x1] = whole_translator.translate_tensor(image[:, :, y0:y1, x0:x1], "AtoB")[0]
    naive_excess = (_column_steps(naive) - _column_steps(whole)).max()
    tiled_excess = (_column_steps(tiled) - _column_steps(whole)).max()
    assert naive_excess > 0.3
    assert tiled_excess < 0.1


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak memory is read from Linux /proc")
def test_6000x4000_image_is_tiled_on_the_cpu_with_bounded_memory(tmp_path):
    run = write_random_run(tmp_path / "run")
    source = tmp_path / "in" / "big.jpg"
    source.parent.mkdir()
    size = (6000, 4000)
    bands = [Image.linear_gradient("L").resize(size), Image.radial_gradient("L").resize(size),
             Image.linear_gradient("L").rotate(90).resize(size)]
    Image.merge("RGB", bands).save(source, quality=90)
    # In a fresh process, whose peak resident memory (VmHWM) is reset to its current size once the
    # model is loaded, so the peak it reports afterwards is the translation's alone. (ru_maxrss would
    # not do: Linux carries the parent's high-water mark into a forked child.)
    script = textwrap.dedent(f"""
        import json, pathlib, torch
        from cyclegan.translate.translator import Translator
        def status(key):
            line = next(l for l in pathlib.Path("/proc/self/status").read_text().splitlines() if l.startswith(key))
            return int(line.split()[1])
        torch.set_num_threads(1)  # memory is measured, not speed; one thread keeps it quick on a busy CPU
        t = Translator.from_run({str(run)!r}, device="cpu", max_pixels=512 * 512, tile_size=512)
        pathlib.Path("/proc/self/clear_refs").write_text("5")
        before = status("VmRSS:")
        s = t.translate_folder({str(source.parent)!r}, {str(tmp_path / 'out')!r}, "AtoB", image_format="jpg")
        print(json.dumps({{"translated": s.translated, "failed": len(s.failed), "growth_kb": status("VmHWM:") - before}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["translated"] == 1 and result["failed"] == 0
    with Image.open(tmp_path / "out" / "big.jpg") as out:
        assert out.size == (6000, 4000)
    # Decoding and holding the photo and its translation costs at least 2 x 72 MB: the measurement sees it.
    assert result["growth_kb"] > 2 * 6000 * 4000 * 3 // 1024
    # A whole-image pass holds at least one full-resolution float32 feature map of ngf=8 channels
    # (6000*4000*8*4 bytes = 768 MB), several at once in practice; tiling must stay well below one.
    one_feature_map_kb = 6000 * 4000 * 8 * 4 // 1024
    assert result["growth_kb"] < one_feature_map_kb


# --------------------------------------------------------------------------- folders

def _save(image: Image.Image, path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def _formats_folder(root: Path) -> dict[str, Path]:
    """One file per format and colour mode a photo collection holds."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the camera was held sideways
    palette = _photo(24, 18).convert("P")
    indices = np.array(palette)
    indices[:6, :6] = 0  # palette index 0 is the transparent one
    transparent = Image.fromarray(indices, "P")
    transparent.putpalette(palette.getpalette())
    sixteen = Image.fromarray((np.arange(20 * 24).reshape(20, 24) * 130).astype(np.uint16))
    return {
        "jpeg_rotated": _save(_photo(40, 24), root / "a" / "rotated.jpg", exif=exif),
        "png_rgba": _save(_photo(31, 17, mode="RGBA"), root / "a" / "alpha.png"),
        "webp": _save(_photo(26, 22), root / "b" / "web.webp"),
        "bmp": _save(_photo(20, 20), root / "b" / "bitmap.bmp"),
        "tiff": _save(_photo(21, 19), root / "b" / "scan.tif"),
        "gray": _save(_photo(22, 22, mode="L"), root / "gray.png"),
        "palette": _save(transparent, root / "palette.png", transparency=0),
        "cmyk": _save(_photo(18, 26, mode="CMYK"), root / "cmyk.jpg"),
        "16bit": _save(sixteen, root / "deep.png"),
    }


def test_every_format_and_mode_is_translated_at_its_own_size(translator, tmp_path):
    sources = _formats_folder(tmp_path / "in")
    assert Image.open(sources["16bit"]).mode.startswith("I;16")
    summary = translator.translate_folder(tmp_path / "in", tmp_path / "out", "AtoB")
    assert summary.translated == len(sources) and not summary.failed and summary.skipped == 0
    for source in sources.values():
        target = (tmp_path / "out" / source.relative_to(tmp_path / "in")).with_suffix(".png")
        with Image.open(source) as original, Image.open(target) as out:
            assert out.size == ImageOps.exif_transpose(original).size, source
    assert Image.open(tmp_path / "out" / "a" / "rotated.png").size == (24, 40)
    with Image.open(sources["png_rgba"]) as original, Image.open(tmp_path / "out" / "a" / "alpha.png") as out:
        assert np.array_equal(np.array(out.getchannel("A")), np.array(original.getchannel("A")))
    with Image.open(sources["palette"]) as original, Image.open(tmp_path / "out" / "palette.png") as out:
        assert out.mode == "RGBA"
        assert np.array_equal(np.array(out.getchannel("A")), np.where(np.array(original) == 0, 0, 255))


@pytest.mark.parametrize(("image_format", "mode"), [("jpg", "RGB"), ("webp", "RGBA"), ("png", "RGBA")])
def test_output_format_option(translator, tmp_path, image_format, mode):
    image = _photo(30, 20, mode="RGBA")
    alpha = np.tile(np.linspace(0, 255, 30).astype(np.uint8), (20, 1))
    image.putalpha(Image.fromarray(alpha))
    _save(image, tmp_path / "in" / "x.png")
    translator.translate_folder(tmp_path / "in", tmp_path / "out", "AtoB", image_format=image_format)
    with Image.open(tmp_path / "out" / f"x.{image_format}") as out:
        assert out.format == {"jpg": "JPEG", "webp": "WEBP", "png": "PNG"}[image_format]
        assert out.mode == mode and out.size == (30, 20)
        if mode == "RGBA":  # PNG and WebP keep transparency (WebP's alpha plane is lossless)
            assert np.array_equal(np.array(out.getchannel("A")), alpha)


def test_both_directions_with_cycle_mirror_subfolders(translator, tmp_path):
    _save(_photo(20, 16), tmp_path / "in" / "x.png")
    _save(_photo(20, 16, seed=2), tmp_path / "in" / "deep" / "y.jpg")
    summary = translator.translate_folder(tmp_path / "in", tmp_path / "out", "both", cycle=True)
    assert summary.translated == 2
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["AtoB/deep/y.cycle.png", "AtoB/deep/y.png", "AtoB/x.cycle.png", "AtoB/x.png",
                       "BtoA/deep/y.cycle.png", "BtoA/deep/y.png", "BtoA/x.cycle.png", "BtoA/x.png"]
    # the reconstruction is the translation sent back through the other generator
    forward = translator(tmp_path / "in" / "x.png", "AtoB")
    back = translator(forward, "BtoA")
    written = np.array(Image.open(tmp_path / "out/AtoB/x.cycle.png"), dtype=int)
    assert np.abs(np.array(back, dtype=int) - written).mean() < 1  # differs only by rounding the translation


def test_equal_sizes_are_batched_and_batching_does_not_change_results(random_run, tmp_path, monkeypatch):
    for i in range(5):
        _save(_photo(24, 16, seed=i), tmp_path / "in" / f"same{i}.png")
    _save(_photo(30, 18), tmp_path / "in" / "other.png")
    one = Translator.from_run(random_run, device="cpu")
    one.translate_folder(tmp_path / "in", tmp_path / "single", "AtoB", batch_size=1)
    batched = Translator.from_run(random_run, device="cpu")
    sizes: list[int] = []
    original = batched.translate_pixels
    monkeypatch.setattr(batched, "translate_pixels", lambda batch, *a, **k: sizes.append(len(batch)) or
                        original(batch, *a, **k))
    summary = batched.translate_folder(tmp_path / "in", tmp_path / "batched", "AtoB", batch_size=4)
    assert summary.translated == 6
    assert sorted(sizes) == [1, 1, 4]
    # Batched convolutions may round differently (about 1e-6 on some CPUs' oneDNN kernels), which
    # can flip a pixel that sits on a rounding boundary by one level; nothing more may change.
    for path in (tmp_path / "single").glob("*.png"):
        single = np.array(Image.open(path), dtype=int)
        together = np.array(Image.open(tmp_path / "batched" / path.name), dtype=int)
        assert np.abs(single - together).max() <= 1 and (single != together).mean() < 0.01


def test_size_option_sets_the_shorter_side(translator, tmp_path):
    _save(_photo(60, 40), tmp_path / "in" / "wide.png")
    _save(_photo(20, 50), tmp_path / "in" / "tall.png")
    translator.translate_folder(tmp_path / "in", tmp_path / "out", "AtoB", size=32)
    assert Image.open(tmp_path / "out" / "wide.png").size == (48, 32)
    assert Image.open(tmp_path / "out" / "tall.png").size == (32, 80)


def test_bad_files_are_skipped_and_reported_and_the_rest_translated(translator, tmp_path):
    for i in range(3):
        _save(_photo(20, 20, seed=i), tmp_path / "in" / f"good{i}.jpg")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    (tmp_path / "in" / "empty.png").write_bytes(b"")
    buffer = io.BytesIO()
    _photo(64, 64).save(buffer, format="JPEG")
    (tmp_path / "in" / "truncated.jpg").write_bytes(buffer.getvalue()[:600])
    summary = translator.translate_folder(tmp_path / "in", tmp_path / "out", "AtoB")
    assert summary.translated == 3
    reasons = {path.name: reason for path, reason in summary.failed}
    assert set(reasons) == {"notes.txt", "empty.png", "truncated.jpg"}
    assert "not an image" in reasons["notes.txt"] and "empty file" in reasons["empty.png"]
    assert "truncated" in reasons["truncated.jpg"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good0.png", "good1.png", "good2.png"]


def test_existing_outputs_are_skipped_unless_overwrite(translator, tmp_path):
    _save(_photo(20, 20), tmp_path / "in" / "x.png")
    _save(_photo(20, 20, seed=1), tmp_path / "in" / "y.png")
    target = tmp_path / "out" / "x.png"
    target.parent.mkdir()
    target.write_bytes(b"keep me")
    summary = translator.translate_folder(tmp_path / "in", tmp_path / "out", "AtoB")
    assert (summary.translated, summary.skipped) == (1, 1)
    assert target.read_bytes() == b"keep me"
    summary = translator.translate_folder(tmp_path / "in", tmp_path / "out", "AtoB", overwrite=True)
    assert (summary.translated, summary.skipped) == (2, 0)
    assert Image.open(target).size == (20, 20)


def test_output_inside_input_is_never_read_back(translator, tmp_path):
    _save(_photo(20, 20), tmp_path / "in" / "x.png")
    for _ in range(2):
        summary = translator.translate_folder(tmp_path / "in", tmp_path / "in" / "out", "AtoB")
    assert (summary.translated, summary.skipped, summary.failed) == (0, 1, [])
    assert sorted(str(p.relative_to(tmp_path / "in")) for p in (tmp_path / "in").rglob("*.png")) == \
        ["out/x.png", "x.png"]


def test_output_equal_to_input_is_refused(translator, tmp_path):
    _save(_photo(20, 20), tmp_path / "in" / "x.png")
    with pytest.raises(DataError, match="is the input folder"):
        translator.translate_folder(tmp_path / "in", tmp_path / "in", "AtoB")


def test_inputs_that_would_share_an_output_name_both_survive(translator, tmp_path):
    _save(_photo(20, 20), tmp_path / "in" / "x.png")
    _save(_photo(20, 20, seed=1), tmp_path / "in" / "x.jpg")
    assert translator.translate_folder(tmp_path / "in", tmp_path / "out", "AtoB").translated == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.jpg.png", "x.png.png"]


def test_missing_input_and_empty_folder_are_clear_errors(translator, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        translator.translate_folder(tmp_path / "nope", tmp_path / "out", "AtoB")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        translator.translate_folder(tmp_path / "empty", tmp_path / "out", "AtoB")


def test_bad_options_are_clear_errors(translator, tmp_path):
    _save(_photo(20, 20), tmp_path / "in" / "x.png")
    with pytest.raises(ConfigError, match="format"):
        translator.translate_folder(tmp_path / "in", tmp_path / "out", "AtoB", image_format="gif")
    with pytest.raises(ConfigError, match="direction"):
        translator.translate_folder(tmp_path / "in", tmp_path / "out", "sideways")
    with pytest.raises(ConfigError, match="tile size"):
        Translator.from_run(translator.run_dir, device="cpu", tile_size=20)


def test_single_image_input_and_1x1_image(translator, tmp_path):
    source = _save(Image.new("RGB", (1, 1), (10, 200, 30)), tmp_path / "dot.png")
    summary = translator.translate_folder(source, tmp_path / "out", "BtoA")
    assert summary.translated == 1
    assert Image.open(tmp_path / "out" / "dot.png").size == (1, 1)
    assert read_picture(source).pixels.shape == (1, 1, 3)


# --------------------------------------------------------------------------- the command line

def test_cli_summary_and_exit_codes(random_run, tmp_path, capsys, caplog):
    _save(_photo(20, 20), tmp_path / "in" / "good.png")
    (tmp_path / "in" / "bad.png").write_bytes(b"garbage")
    args = ["-q", "translate", "--run", str(random_run), "--direction", "AtoB", "--input", str(tmp_path / "in"),
            "--output", str(tmp_path / "out")]
    assert main(args) == 2  # a failure among successes is reported, not fatal, and said in the status
    out = capsys.readouterr()
    assert "translated 1, skipped (exists) 0, failed 1" in out.out and "images/s" in out.out
    assert "1 file(s) not translated" in out.err
    assert any("bad.png cannot be read (not an image)" in r.getMessage() for r in caplog.records)
    failures = (tmp_path / "out" / "translate_failures.txt").read_text().splitlines()
    assert len(failures) == 1 and failures[0].startswith(str(tmp_path / "in" / "bad.png") + "\t")
    assert main(args) == 2  # a re-run: the good image exists already, the bad file still fails
    assert "translated 0, skipped (exists) 1, failed 1" in capsys.readouterr().out
    assert main(args + ["--overwrite", "--strict"]) == 1
    (tmp_path / "in" / "good.png").unlink()
    assert main(args + ["--overwrite"]) == 1  # nothing could be translated
    capsys.readouterr()
    assert main(args[:-4] + ["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_cli_all_skipped_is_success(random_run, tmp_path, capsys):
    _save(_photo(20, 20), tmp_path / "in" / "x.png")
    args = ["-q", "translate", "--run", str(random_run), "--direction", "both", "--input", str(tmp_path / "in"),
            "--output", str(tmp_path / "out"), "--format", "webp", "--cycle", "--size", "16"]
    assert main(args) == 0
    assert main(args) == 0
    assert "translated 0, skipped (exists) 1, failed 0" in capsys.readouterr().out
    assert Image.open(tmp_path / "out" / "BtoA" / "x.cycle.webp").size == (16, 16)
