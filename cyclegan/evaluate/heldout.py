"""Held-out evaluation of a pair of generators (and their discriminators), and of a run folder.

``evaluate_heldout`` is what training calls at the end of an epoch: every metric of
``table.METRICS`` that needs no ground truth, for both directions, on images the generators
never trained on. ``evaluate_run`` is ``cyclegan evaluate``: the same for a saved run, plus
ground-truth scores where the dataset has them (``testA`` with ``gt/AtoB``, as the synthetic
dataset is laid out).

Nothing here loads a run's generators itself: the caller hands in a translator (anything with
``config``, ``device``, ``generator(direction)`` and ``translate_tensor``), so this stage stays
below translation in the data flow.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Protocol

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF
from torch import nn

from .. import runfolder
from ..config import Config
from ..data.dataset import eval_tensor
from ..data.folders import find_images, run_heldout_paths
from ..devices import Autocast
from ..errors import DataError
from ..images import load_image, match_channels, pil_to_tensor, to_float, to_uint8
from ..models.discriminators import build_discriminator
from .inception import fid_kid, image_features, inception_network
from .metrics import (SWD_RESAMPLES, SlicedWasserstein, SWDScore, change_agreement, change_scores,
                      checkerboard_energy, l1, mean_pairwise_distance, psnr, separation_auc, ssim)

log = logging.getLogger(__name__)

# Where the synthetic dataset (and any dataset laid out like it) keeps its ground truth.
GROUND_TRUTH = {"AtoB": ("testA", "gt/AtoB"), "BtoA": ("testB", "gt/BtoA")}
_TARGET = {"AtoB": "B", "BtoA": "A"}


class TranslatorLike(Protocol):
    """What evaluation needs of a loaded run (``translate.Translator`` is one)."""

    config: Config
    device: torch.device

    @property
    def directions(self) -> tuple[str, ...]: ...

    def generator(self, direction: str) -> nn.Module: ...

    def translate_tensor(self, images: torch.Tensor, direction: str) -> torch.Tensor: ...


def domain_channels(config: Config, domain: str) -> int:
    return config.model.channels_a if domain == "A" else config.model.channels_b


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


def evaluate_ground_truth(translator: TranslatorLike, data_dir: str | Path) -> dict[str, dict[str, float]]:
    """For each direction with ground truth under ``data_dir``: L1, PSNR and SSIM of the
    translation and of the identity baseline, averaged over images."""
    results: dict[str, dict[str, float]] = {}
    for direction in GROUND_TRUTH:
        pairs = ground_truth_pairs(Path(data_dir), direction) if direction in translator.directions else []
        if not pairs:
            continue
        sums = dict.fromkeys(("l1", "psnr", "ssim", "identity_l1", "identity_psnr", "identity_ssim"), 0.0)
        agreement = [0.0, 0.0, 0.0]
        config = translator.config
        source_channels = domain_channels(config, direction[0])
        target_channels = domain_channels(config, _TARGET[direction])
        for source, truth in pairs:
            x = pil_to_tensor(load_image(source, source_channels))
            y = pil_to_tensor(load_image(truth, target_channels))
            if y.shape != x.shape:
                y = TF.resize(y, list(x.shape[-2:]), interpolation=InterpolationMode.BICUBIC)
            out = translator.translate_tensor(x.unsqueeze(0), direction)[0]
            unchanged = match_channels(x, target_channels)
            for prefix, image in (("", out), ("identity_", unchanged)):
                sums[f"{prefix}l1"] += l1(image, y)
                sums[f"{prefix}psnr"] += psnr(image, y)
                sums[f"{prefix}ssim"] += ssim(image, y)
            agreement = [a + b for a, b in zip(agreement, change_agreement(unchanged, out, y))]
        results[direction] = ({k: v / len(pairs) for k, v in sums.items()} | change_scores(*agreement)
                              | {"images": len(pairs)})
    if not results:
        raise DataError(f"{data_dir} has no ground truth to evaluate against: expected testA/ with gt/AtoB/ "
                        "or testB/ with gt/BtoA/ (as `cyclegan make-dataset` writes)")
    return results


def load_heldout(paths: list[Path], size: int, channels: int = 3) -> torch.Tensor:
    """Images as (N, channels, size, size) uint8, decoded once; an unreadable one is skipped with a warning.

    uint8 keeps 200 images at 256 px to 39 MB, so the set stays in memory for the whole run.
    """
    images = []
    for path in paths:
        try:
            images.append(to_uint8(eval_tensor(load_image(path, channels), size)))
        except DataError as exc:
            log.warning("held-out image skipped: %s", exc)
    if not images:
        raise DataError(f"none of the {len(paths)} held-out images could be read (first: {paths[0]}); "
                        "check the test folders or the training folders")
    return torch.stack(images)


class HeldOut:
    """The held-out images of both domains and what every evaluation of them reuses.

    Images stay in memory as uint8; the SWD reference descriptors, the do-nothing baselines, the
    inputs' spread and the real images' Inception features are computed on first use and kept, so
    an evaluation each epoch pays only for the new translations.
    """

    def __init__(self, images_a: torch.Tensor, images_b: torch.Tensor, device: torch.device | str = "cpu") -> None:
        self.images = {"A": images_a, "B": images_b}
        self.device = torch.device(device)
        self._cache: dict[tuple[str, str], object] = {}

    @classmethod
    def from_paths(cls, paths_a: list[Path], paths_b: list[Path], size: int,
                   device: torch.device | str = "cpu", channels: tuple[int, int] = (3, 3)) -> "HeldOut":
        return cls(load_heldout(paths_a, size, channels[0]), load_heldout(paths_b, size, channels[1]), device)

    def _cached(self, kind: str, domain: str, compute: Callable[[], object]) -> object:
        if (kind, domain) not in self._cache:
            self._cache[kind, domain] = compute()
        return self._cache[kind, domain]

    def swd(self, images: torch.Tensor, domain: str, resamples: int = 0) -> SWDScore:
        """SWD of ``images`` to this set's real images of ``domain`` (every level, and the coarse
        levels), with bootstrap standard deviations over ``resamples`` resamples of ``images`` (nan without)."""
        reference = self._cached("swd", domain, lambda: SlicedWasserstein(self.images[domain], self.device))
        return reference.measure(images, resamples)

    def swd_identity(self, source: str, target: str) -> float:
        """The do-nothing baseline: SWD of the source domain's images, unchanged (but for their
        channel count), to the target's."""
        unchanged = lambda: match_channels(self.images[source], self.images[target].shape[1])  # noqa: E731
        return self._cached("swd_identity", source, lambda: self.swd(unchanged(), target).value)

    def domain_gap(self, source: str, target: str) -> float:
        """How far the ``source`` images are from the ``target`` ones, in units of how far target
        images are from each other: SWD of source images to one half of the target images, over SWD
        of the other half to that same half, with as many images on both sides (SWD grows as sets
        shrink, so only equal sizes compare). About 1: SWD cannot tell the domains apart on this
        held-out set; nan with fewer than 4 target images."""
        def compute() -> float:
            real = self.images[target]
            half = len(real) // 2
            count = min(len(real) - half, len(self.images[source]))
            if half < 2 or count < 2:
                return float("nan")
            reference = SlicedWasserstein(real[:half], self.device)
            floor = reference(real[half:half + count])
            unchanged = match_channels(self.images[source][:count], real.shape[1])
            return reference(unchanged) / floor if floor > 0 else float("inf")
        return self._cached("domain_gap", source, compute)

    def diversity(self, outputs: torch.Tensor, source: str) -> float:
        """How varied translations of the ``source`` images are relative to those images: 1 keeps
        their variety, 0 means every input maps to the same image (mode collapse)."""
        spread = self._cached("spread", source, lambda: mean_pairwise_distance(self.images[source], device=self.device))
        return mean_pairwise_distance(outputs, device=self.device) / spread if spread > 0 else float("nan")

    def checkerboard(self, source: str) -> float:
        """The inputs' own period-2 energy, which a translation's is divided by."""
        return self._cached("checkerboard", source, lambda: max(checkerboard_energy(self.images[source]), 1e-12))

    def features(self, network: nn.Module, domain: str) -> torch.Tensor:
        return self._cached(f"features-{id(network)}", domain,
                            lambda: image_features(network, self.images[domain], self.device))


