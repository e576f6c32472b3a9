"""Flicker of translated video, each frame with its own instance-norm statistics against shared ones.

Makes test clips (a slow diagonal pan over a synthetic scene in the source domain's style, H.264 at 30 frames/s),
translates each with a trained run through the real pipeline (`cyclegan translate` on a clip:
decode, sample frames for the shared statistics, translate in batches, encode H.264), and prints:

* flicker: the mean absolute change between consecutive output frames over that of the input
  frames (the scene's own motion), per-frame vs shared statistics;
* frames/s of the whole pipeline, per clip, on this machine.

The flicker needs a trained run (random weights do not show it), e.g. the `tiny` preset:

    cyclegan make-dataset --out datasets/shapes
    cyclegan train --data datasets/shapes --run checkpoints/shapes_tiny --preset tiny
    python benchmarks/flicker.py --run checkpoints/shapes_tiny
    python benchmarks/flicker.py --run checkpoints/shapes_tiny --size 256 --frames 48 --clips 2   # larger frames
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from translate_speed import machine  # the same machine line as the other benchmarks (a sibling script)


def write_clip(path: Path, frames: np.ndarray, fps: int = 30) -> Path:
    """(N, H, W, 3) uint8 frames as an H.264 mp4, near-lossless so the encoder adds little change of its own."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("h264", rate=fps, options={"crf": "12"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a trained run folder")
    parser.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"))
    parser.add_argument("--frames", type=int, default=96, help="frames per clip (default 96: 3.2 s at 30 frames/s)")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (default 64, the tiny preset's)")
    parser.add_argument("--step", type=int, default=1, help="pan speed in pixels per frame (default 1)")
    parser.add_argument("--clips", type=int, default=5, help="clips (scenes), each with its own seed (default 5)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    import torch

    from cyclegan.data.synthetic import pan_frames
    from cyclegan.translate.translator import Translator
    from cyclegan.translate.video import STATS, mean_frame_change, translate_video
    from cyclegan.video import read_frames

    if args.threads:
        torch.set_num_threads(args.threads)
    translator = Translator.from_run(args.run, device=args.device)
    channels = translator.input_channels(args.direction)
    print(f"machine: {machine()}")
    print(f"run: {args.run} ({translator.config.preset}), {args.direction}; {args.clips} clips of {args.frames} "
          f"frames, {args.size}x{args.size}, diagonal pan {args.step} px/frame, batch {args.batch_size}")
    print(f"{'clip':>4} {'input change':>12} " + " ".join(f"{s + ' flicker':>17} {s + ' frames/s':>18}" for s in STATS))
    ratios: dict[str, list[float]] = {s: [] for s in STATS}
    rates: dict[str, list[float]] = {s: [] for s in STATS}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        translate_video(translator, write_clip(root / "warmup.mp4", pan_frames(8, args.size, style=args.direction[0])),
                        root / "w.mp4",
                        args.direction)  # warm-up: kernels chosen, memory allocated
        for seed in range(args.clips):
            source_style = args.direction[0]  # a clip of the domain the generator translates from
            frames = pan_frames(args.frames, args.size, args.step, seed, source_style)
            clip = write_clip(root / f"pan{seed}.mp4", frames)
            base = mean_frame_change(list(read_frames(clip, channels)))
            row = f"{seed:>4} {base:>12.2f} "
            for stats in STATS:
                out = root / f"pan{seed}_{stats}.mp4"
                start = time.perf_counter()
                count = translate_video(translator, clip, out, args.direction, stats=stats,
                                        batch_size=args.batch_size)
                rates[stats].append(count / (time.perf_counter() - start))
                ratios[stats].append(mean_frame_change(list(read_frames(out))) / base)
                row += f"{ratios[stats][-1]:>17.3f} {rates[stats][-1]:>18.1f} "
            print(row, flush=True)
    mean = {s: float(np.mean(r)) for s, r in ratios.items()}
    print(f"mean {'':>12} " + " ".join(f"{mean[s]:>17.3f} {np.mean(rates[s]):>18.1f}" for s in STATS))
    print(f"shared statistics: {1 - mean['shared'] / mean['per-frame']:.1%} less change between consecutive frames "
          f"than per-frame; less in {sum(a < b for a, b in zip(ratios['shared'], ratios['per-frame']))} "
          f"of {args.clips} clips")


if __name__ == "__main__":
    main()
