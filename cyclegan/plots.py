"""Pictures of a run: sample grids (and, from metrics.csv, curves)."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torchvision.utils import make_grid
from torchvision.transforms.v2 import functional as TF

from .checkpoint import atomic_write_bytes


def save_sample_grid(path: Path, columns: list[torch.Tensor]) -> None:
    """One row per sample, one column per tensor in ``columns`` (each (N, 3, H, W) in [-1, 1]).

    The trainer passes real A, A->B, A->B->A, real B, B->A, B->A->B, so a row reads left to right
    as a translation and its round trip.
    """
    n = columns[0].shape[0]
    tiles = torch.stack(columns, 1).reshape(n * len(columns), *columns[0].shape[1:])
    grid = make_grid(tiles.float().cpu().clamp(-1, 1), nrow=len(columns), padding=2, pad_value=1.0)
    image = TF.to_pil_image(((grid + 1) * 127.5).round().to(torch.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
