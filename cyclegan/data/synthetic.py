"""The embedded default dataset: scenes of shapes drawn in two styles, with ground truth.

Style A ("ink"): flat shapes in red, green and blue, each with a black outline drawn just inside
its edge, on a cream background. Style B ("glow"): the same shapes in orange, teal and violet with
no outline, each casting a dark halo onto a pale blue background just outside its edge.

Translating A<->B therefore means changing colour per object *and* adding or removing structure
that depends on where a shape's edge is. No per-pixel colour map can do it (an A outline pixel is
black whatever the shape's colour; a B pixel of a shape's colour may be outline or fill in A), so
neither the identity nor a global colour transform solves it: ``affine_colour_baseline`` fits the
best one on the ground truth itself and still leaves most of the identity's error. Each B colour
is the nearest to its A colour and the three colours appear with different frequencies (in both
domains), so the true mapping is the only permutation that matches the target's statistics; it is
a bijection, so cycle consistency holds exactly.

Train scenes of A and B are drawn independently (the domains are unpaired). The test split keeps
the ground truth of every test image: ``gt/AtoB/NAME`` is ``testA/NAME`` redrawn in style B, and
``gt/BtoA/NAME`` is ``testB/NAME`` redrawn in style A. Everything is a pure function of the seed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from . import staging

PALETTE_A = np.array([(210, 50, 50), (50, 160, 60), (50, 80, 210)], dtype=np.float64)
PALETTE_B = np.array([(230, 120, 40), (40, 160, 150), (130, 70, 210)], dtype=np.float64)
COLOUR_FREQUENCIES = (0.5, 0.3, 0.2)
BACKGROUND_A = np.array((235, 230, 215), dtype=np.float64)
BACKGROUND_B = np.array((215, 225, 240), dtype=np.float64)
OUTLINE_A = np.array((25, 25, 25), dtype=np.float64)
OUTLINE_WIDTH = 2  # pixels of A's outline, inside the shape
HALO_SHADE = (0.45, 0.65, 0.85)  # B's background brightness at 1, 2, 3 pixels outside a shape
SHAPES = ("circle", "square", "triangle", "diamond")


@dataclass(frozen=True)
class Shape:
    kind: str
    cx: float
    cy: float
    radius: float
    colour: int  # index into the palettes


def random_scene(rng: np.random.Generator, size: int) -> list[Shape]:
    """Two to four shapes far enough apart that outlines and halos never touch."""
    gap = 2 * len(HALO_SHADE) + 2
    shapes: list[Shape] = []
    target = int(rng.integers(2, 5))
    for _ in range(200):
        if len(shapes) == target:
            break
        radius = float(rng.uniform(0.12, 0.22) * size)
        margin = radius + len(HALO_SHADE) + 1
        cx, cy = rng.uniform(margin, size - margin, size=2)
        if all(np.hypot(cx - s.cx, cy - s.cy) > radius + s.radius + gap for s in shapes):
            colour = int(rng.choice(len(PALETTE_A), p=COLOUR_FREQUENCIES))
            shapes.append(Shape(str(rng.choice(SHAPES)), float(cx), float(cy), radius, colour))
    return shapes


def shape_mask(shape: Shape, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] + 0.5
    dx, dy, r = x - shape.cx, y - shape.cy, shape.radius
    if shape.kind == "circle":
        return dx**2 + dy**2 <= r**2
    if shape.kind == "square":
        return (np.abs(dx) <= 0.8 * r) & (np.abs(dy) <= 0.8 * r)
    if shape.kind == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    # An upright triangle: apex at the top, base below the centre.
    return (dy >= -r) & (dy <= 0.7 * r) & (np.abs(dx) <= 0.6 * (dy + r))


def _erode(mask: np.ndarray) -> np.ndarray:
    """3x3 erosion: a pixel stays only if all eight neighbours are in the mask."""
    padded = np.pad(mask, 1, constant_values=True)  # the image border is not an edge
    h, w = mask.shape
    out = np.ones_like(mask)
    for oy in range(3):
        for ox in range(3):
            out &= padded[oy:oy + h, ox:ox + w]
    return out


def rings(mask: np.ndarray, count: int) -> list[np.ndarray]:
    """The first ``count`` one-pixel rings inside ``mask``, from its edge inward."""
    out, current = [], mask
    for _ in range(count):
        inner = _erode(current)
        out.append(current & ~inner)
        current = inner
    return out


def render(shapes: list[Shape], size: int, style: str) -> Image.Image:
    """Draw a scene in style "A" (outlined, cream) or "B" (haloed, pale blue)."""
    background = BACKGROUND_A if style == "A" else BACKGROUND_B
    canvas = np.broadcast_to(background, (size, size, 3)).copy()
    for shape in shapes:
        mask = shape_mask(shape, size)
        if style == "A":
            canvas[mask] = PALETTE_A[shape.colour]
            for ring in rings(mask, OUTLINE_WIDTH):
                canvas[ring] = OUTLINE_A
        else:
            # The halo rings are the rings of the background just outside the shape.
            for ring, shade in zip(rings(~mask, len(HALO_SHADE)), HALO_SHADE):
                canvas[ring] = BACKGROUND_B * shade
            canvas[mask] = PALETTE_B[shape.colour]
    return Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), "RGB")


def make_dataset(out: str | Path, *, n_train: int = 400, n_test: int = 50, size: int = 64, seed: int = 0,
                 overwrite: bool = False) -> Path:
    """Write trainA, trainB, testA, testB, gt/AtoB and gt/BtoA under ``out``; returns ``out``.

    Refuses to write into a non-empty folder unless ``overwrite``, which replaces only a folder
    that make-dataset made (its MADE_BY marker says so).
    """
    out = Path(out)
    if n_train < 1 or n_test < 0 or size < 32:
        raise DataError(f"need n_train >= 1, n_test >= 0 and size >= 32, got {n_train}, {n_test}, {size}")
    target, out = out, staging.stage(out, overwrite)  # written beside the target, renamed in when complete
    # One independent stream per split, so changing n_test does not change the training images.
    splits = ("trainA", "trainB", "testA", "testB")
    streams = {name: np.random.default_rng([seed, i]) for i, name in enumerate(splits)}
    plan = [("trainA", n_train, "A", None), ("trainB", n_train, "B", None),
            ("testA", n_test, "A", ("gt/AtoB", "B")), ("testB", n_test, "B", ("gt/BtoA", "A"))]
    for split, count, style, truth in plan:
        for folder in [out / split] + ([out / truth[0]] if truth else []):
            folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shapes = random_scene(streams[split], size)
            name = f"{i:05d}.png"
            render(shapes, size, style).save(out / split / name)
            if truth:
                render(shapes, size, truth[1]).save(out / truth[0] / name)
    return staging.publish(out, target)


def pan_frames(frames: int, size: int = 64, step: int = 1, seed: int = 0, style: str = "A") -> np.ndarray:
    """A slow diagonal pan, ``step`` pixels a frame, over one scene in ``style``: (frames, size, size, 3)
    uint8. The scene is a grid of ``size``-pixel scenes like the dataset's, so shapes keep the
    dataset's scale however long the clip. A test clip for video translation: consecutive frames
    differ only by the motion, with shapes entering and leaving the view, so whatever else a
    translation changes is flicker."""
    tiles = -(-(size + (frames - 1) * step) // size)
    rng = np.random.default_rng([seed, 99])
    scene = np.concatenate([np.concatenate([np.asarray(render(random_scene(rng, size), size, style))
                                            for _ in range(tiles)], axis=1) for _ in range(tiles)], axis=0)
    return np.stack([scene[i * step:i * step + size, i * step:i * step + size] for i in range(frames)])


def affine_colour_fit(sources: list[np.ndarray], targets: list[np.ndarray]) -> list[np.ndarray]:
    """The sources (uint8 RGB) under the best global affine colour transform to the targets (3x3
    matrix plus offset, least squares over every pixel of every image, fitted on the targets
    themselves), as float images on the 0-1 scale: what a "colour shift" could reach at best."""
    src = np.concatenate([s.reshape(-1, 3) for s in sources]).astype(np.float64) / 255.0
    dst = np.concatenate([t.reshape(-1, 3) for t in targets]).astype(np.float64) / 255.0
    design = np.c_[src, np.ones(len(src))]
    weights, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return [(np.c_[s.reshape(-1, 3) / 255.0, np.ones(s.size // 3)] @ weights).reshape(s.shape) for s in sources]


def affine_colour_baseline(sources: list[np.ndarray], targets: list[np.ndarray]) -> float:
    """L1 (0-1 scale) of ``affine_colour_fit`` against the targets, over all pixels."""
    fitted = affine_colour_fit(sources, targets)
    return float(np.mean(np.concatenate([np.abs(f - t / 255.0).ravel() for f, t in zip(fitted, targets)])))


def colour_map_baseline(sources: list[np.ndarray], targets: list[np.ndarray]) -> float:
    """L1 (0-1 scale) of the best per-pixel colour lookup table from sources to targets, fitted on
    the targets: each distinct source colour goes to the per-channel median of the target pixels it
    stands for. It is the ceiling of every global colour transform; it does well on B->A, where
    only A's outline is beyond it, and badly on A->B."""
    src = np.concatenate([s.reshape(-1, 3) for s in sources]).astype(np.int64)
    dst = np.concatenate([t.reshape(-1, 3) for t in targets]).astype(np.float64)
    keys = (src[:, 0] << 16) | (src[:, 1] << 8) | src[:, 2]
    groups: dict[int, list[int]] = defaultdict(list)
    for index, key in enumerate(keys.tolist()):
        groups[key].append(index)
    mapped = np.empty_like(dst)
    for members in groups.values():
        mapped[members] = np.median(dst[members], axis=0)
    return float(np.abs(mapped - dst).mean() / 255.0)
