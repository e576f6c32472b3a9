"""Video in, video out: `cyclegan translate` on clips (frames, rate, size, audio, no overwrite, atomic
writes, bad clips, the missing extra), shared instance-norm statistics, and the app's video upload.

Clips are made here with PyAV directly (not with the code under test): a slow pan over a synthetic
scene, with a sine tone as audio. Networks have random weights, which is enough for everything but
the size of the flicker reduction: that needs a trained run and is measured in benchmarks/flicker.py.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_random_run

from cyclegan.cli import main
from cyclegan.data.synthetic import pan_frames
from cyclegan.errors import ConfigError, DataError
from cyclegan.translate import tiling
from cyclegan.translate.translator import Translator
from cyclegan.translate.video import mean_frame_change, sample_indices, translate_video
from cyclegan.video import probe, read_frames

av = pytest.importorskip("av", reason="needs the video extra: pip install 'cyclegan[video]'")

FPS = Fraction(30000, 1001)  # NTSC's 29.97: a rate that is not a whole number must survive exactly
SAMPLE_RATE = 16000


def make_clip(path: Path, frames: np.ndarray, audio: bool = True) -> Path:
    """Frames (N, H, W, 3) uint8 as an H.264 mp4 at FPS, with a 440 Hz tone as long as the clip."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("h264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        sound = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if audio else None
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound is not None:
            seconds = len(frames) / FPS
            t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
            tone = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                              format="flt", layout="mono")
            tone.sample_rate, tone.pts = SAMPLE_RATE, 0
            out.mux(sound.encode(tone))
            out.mux(sound.encode(None))
    return path


def audio_packets(path: Path) -> list[tuple[float, bytes]]:
    with av.open(str(path)) as container:
        return [(float(p.pts * p.time_base), bytes(p)) for p in container.demux(container.streams.audio[0]) if p.size]


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [frame.time for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "pan.mp4", pan_frames(24, size=64))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return write_random_run(tmp_path_factory.mktemp("video") / "run")


@pytest.fixture(scope="module")
def translator(run) -> Translator:
    return Translator.from_run(run, device="cpu")


# ------------------------------------------------------------------------ the command line

def test_a_clip_keeps_its_frames_rate_size_and_sound(run, clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["translate", "--run", str(run), "--direction", "AtoB", "--input", str(clip), "--output", str(out),
                 "--device", "cpu", "-q"]) == 0
    assert "translated 1, skipped (exists) 0, failed 0" in capsys.readouterr().out
    before, after = probe(clip), probe(out)
    assert (after.frames, after.fps, after.width, after.height) == (24, FPS, 64, 64)
    assert before.audio == after.audio == "aac"
    assert audio_packets(out) == audio_packets(clip)  # copied, not re-encoded, at the same times
    assert frame_times(out) == pytest.approx(frame_times(clip), abs=1e-3)
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    frames = list(read_frames(out))
    assert len(frames) == 24 and frames[0].shape == (64, 64, 3)
    assert not np.allclose(frames[0].numpy(), next(read_frames(clip)).numpy(), atol=20)  # it did translate


