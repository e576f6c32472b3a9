"""FID and KID: torch-fidelity's Inception network, its features, and torchmetrics' distances.

Optional (``pip install cyclegan[metrics]``): when the package or its weights are missing, FID
and KID are skipped with one log line, never an error. Weights are read as plain tensors, never
through pickle.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

class _Precomputed(nn.Module):
    """Lets torchmetrics' FID and KID take features we computed once for both."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _inception_state(weights: str) -> dict[str, torch.Tensor]:
    """The Inception weights as plain tensors, never through pickle: a local file or torch-fidelity's
    own download (cached by torch.hub, so it is fetched once)."""
    if weights:
        path = Path(weights)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return torch.hub.load_state_dict_from_url(URL_INCEPTION_V3, map_location="cpu", progress=False,
                                              weights_only=True)


@functools.lru_cache(maxsize=4)
def inception_network(weights: str = "") -> nn.Module | None:
    """torch-fidelity's FID Inception-v3 (2048 pooled features), or None when it cannot be had.

    ``weights`` is a local .pth/.pt/.safetensors file; empty means the package's own download.
    Loaded once per process; when the package or its weights are missing this logs why, once, and
    FID/KID are skipped.
    """
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3

        state = _inception_state(weights)
        # torch-fidelity reads a weights file with pickle enabled; hand it a file that we just
        # wrote from plain tensors, never the user's or the network's file.
        with tempfile.TemporaryDirectory() as tmp:
            safe_copy = Path(tmp) / "inception.pt"
            torch.save(state, safe_copy)
            return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                      feature_extractor_weights_path=str(safe_copy))
    except ImportError:
        log.warning("FID/KID skipped: install the optional metrics extra (pip install 'cyclegan[metrics]')")
    except Exception as exc:  # offline, a missing or foreign file: FID is optional, never fatal
        source = weights or "torch-fidelity's download"
        log.warning("FID/KID skipped: Inception weights from %s could not be loaded (%s: %s); pass "
                    "--inception-weights PATH to a local copy", source, type(exc).__name__, exc)
    return None


@torch.inference_mode()
def image_features(network: nn.Module, images: torch.Tensor, device: torch.device, batch: int = 32) -> torch.Tensor:
    """Features of uint8 images, computed in batches on ``device``; (N, F) float64 on the CPU."""
    return torch.cat([network(images[i:i + batch].to(device)).double().cpu() for i in range(0, len(images), batch)])


def fid_kid(real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    """FID and KID between two feature sets (N, F). Named so only with Inception features."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if min(len(real), len(fake)) < 2:
        return {}
    fid = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # KID's note that it keeps features in memory
        kid = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=100,
                                      subset_size=min(1000, len(real), len(fake)))
    with torch.random.fork_rng(devices=[]):  # KID draws subsets from the global RNG
        torch.manual_seed(0)
        for metric in (fid, kid):
            metric.update(real, real=True)
            metric.update(fake, real=False)
        return {"fid": float(fid.compute()), "kid": float(kid.compute()[0])}
