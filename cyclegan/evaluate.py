"""Held-out evaluation: how close translations come to ground truth, beside doing nothing.

The identity baseline (the input returned unchanged) is the number a model must beat: a
translation worse than it has learned nothing useful.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .data import find_images, image_to_tensor, load_image
from .errors import DataError
from .translate import Translator

# Where the synthetic dataset (and any dataset laid out like it) keeps its ground truth.
GROUND_TRUTH = {"AtoB": ("testA", "gt/AtoB"), "BtoA": ("testB", "gt/BtoA")}


def l1(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference on the [0, 1] pixel scale."""
    return float((a - b).abs().mean() / 2)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB on the [0, 1] pixel scale (100 for identical images)."""
    mse = float(((a - b) / 2).pow(2).mean())
    return 100.0 if mse == 0 else 10 * math.log10(1.0 / mse)


def ground_truth_pairs(data_dir: Path, direction: str) -> list[tuple[Path, Path]]:
    source, truth = (Path(data_dir) / p for p in GROUND_TRUTH[direction])
    if not truth.is_dir():
        return []
    pairs = []
    for path in find_images(source, label=f"{GROUND_TRUTH[direction][0]} folder"):
        target = truth / path.relative_to(source)
        if target.exists():
            pairs.append((path, target))
    return pairs


def evaluate_ground_truth(translator: Translator, data_dir: str | Path) -> dict[str, dict[str, float]]:
    """For each direction with ground truth under ``data_dir``: L1 and PSNR of the translation and
    of the identity baseline, averaged over images."""
    results: dict[str, dict[str, float]] = {}
    for direction in GROUND_TRUTH:
        pairs = ground_truth_pairs(Path(data_dir), direction)
        if not pairs:
            continue
        sums = {"l1": 0.0, "psnr": 0.0, "identity_l1": 0.0, "identity_psnr": 0.0}
        for source, truth in pairs:
            x = image_to_tensor(load_image(source))
            y = image_to_tensor(load_image(truth))
            if y.shape != x.shape:
                y = TF.resize(y, list(x.shape[-2:]), interpolation=InterpolationMode.BICUBIC)
            out = translator.translate_tensor(x.unsqueeze(0), direction)[0]
            sums["l1"] += l1(out, y)
            sums["psnr"] += psnr(out, y)
            sums["identity_l1"] += l1(x, y)
            sums["identity_psnr"] += psnr(x, y)
        results[direction] = {k: v / len(pairs) for k, v in sums.items()} | {"images": len(pairs)}
    if not results:
        raise DataError(f"{data_dir} has no ground truth to evaluate against: expected testA/ with gt/AtoB/ "
                        "or testB/ with gt/BtoA/ (as `cyclegan make-dataset` writes)")
    return results