def test_an_existing_output_is_kept_unless_overwrite_and_no_temporary_file_is_left(run, clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier result")
    args = ["translate", "--run", str(run), "--direction", "BtoA", "--input", str(clip), "--output", str(out),
            "--device", "cpu", "-q"]
    assert main(args) == 0
    assert "translated 0, skipped (exists) 1" in capsys.readouterr().out
    assert out.read_bytes() == b"an earlier result"
    assert main(args + ["--overwrite", "--stats", "per-frame"]) == 0
    assert probe(out).frames == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_a_failure_midway_leaves_the_previous_output_untouched(translator, clip, tmp_path, monkeypatch):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous good video")
    calls = []

    def failing(batch, direction, cycle=False, stats=None):
        calls.append(len(batch))
        if len(calls) == 3:
            raise DataError("disk full (simulated)")
        return batch, None

    monkeypatch.setattr(translator, "translate_pixels", failing)
    with pytest.raises(DataError, match="simulated"):
        translate_video(translator, clip, out, "AtoB", stats="per-frame")
    assert out.read_bytes() == b"previous good video"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_videos_in_a_folder_become_mp4s_beside_the_images_and_bad_clips_are_reported(run, clip, tmp_path, capsys):
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "pan.mov").write_bytes(clip.read_bytes())  # another suffix: still an mp4 out
    from PIL import Image

    Image.fromarray(pan_frames(1)[0]).save(source / "still.png")
    (source / "notes.mp4").write_text("this is text, not a video")
    data = clip.read_bytes()
    (source / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (source / "empty.webm").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["translate", "--run", str(run), "--direction", "AtoB", "--input", str(source), "--output", str(out),
                 "--device", "cpu", "--size", "32", "-q"]) == 2  # some files failed
    captured = capsys.readouterr()
    assert "translated 2, skipped (exists) 0, failed 3" in captured.out
    assert (out / "still.png").exists()
    info = probe(out / "sub" / "pan.mp4")
    assert (info.width, info.height, info.frames) == (32, 32, 24)  # --size applies to frames too
    reasons = dict(line.split("\t") for line in (out / "translate_failures.txt").read_text().splitlines())
    assert set(reasons) == {str(source / n) for n in ("notes.mp4", "truncated.mp4", "empty.webm")}
    assert all("cannot be read as a video" in r and "\n" not in r for r in reasons.values())
    assert "empty file" in reasons[str(source / "empty.webm")]


