"""The embedded default dataset: scenes of shapes drawn in two styles, with ground truth.

Style A draws flat shapes in red, green and blue on a cream background. Style B draws the same
shapes in orange, teal and violet on a pale blue background, each shaded with a dark bevel that
fades in from its edge. So translating A<->B means changing colour per object (not one global
shift) *and* adding or removing a local texture that depends on the shape's outline: neither the
identity map nor any global colour transform solves it. Each B colour is the nearest to its A
colour, so the mapping CycleGAN's identity loss leans toward is the true one, and the mapping is a
bijection, so cycle consistency holds exactly. The three colours appear with different
frequencies, so no permutation of them matches the target domain's statistics but the true one.

Train scenes of A and B are drawn independently (the domains are unpaired). The test split keeps
the ground truth of every test image: ``gt/AtoB/NAME`` is ``testA/NAME`` redrawn in style B, and
``gt/BtoA/NAME`` is ``testB/NAME`` redrawn in style A. Everything is a pure function of the seed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DataError

PALETTE_A = np.array([(210, 50, 50), (50, 160, 60), (50, 80, 210)], dtype=np.float64)
PALETTE_B = np.array([(230, 110, 40), (40, 150, 140), (120, 60, 200)], dtype=np.float64)
# Colours are not equally common (in both domains), so a translation that swapped two colours
# would change their frequencies and the discriminators could tell: the true mapping is the only
# one that matches the target distribution.
COLOUR_FREQUENCIES = (0.5, 0.3, 0.2)
BACKGROUND_A = np.array((235, 230, 215), dtype=np.float64)
BACKGROUND_B = np.array((200, 215, 235), dtype=np.float64)
BEVEL_WIDTH = 4  # pixels over which style B's shading fades in from a shape's edge
BEVEL_EDGE = 0.45  # brightness of style B at a shape's very edge (1.0 inside)
SHAPES = ("circle", "square", "triangle", "diamond")


@dataclass(frozen=True)
class Shape:
    kind: str
    cx: float
    cy: float
    radius: float
    colour: int  # index into the palettes


def random_scene(rng: np.random.Generator, size: int) -> list[Shape]:
    """Two to four shapes that do not touch, so each shape's bevel is its own."""
    shapes: list[Shape] = []
    target = int(rng.integers(2, 5))
    for _ in range(200):
        if len(shapes) == target:
            break
        radius = float(rng.uniform(0.11, 0.22) * size)
        cx, cy = rng.uniform(radius + 1, size - radius - 1, size=2)
        if all(np.hypot(cx - s.cx, cy - s.cy) > radius + s.radius + 3 for s in shapes):
            shapes.append(Shape(str(rng.choice(SHAPES)), float(cx), float(cy), radius, int(rng.choice(3, p=COLOUR_FREQUENCIES))))
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


def depth_from_edge(mask: np.ndarray, cap: int) -> np.ndarray:
    """How many 3x3 erosions each pixel of ``mask`` survives, up to ``cap`` (0 on the outline)."""
    depth = np.zeros(mask.shape, dtype=np.float64)
    current = mask.copy()
    for _ in range(cap):
        padded = np.pad(current, 1, constant_values=False)
        eroded = np.ones_like(current)
        for oy in range(3):
            for ox in range(3):
                eroded &= padded[oy:oy + mask.shape[0], ox:ox + mask.shape[1]]
        depth += eroded
        current = eroded
    return depth


def render(shapes: list[Shape], size: int, style: str) -> Image.Image:
    """Draw a scene in style "A" (flat) or "B" (bevelled, other palette)."""
    background, palette = (BACKGROUND_A, PALETTE_A) if style == "A" else (BACKGROUND_B, PALETTE_B)
    canvas = np.broadcast_to(background, (size, size, 3)).copy()
    for shape in shapes:
        mask = shape_mask(shape, size)
        colour = np.broadcast_to(palette[shape.colour], (size, size, 3))
        if style == "B":
            shade = BEVEL_EDGE + (1 - BEVEL_EDGE) * depth_from_edge(mask, BEVEL_WIDTH) / BEVEL_WIDTH
            colour = colour * shade[..., None]
        canvas[mask] = colour[mask]
    return Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), "RGB")


def make_dataset(out: str | Path, *, n_train: int = 400, n_test: int = 50, size: int = 64, seed: int = 0,
                 overwrite: bool = False) -> Path:
    """Write trainA, trainB, testA, testB, gt/AtoB and gt/BtoA under ``out``; returns ``out``.

    Refuses to write into a non-empty folder unless ``overwrite`` (which replaces it).
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"{out} already exists and is not empty; pass --overwrite to replace it "
                            "or choose another --out")
        shutil.rmtree(out)
    if n_train < 1 or n_test < 0 or size < 16:
        raise DataError(f"need n_train >= 1, n_test >= 0 and size >= 16, got {n_train}, {n_test}, {size}")
    # One independent stream per split, so changing n_test does not change the training images.
    streams = {name: np.random.default_rng([seed, i]) for i, name in enumerate(("trainA", "trainB", "testA", "testB"))}
    plan = [("trainA", n_train, "A", None), ("trainB", n_train, "B", None),
            ("testA", n_test, "A", ("gt/AtoB", "B")), ("testB", n_test, "B", ("gt/BtoA", "A"))]
    for split, count, style, truth in plan:
        folders = [out / split] + ([out / truth[0]] if truth else [])
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shapes = random_scene(streams[split], size)
            name = f"{i:05d}.png"
            render(shapes, size, style).save(out / split / name)
            if truth:
                render(shapes, size, truth[1]).save(out / truth[0] / name)
    return out
