"""The history pool: discriminators see a mix of current and earlier fakes.

Shrivastava et al. (2017): training D on a buffer of past generated images, not only the latest,
damps the oscillation where G and D chase each other. With probability 1/2 an incoming fake is
swapped for a stored one. The pool draws from its own generator so its choices are saved with a
checkpoint and replayed exactly on resume.
"""

from __future__ import annotations

from typing import Any

import torch


class ImagePool:
    def __init__(self, size: int = 50, seed: int = 0) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch the same shape as ``images``; keeps detached copies of what it stores."""
        if self.size == 0:
            return images.detach()  # never a path for the discriminator loss back into the generators
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
                continue
            if torch.rand((), generator=self.generator).item() < 0.5:
                index = int(torch.randint(len(self.images), (), generator=self.generator))
                out.append(self.images[index].clone())
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        stacked = torch.cat([im.cpu() for im in self.images], 0) if self.images else torch.empty(0)
        return {"images": stacked, "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        images = state["images"]
        self.images = [im.unsqueeze(0).to(device) for im in images] if images.numel() else []
        self.generator.set_state(state["rng"])