def _run(net: nn.Module, images: torch.Tensor, device: torch.device, autocast: Autocast, batch: int) -> torch.Tensor:
    """``net`` over uint8 images in batches; outputs come back to the CPU as floats."""
    outputs = []
    for i in range(0, len(images), batch):
        with autocast():
            outputs.append(net(to_float(images[i:i + batch].to(device))).float().cpu())
    return torch.cat(outputs)


def _direction(G: nn.Module, G_back: nn.Module | None, D: nn.Module | None, heldout: HeldOut, source: str,
               target: str, autocast, batch: int, inception: nn.Module | None) -> dict[str, float]:
    device, real_source, real_target = heldout.device, heldout.images[source], heldout.images[target]
    fake = to_uint8(_run(G, real_source, device, autocast, batch))
    swd = heldout.swd(fake, target, SWD_RESAMPLES)
    result = {
        "swd": swd.value,
        "swd_sd": swd.sd,
        "swd_coarse": swd.coarse,
        "swd_coarse_sd": swd.coarse_sd,
        "swd_identity": heldout.swd_identity(source, target),
        "domain_gap": heldout.domain_gap(source, target),
        "diversity": heldout.diversity(fake, source),
        "checkerboard": checkerboard_energy(fake) / heldout.checkerboard(source),
        "heldout_images": len(real_source),
    }
    if G_back is not None:  # the way back exists (not in a one-way run)
        result["cycle_l1"] = l1(_run(G_back, fake, device, autocast, batch), to_float(real_source))
    if real_target.shape[1] == real_source.shape[1]:  # G can take target images only when channels match
        result["change"] = l1(to_float(fake), to_float(real_source))
        result["identity_mapping_l1"] = l1(_run(G, real_target, device, autocast, batch), to_float(real_target))
    if D is not None:
        real_scores = _run(D, real_target, device, autocast, batch).flatten(1).mean(1)
        fake_scores = _run(D, fake, device, autocast, batch).flatten(1).mean(1)
        result |= {"d_real": float(real_scores.mean()), "d_fake": float(fake_scores.mean()),
                   "d_auc": separation_auc(real_scores, fake_scores)}
    if inception is not None:
        result |= fid_kid(heldout.features(inception, target), image_features(inception, fake, device))
    return result


