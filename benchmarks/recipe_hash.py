"""A fingerprint of what a preset trains: its four networks after 24 steps on fixed random images.

Run it in two checkouts (or before and after a change) to show a recipe is bit-identical, e.g. that
`paper` trains exactly as in an earlier release:

    git worktree add /tmp/old RELEASE && (cd /tmp/old && PYTHONPATH=$PWD python ~/cyclegan/benchmarks/recipe_hash.py)
    python benchmarks/recipe_hash.py                     # this checkout; the same HASH line means the same weights

Run both on one machine: the weights follow the CPU's floating-point rounding, so two machines can
print different hashes for the same code (BENCHMARKS.md, "More 128-px seeds").

Shrunk networks (ngf/ndf 8, 2 blocks, 32 px crops) on one CPU thread, evaluation off; only the public
``preset``/``train`` API is used, so it runs against older releases too.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cyclegan.config import preset
from cyclegan.train.loop import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        rng = np.random.default_rng(0)
        for domain in ("trainA", "trainB"):
            (data / domain).mkdir(parents=True)
            for i in range(12):
                Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(data / domain / f"{i}.png")
        config = preset(args.preset)
        m, t = config.model, config.train
        m.ngf = m.ndf = 8
        m.n_blocks = 2
        t.domain_a, t.domain_b = str(data / "trainA"), str(data / "trainB")
        t.load_size, t.crop_size, t.batch_size, t.epochs, t.epochs_decay = 36, 32, 1, 1, 1
        t.eval_every, t.device = 0, "cpu"
        run = Path(tmp) / "run"
        train(config, run)
        state = torch.load(run / "train_state.pt", weights_only=True)
        digest = hashlib.sha256()
        for name in ("G_AB", "G_BA", "D_A", "D_B"):
            for key, value in sorted(state["models"][name].items()):
                digest.update(key.encode())
                digest.update(value.cpu().numpy().tobytes())
        shutil.rmtree(run)
    print(f"HASH {args.preset} {digest.hexdigest()}")


if __name__ == "__main__":
    main()
