"""CUT's PatchNCE heads: what turns a generator's encoder features into the vectors its contrastive
loss compares (Park et al., "Contrastive Learning for Unpaired Image-to-Image Translation", 2020).

For each chosen encoder layer, the same random spatial positions are picked in the features of an
input image and of its translation; a small MLP per layer maps each picked feature vector to a
unit vector. The loss (train/losses.py, ``patch_nce``) then asks every output patch to be most like
the input patch at its own position, among the other positions of the same image. Only training
uses these heads: translation needs the generator alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .generators import ResnetGenerator

HEAD_INIT_GAIN = 0.02  # CUT initialises its heads as its other networks: Xavier-normal, gain 0.02


class PatchNCEHeads(nn.Module):
    """One two-layer MLP (Linear, ReLU, Linear; ``width`` units, 256 published) per encoder layer,
    whose outputs are L2-normalised. ``channels`` are the layers' feature channels, known up front
    (``for_generator``) so the heads exist before the optimizer and DDP see them; CUT itself builds
    them lazily on the first batch."""

    def __init__(self, channels: list[int], width: int = 256) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(c, width), nn.ReLU(True), nn.Linear(width, width))
                                   for c in channels)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight, HEAD_INIT_GAIN)
                nn.init.zeros_(module.bias)

    @classmethod
    def for_generator(cls, generator: ResnetGenerator, layers: list[int], width: int) -> "PatchNCEHeads":
        """Heads for ``generator``'s encoder ``layers``: their channels are read off one tiny forward pass."""
        probe = torch.zeros(1, generator.in_channels, 16, 16, device=next(generator.parameters()).device)
        with torch.no_grad():
            channels = [f.shape[1] for f in generator.encode(probe, layers)]
        return cls(channels, width)

    def forward(self, features: list[torch.Tensor], positions: list[torch.Tensor]) -> list[torch.Tensor]:
        """For each layer, the features at ``positions`` (flat indices into height x width, the same
        for every image of the batch) through that layer's head: (batch x positions) x width, unit length."""
        out = []
        for feature, picked, head in zip(features, positions, self.heads):
            flat = feature.flatten(2).transpose(1, 2)  # N x HW x C
            vectors = flat[:, picked, :].flatten(0, 1)  # (N * P) x C
            out.append(F.normalize(head(vectors), dim=1, eps=1e-7))
        return out


def sample_positions(features: list[torch.Tensor], count: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``count`` distinct random positions per layer (all of them where a layer has fewer), drawn on
    the CPU from ``generator`` so a step's draws are reproducible (train/cut_step.py seeds it per step)."""
    positions = []
    for feature in features:
        size = feature.shape[2] * feature.shape[3]
        positions.append(torch.randperm(size, generator=generator)[:min(count, size)].to(feature.device))
    return positions