@torch.inference_mode()
def evaluate_heldout(G_AB: nn.Module, G_BA: nn.Module | None, heldout: HeldOut, *, D_A: nn.Module | None = None,
                     D_B: nn.Module | None = None, autocast: Autocast = nullcontext,
                     batch: int = 8, inception: nn.Module | None = None) -> dict[str, dict[str, float]]:
    """Metrics of both directions (A->B alone when ``G_BA`` is None) on the held-out images.

    Returns ``{"AtoB": {...}, "BtoA": {...}}`` with, per direction: ``swd`` (translations vs real
    target images) and ``swd_identity`` (inputs vs target: the do-nothing baseline), ``cycle_l1``
    (source -> target -> source), ``identity_mapping_l1`` (the generator applied to target-domain
    images, which should pass through), ``diversity``, and with discriminators ``d_real``,
    ``d_fake``, ``d_auc`` (the target domain's discriminator); with an Inception network also
    ``fid`` and ``kid``. Networks are left in the mode they came in and the global RNG is
    untouched, so evaluating mid-training changes nothing about training.
    """
    nets = [n for n in (G_AB, G_BA, D_A, D_B) if n is not None]
    modes = [n.training for n in nets]
    for net in nets:
        net.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            results = {"AtoB": _direction(G_AB, G_BA, D_B, heldout, "A", "B", autocast, batch, inception)}
            if G_BA is not None:
                results["BtoA"] = _direction(G_BA, G_AB, D_A, heldout, "B", "A", autocast, batch, inception)
            return results
    finally:
        for net, mode in zip(nets, modes):
            net.train(mode)


def evaluate_run(translator: TranslatorLike, run_dir: str | Path, data: str | Path | None = None, *,
                 best: bool = False, fid: bool = False, inception_weights: str = "") -> tuple[dict, str]:
    """Everything ``cyclegan evaluate`` reports for the run in ``run_dir``, loaded as ``translator``
    (its latest or ``best`` generators): held-out metrics per direction, the discriminators' scores
    (latest weights only: best/ keeps no discriminators), ground-truth scores when ``data`` has
    them, and FID/KID with ``fid``. Returns (results, where the images came from)."""
    # A run with A->B alone (a one-way CUT run, a one-direction import) is scored in A->B, without the
    # cycle metrics; one with B->A alone gets the CheckpointError that names what it can do.
    g_ab = translator.generator("AtoB")
    g_ba = translator.generator("BtoA") if "BtoA" in translator.directions else None
    config = translator.config
    paths_a, paths_b, note = run_heldout_paths(config.train, data)
    channels = (config.model.channels_a, config.model.channels_b)
    heldout = HeldOut.from_paths(paths_a, paths_b, config.train.crop_size, translator.device, channels)
    discriminators: dict[str, nn.Module] = {}
    present = [n for n in runfolder.DISCRIMINATORS if runfolder.weights_path(run_dir, n).exists()]  # one-way: D_B
    if not best:
        for name in present:
            net = build_discriminator(config.model, name[-1])
            discriminators[name] = runfolder.load_weights(net, runfolder.weights_path(run_dir, name)).to(translator.device)
    inception = inception_network(inception_weights) if fid or inception_weights else None
    if inception is not None:
        inception.to(translator.device)
    results = evaluate_heldout(g_ab, g_ba, heldout,
                               D_A=discriminators.get("D_A"), D_B=discriminators.get("D_B"), inception=inception)
    if data is not None and any(ground_truth_pairs(Path(data), d) for d in GROUND_TRUTH):
        for direction, scores in evaluate_ground_truth(translator, data).items():
            results[direction] |= scores
    return results, note
