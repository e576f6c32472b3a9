"""Translator: a trained run folder turned into a function from images to images, both ways.

Loads ``config.json`` and the two generators once; translates images of any size by reflect-
padding them to the network's multiple of 4 and cropping the result back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from . import checkpoint as ckpt
from .config import Config
from .data import find_images, image_to_tensor, load_image, tensor_to_image
from .errors import ConfigError, CycleGANError, DataError
from .networks import build_generator

log = logging.getLogger(__name__)

DIRECTIONS = ("AtoB", "BtoA")
_GENERATOR_FOR = {"AtoB": "G_AB", "BtoA": "G_BA"}
MULTIPLE = 4  # two stride-2 downsamplings


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be AtoB or BtoA, got {direction!r}")
    return direction


@dataclass
class FolderSummary:
    translated: int = 0
    skipped: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)


class Translator:
    def __init__(self, config: Config, generators: dict[str, nn.Module], device: torch.device) -> None:
        self.config = config
        self.device = device
        self.generators = {name: net.to(device).eval() for name, net in generators.items()}

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str | torch.device | None = None, best: bool = False) -> "Translator":
        """Load a run folder's generators (``best`` for the best held-out epoch's)."""
        from .trainer import select_device

        run_dir = Path(run_dir)
        config = ckpt.load_config(run_dir)
        device = torch.device(device) if isinstance(device, torch.device) else select_device(device or "auto")
        generators = {}
        for name in _GENERATOR_FOR.values():
            path = ckpt.generator_path(run_dir, name, best)
            if best and not path.exists():
                raise ckpt.CheckpointError(f"{path.parent} has no best weights yet; drop --best to use the latest")
            generators[name] = ckpt.load_weights(build_generator(config.model), path)
        return cls(config, generators, device)

    @torch.inference_mode()
    def translate_tensor(self, images: torch.Tensor, direction: str) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1], any H and W -> the same shape, translated."""
        net = self.generators[_GENERATOR_FOR[check_direction(direction)]]
        h, w = images.shape[-2:]
        pad_h, pad_w = -h % MULTIPLE, -w % MULTIPLE
        x = images.to(self.device, torch.float32)
        if pad_h or pad_w:
            # Reflection needs the pad to be smaller than the side; tiny images fall back to replicate.
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return net(x)[..., :h, :w].float().cpu()

    def __call__(self, image: Image.Image | str | Path | torch.Tensor, direction: str):
        """Translate one PIL image, image path or (C, H, W) tensor; returns the same kind (a path gives a PIL image)."""
        if isinstance(image, torch.Tensor):
            return self.translate_tensor(image.unsqueeze(0), direction)[0]
        if isinstance(image, (str, Path)):
            image = load_image(image)
        out = self.translate_tensor(image_to_tensor(image.convert("RGB")).unsqueeze(0), direction)[0]
        return tensor_to_image(out)

    def translate_folder(self, input_dir: str | Path, output_dir: str | Path, direction: str,
                         overwrite: bool = False) -> FolderSummary:
        """Translate every image under ``input_dir`` into PNGs under ``output_dir``, mirroring subfolders.

        An existing output is skipped unless ``overwrite``; an image that fails is reported, not fatal.
        """
        input_dir, output_dir = Path(input_dir), Path(output_dir)
        summary = FolderSummary()
        for path in find_images(input_dir, label="input folder"):
            target = (output_dir / path.relative_to(input_dir)).with_suffix(".png")
            if target.exists() and not overwrite:
                summary.skipped += 1
                continue
            try:
                result = self(path, direction)
            except CycleGANError as exc:
                summary.failed.append((path, str(exc)))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            result.save(tmp, format="PNG")
            tmp.replace(target)
            summary.translated += 1
        return summary
