"""How fast can a discriminator tell the two domains apart, with no generator in the way?

A CycleGAN generator only learns a style as fast as its discriminator learns what the style looks
like. This trains one PatchGAN discriminator, as the trainer builds it, to score real B images as
real and real A images as fake (the translation a generator that does nothing would offer), batch
1, Adam as published, and prints its held-out AUC (real test B against test A; 0.5: chance) every
``--every`` steps. If it is still near chance after as many steps as a training run has, no
generator can have been taught the style in that run.

    python benchmarks/discriminator_alone.py --data /tmp/quality/photos64 --size 64 --ndf 16 --steps 1500
    python benchmarks/discriminator_alone.py ... --spectral-norm
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

from cyclegan.config import preset
from cyclegan.data.folders import find_images
from cyclegan.evaluate.heldout import load_heldout
from cyclegan.evaluate.metrics import separation_auc
from cyclegan.images import to_float
from cyclegan.models.discriminators import build_discriminator
from cyclegan.train.losses import discriminator_adversarial


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a folder with trainA, trainB, testA, testB")
    parser.add_argument("--size", type=int, default=64, help="the images' side (they are resized to it)")
    parser.add_argument("--ndf", type=int, default=16)
    parser.add_argument("--spectral-norm", action="store_true")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    config = preset("paper")
    config.model.ndf, config.model.spectral_norm = args.ndf, args.spectral_norm
    D = build_discriminator(config.model, "B")
    optimizer = torch.optim.Adam(D.parameters(), args.lr, (config.train.beta1, config.train.beta2))
    sets = {split: find_images(args.data / split) for split in ("trainA", "trainB", "testA", "testB")}
    images = {split: to_float(load_heldout(paths, args.size)) for split, paths in sets.items()}
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; {args.data}, {args.size}px, ndf {args.ndf}, "
          f"{'spectral norm' if args.spectral_norm else 'instance norm'}, lr {args.lr}")
    generator = torch.Generator().manual_seed(args.seed)
    for step in range(1, args.steps + 1):
        a, b = (int(torch.randint(len(images[s]), (1,), generator=generator)) for s in ("trainA", "trainB"))
        loss = discriminator_adversarial(config.train.gan_loss, D(images["trainB"][b:b + 1]), D(images["trainA"][a:a + 1]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.every == 0:
            with torch.no_grad():
                real, fake = (D(images[s]).flatten(1).mean(1) for s in ("testB", "testA"))
            print(f"step {step:5d}: held-out AUC {separation_auc(real, fake):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