def test_without_pyav_a_clip_is_one_line_naming_the_extra_and_images_still_translate(run, clip, tmp_path, capsys,
                                                                                      monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    assert main(["translate", "--run", str(run), "--direction", "AtoB", "--input", str(clip), "--output",
                 str(tmp_path / "out.mp4"), "--device", "cpu", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "pip install 'cyclegan[video]'" in err
    source = tmp_path / "in"
    source.mkdir()
    (source / "pan.mp4").write_bytes(clip.read_bytes())
    from PIL import Image

    Image.fromarray(pan_frames(1)[0]).save(source / "still.png")
    assert main(["translate", "--run", str(run), "--direction", "AtoB", "--input", str(source), "--output",
                 str(tmp_path / "out"), "--device", "cpu", "-q"]) == 2
    assert "translated 1, skipped (exists) 0, failed 1" in capsys.readouterr().out
    assert (tmp_path / "out" / "still.png").exists()
    assert "pip install 'cyclegan[video]'" in (tmp_path / "out" / "translate_failures.txt").read_text()


def test_outputs_a_video_file_cannot_be(translator, clip, tmp_path):
    with pytest.raises(ConfigError, match=r"\.webm cannot hold"):
        translator.translate_folder(clip, tmp_path / "out.webm", "AtoB")
    with pytest.raises(ConfigError, match="--direction both writes two videos"):
        translator.translate_folder(clip, tmp_path / "out.mp4", "both")
    with pytest.raises(ConfigError, match="--stats must be shared or per-frame"):
        translator.translate_folder(clip, tmp_path / "out.mp4", "AtoB", video_stats="average")
    summary = translator.translate_folder(clip, tmp_path / "both", "both")  # a folder: one video each way
    assert summary.translated == 1
    assert probe(tmp_path / "both" / "AtoB" / "pan.mp4").frames == probe(tmp_path / "both" / "BtoA" / "pan.mp4").frames


def test_an_odd_sized_clip_keeps_its_size_and_a_grayscale_domain_gets_gray_frames(tmp_path):
    clip = tmp_path / "odd.mkv"
    with av.open(str(clip), "w") as out:  # FFV1 (lossless) holds odd sizes, as H.264 in 4:2:0 cannot
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 45, 33, "yuv444p"
        for i, pixels in enumerate(pan_frames(5, size=48)[:, :33, :45]):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    gray = Translator.from_run(write_random_run(tmp_path / "gray", channels_a=1, channels_b=1), device="cpu")
    assert translate_video(gray, clip, tmp_path / "odd.mp4", "AtoB") == 5
    info = probe(tmp_path / "odd.mp4")
    assert (info.width, info.height, info.audio) == (45, 33, None)
    frames = list(read_frames(tmp_path / "odd.mp4", channels=1))
    assert frames[0].shape == (33, 45, 1)


# ------------------------------------------------------------------------ shared statistics

def test_pooled_statistics_are_those_of_the_inputs_taken_together():
    torch.manual_seed(0)
    images = [torch.randn(5, 8, 9) * scale + shift for scale, shift in ((1, 0), (2, 1), (0.5, -3))]
    each = [[(x.mean((1, 2)), x.var((1, 2), correction=0))] for x in images]
    joined = torch.cat(images, dim=2)
    (mean, var), = tiling.pooled_stats(each)
    assert torch.allclose(mean, joined.mean((1, 2)), atol=1e-5)
    assert torch.allclose(var, joined.var((1, 2), correction=0), atol=1e-4)


def test_sampled_frames_spread_over_the_clip():
    assert sample_indices(24, 8) == [0, 3, 7, 10, 13, 16, 20, 23]
    assert sample_indices(3, 8) == [0, 1, 2]
    assert sample_indices(1, 8) == [0]


def test_with_shared_statistics_a_frame_changes_only_where_the_scene_does(translator):
    """The cause of flicker, exactly: a shape moving in one corner. With each frame's own statistics
    the whole frame changes tone; with shared ones, pixels beyond the generator's reach stay put."""
    frames = np.repeat(pan_frames(1, size=96, seed=3), 6, axis=0)
    for i, frame in enumerate(frames):
        frame[4:20, 4 + 3 * i:20 + 3 * i] = (40, 200, 40)  # a square entering on the top-left
    frames = torch.from_numpy(frames)
    stats = translator.norm_stats([frames[0], frames[-1]], "AtoB")
    shared = translator.translate_pixels(frames, "AtoB", stats=stats)[0].float()
    own = translator.translate_pixels(frames, "AtoB")[0].float()
    far = slice(20 + translator.margin, None)  # rows beyond the square and the network's reach from it
    assert (shared[1:, far] - shared[:-1, far]).abs().max() == 0
    assert (own[1:, far] - own[:-1, far]).abs().mean() > 0.5
    assert mean_frame_change(shared) < mean_frame_change(own)


def test_a_tiled_frame_uses_the_shared_statistics(run, translator):
    frames = torch.from_numpy(pan_frames(2, size=256))
    stats = translator.norm_stats(list(frames), "AtoB")
    small = Translator.from_run(run, device="cpu", max_pixels=64 * 64)
    small.tile_size = 2 * tiling.overlap_for(small.margin) + small.multiple  # the smallest tile: several a frame
    assert small.tile_size < 256
    whole = translator.translate_pixels(frames, "AtoB", stats=stats)[0].float()
    tiled = small.translate_pixels(frames, "AtoB", stats=stats)[0].float()
    assert (whole - tiled).abs().max() <= 1  # tiles agree with the whole frame: same statistics


# ------------------------------------------------------------------------ the app

def test_the_app_translates_a_short_video_upload_and_refuses_a_long_one(translator, clip, tmp_path, monkeypatch):
    from cyclegan.app import translate as tab

    limits = tab.UploadLimits(2**20, 10**6, 48)
    out = tmp_path / "out"
    out.mkdir()
    result = tab.translate_uploads(translator, [clip], ["AtoB", "BtoA"], False, limits, out)
    assert not result.failures
    assert [Path(p).name for p in result.downloads] == ["pan_AtoB.mp4", "pan_BtoA.mp4", "cyclegan_results.zip"]
    assert probe(out / "pan_AtoB.mp4").width == 48 and "frames resized from 64x64" in result.notes[0]
    assert [Path(p).suffix for p, _ in result.gallery] == [".mp4"] * 3  # the input, then each way

    import gradio as gr

    shown = gr.Gallery(format="png").postprocess(result.gallery)
    assert all(type(item).__name__ == "GalleryVideo" for item in shown.root)  # played, not shown as a still

    monkeypatch.setattr(tab, "MAX_VIDEO_FRAMES", 10)
    result = tab.translate_uploads(translator, [clip], ["AtoB"], False, limits, out)
    assert result.failures == ["pan.mp4 has 24 frames, over the app's 10 (a short clip); translate longer "
                               "videos with `cyclegan translate`"]
    small = tab.UploadLimits(1000, 10**6, 48)
    assert "over the 0 MB upload limit" in tab.translate_uploads(translator, [clip], ["AtoB"], False, small,
                                                                 out).failures[0]
