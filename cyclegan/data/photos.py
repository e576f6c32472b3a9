"""A real-photo benchmark with ground truth: natural photos (A) and a style of them (B).

The shapes dataset is drawn, so it says little about photographs. This one is cut from the sample
photographs that ship inside scikit-image's wheel (astronaut, cat, coffee, rocket, motorcycle, ...),
so it needs no download; scikit-image is the ``bench`` extra, not a runtime dependency.

Domain B is ``STYLES[style](photo)``. The styles form a suite of different *kinds*, because a
recipe that wins on one kind can lose on another (the first ``--preset quality`` was chosen on the
painterly style and returned its input unchanged on a colour grade):

* ``painterly`` (structural): a median filter that flattens texture, colours posterised into a few
  levels, and dark ink along strong edges. No per-pixel colour map reaches it; B->A has to invent
  texture back.
* ``grade`` (global colour): a film-look grade: gamma lift, partial sepia, lifted blacks and a warm
  tint. One colour function for every pixel, the same in every image.
* ``rose`` (hue-selective): oranges and reds turn rose, every other hue (the blue sky, greys) is
  kept. A colour function, but one that must leave part of the image alone. (The classic example
  is foliage greens turning autumn orange; these photos hold almost no green, so the change is
  set on the hues they do hold: most of the cat, the coffee and the motorcycles.)
* ``grain`` (local and texture): a slight softening, a vignette that darkens the corners, and film
  grain. Position-dependent and noisy: no colour function reaches it.

Each photo's longer side is split 60/40: training crops come from the first 60%, test crops from
the last 40%, so no test pixel was seen in training. Crops are squares of a random side between
``size`` and 2x ``size``, resized to ``size``, with a random horizontal flip. Train A and train B
are drawn independently (the domains are unpaired). ``gt/AtoB/NAME`` is ``style(testA/NAME)``
and ``gt/BtoA/NAME`` is the photo ``testB/NAME`` was styled from. Everything is a pure function of
the seed and the scikit-image version's photos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from ..errors import DataError
from . import staging

# scikit-image's colour photographs of natural scenes, people, animals and objects (grayscale ones,
# scans and microscopy left out: a style benchmark wants ordinary photos).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right")
_STEREO = {"motorcycle_left": 0, "motorcycle_right": 1}  # halves of skimage.data.stereo_motorcycle()
TRAIN_SHARE = 0.6  # of each photo's longer side; the rest is for test crops
MAX_ZOOM_OUT = 2.0  # a crop covers between 1x and 2x the output size in photo pixels
POSTERISE_LEVELS = 6
MEDIAN_SIZE = 5
INK_THRESHOLD = 0.2  # Sobel magnitude (0-1 image) above which an edge is inked
INK_SHADE = 0.15  # an inked pixel keeps this fraction of its colour
# grade: x -> x ** (1 / GAMMA), mixed SEPIA_MIX of the way to sepia, blacks lifted to BLACK_LIFT, tinted
GRADE_GAMMA = 1.35
GRADE_SEPIA_MIX = 0.35
GRADE_BLACK_LIFT = 0.08
GRADE_TINT = (1.06, 1.0, 0.86)  # per-channel gain: warmer
_SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
# rose: hues within ROSE_WIDTH degrees of ROSE_FROM (orange) turn by up to ROSE_TURN degrees (to rose),
# fully at the centre and fading out linearly; pixels below ROSE_MIN_SAT saturation are left alone.
ROSE_FROM, ROSE_TURN, ROSE_WIDTH = 20.0, -45.0, 45.0
ROSE_MIN_SAT = 0.12
# grain: Gaussian softening, corners darkened by VIGNETTE at the far corner, luminance noise of sd GRAIN_SD
SOFTEN_RADIUS = 0.8
VIGNETTE = 0.45
GRAIN_SD = 0.035


def load_photos() -> dict[str, np.ndarray]:
    """The sample photos as uint8 RGB arrays; a one-line error when scikit-image is missing."""
    try:
        import skimage.data
    except ImportError:
        raise DataError("the photos dataset cuts scikit-image's sample photos; install them with "
                        ".venv/bin/pip install -e '.[bench]'") from None
    stereo = skimage.data.stereo_motorcycle()
    return {name: np.ascontiguousarray((stereo[_STEREO[name]] if name in _STEREO else getattr(skimage.data, name)())
                                       [..., :3]) for name in PHOTOS}


def painterly(image: Image.Image) -> Image.Image:
    """Domain B's style: flattened texture, posterised colour, dark ink on strong edges."""
    smooth = np.asarray(image.convert("RGB").filter(ImageFilter.MedianFilter(MEDIAN_SIZE)), dtype=np.float64) / 255
    step = POSTERISE_LEVELS - 1
    flat = np.round(smooth * step) / step
    edges = _sobel_magnitude(smooth.mean(axis=2)) > INK_THRESHOLD
    flat[edges] *= INK_SHADE
    return Image.fromarray(np.clip(flat * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")


def grade(image: Image.Image) -> Image.Image:
    """Domain B of the ``grade`` style: gamma lift, partial sepia, lifted blacks, warm tint."""
    x = np.asarray(image.convert("RGB"), dtype=np.float64) / 255
    x = x ** (1 / GRADE_GAMMA)
    x = (1 - GRADE_SEPIA_MIX) * x + GRADE_SEPIA_MIX * np.clip(x @ _SEPIA.T, 0, 1)
    x = GRADE_BLACK_LIFT + (1 - GRADE_BLACK_LIFT) * x
    return _to_image(x * np.array(GRADE_TINT))


def rose(image: Image.Image) -> Image.Image:
    """Domain B of the ``rose`` style: oranges and reds turn rose in proportion to how close their
    hue is to orange and how saturated they are; other hues, greys and near-greys keep their colour."""
    hsv = np.asarray(image.convert("RGB").convert("HSV"), dtype=np.float64)
    hue, sat = hsv[..., 0] * 360 / 255, hsv[..., 1] / 255
    distance = (hue - ROSE_FROM + 180) % 360 - 180  # signed, across the 0/360 wrap
    weight = np.clip(1 - np.abs(distance) / ROSE_WIDTH, 0, 1) * np.clip((sat - ROSE_MIN_SAT) / ROSE_MIN_SAT, 0, 1)
    hsv[..., 0] = ((hue + weight * ROSE_TURN) % 360) * 255 / 360
    return Image.fromarray(np.clip(hsv + 0.5, 0, 255).astype(np.uint8), "HSV").convert("RGB")


def grain(image: Image.Image) -> Image.Image:
    """Domain B of the ``grain`` style: softened, vignetted, with film grain. The grain is drawn
    from a generator seeded by the image's own bytes, so the same photo always gets the same grain
    (the ground truth is a function of the photo, as for every style)."""
    rgb = image.convert("RGB")
    x = np.asarray(rgb.filter(ImageFilter.GaussianBlur(SOFTEN_RADIUS)), dtype=np.float64) / 255
    h, w = x.shape[:2]
    ys, xs = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    x *= (1 - VIGNETTE * (ys**2 + xs**2) / 2)[..., None]
    seed = int.from_bytes(np.asarray(rgb).tobytes()[:4096:7], "little") % (2**63)
    noise = np.random.default_rng(seed).normal(0, GRAIN_SD, (h, w, 1))  # luminance grain: same in R, G, B
    return _to_image(x + noise)


def _to_image(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")


STYLES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "painterly": painterly, "grade": grade, "rose": rose, "grain": grain}
"""Domain B's style by name (``make-dataset --kind photos --style NAME``)."""


def _sobel_magnitude(gray: np.ndarray) -> np.ndarray:
    """Gradient magnitude of a 0-1 image, normalised so a full black-to-white step reads about 1."""
    p = np.pad(gray, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.hypot(gx, gy) / 4


def region(photo: np.ndarray, split: str) -> np.ndarray:
    """The part of ``photo`` a split may crop from: the first 60% of the longer side for training,
    the last 40% for test."""
    h, w = photo.shape[:2]
    axis = 0 if h >= w else 1
    cut = int(round(photo.shape[axis] * TRAIN_SHARE))
    index = slice(0, cut) if split == "train" else slice(cut, None)
    return photo[index] if axis == 0 else photo[:, index]


def random_crop(rng: np.random.Generator, area: np.ndarray, size: int) -> Image.Image:
    """A square crop of a random side between ``size`` and MAX_ZOOM_OUT x ``size`` (capped by the
    area), resized to ``size``, flipped left-right half the time."""
    h, w = area.shape[:2]
    side = int(rng.integers(size, int(size * MAX_ZOOM_OUT) + 1))
    side = min(side, h, w)
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(area[y:y + side, x:x + side]).resize((size, size), Image.Resampling.BICUBIC)
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def make_photos_dataset(out: str | Path, *, n_train: int = 300, n_test: int = 50, size: int = 128, seed: int = 0,
                        overwrite: bool = False, style: str = "painterly") -> Path:
    """Write trainA, trainB, testA, testB, gt/AtoB and gt/BtoA under ``out``, domain B in ``style``
    (a key of STYLES); returns ``out``.

    Refuses to write into a non-empty folder unless ``overwrite``, which replaces only a folder
    that make-dataset made (its MADE_BY marker says so).
    """
    out = Path(out)
    if style not in STYLES:
        raise DataError(f"unknown photo style {style!r}; choose one of: {', '.join(STYLES)}")
    stylise = STYLES[style]
    photos = load_photos()
    smallest = min(min(region(p, s).shape[:2]) for p in photos.values() for s in ("train", "test"))
    if n_train < 1 or n_test < 0 or not 32 <= size <= smallest:
        raise DataError(f"need n_train >= 1, n_test >= 0 and 32 <= size <= {smallest} (the smallest photo "
                        f"region), got {n_train}, {n_test}, {size}")
    target, out = out, staging.stage(out, overwrite)  # written beside the target, renamed in when complete
    names = sorted(photos)
    plan = [("trainA", n_train, "train", None), ("trainB", n_train, "train", None),
            ("testA", n_test, "test", "gt/AtoB"), ("testB", n_test, "test", "gt/BtoA")]
    for i, (split, count, part, truth) in enumerate(plan):
        rng = np.random.default_rng([seed, i])  # one stream per split, as make_dataset
        for folder in [out / split] + ([out / truth] if truth else []):
            folder.mkdir(parents=True, exist_ok=True)
        for j in range(count):
            photo = photos[names[int(rng.integers(len(names)))]]
            crop = random_crop(rng, region(photo, part), size)
            painted = stylise(crop)
            name = f"{j:05d}.png"
            (painted if split.endswith("B") else crop).save(out / split / name)
            if truth == "gt/AtoB":
                painted.save(out / truth / name)
            elif truth == "gt/BtoA":
                crop.save(out / truth / name)
    return staging.publish(out, target)
