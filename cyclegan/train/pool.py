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

    def query(self, images: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """Return a batch the same shape as ``images``; keeps detached copies of what it stores.

        ``skip`` (a 0-dim tensor, 1.0 for a training step whose update is skipped because its loss
        was NaN/inf) keeps the step's fakes out of the history, decided on the device with no host
        sync: a stored image stays as it was, and a slot still being filled gets a blank (mid-grey)
        image instead.
        """
        if self.size == 0:
            return images.detach()  # never a path for the discriminator loss back into the generators
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(self._kept(image, torch.zeros_like(image), skip))
                out.append(image)
                continue
            # the coin flips use the pool's own CPU generator: no device sync
            if torch.rand((), generator=self.generator).item() < 0.5:
                index = int(torch.randint(len(self.images), (), generator=self.generator))
                out.append(self.images[index].clone())
                self.images[index] = self._kept(image, self.images[index], skip)
            else:
                out.append(image)
        return torch.cat(out, 0)

    @staticmethod
    def _kept(new: torch.Tensor, old: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        return new.clone() if skip is None else torch.where(skip.bool(), old, new)

    def state_dict(self) -> dict[str, Any]:
        stacked = torch.cat([im.cpu() for im in self.images], 0) if self.images else torch.empty(0)
        return {"images": stacked, "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        images = state["images"]
        self.images = [im.unsqueeze(0).to(device) for im in images] if images.numel() else []
        self.generator.set_state(state["rng"])
