"""TensorBoard for ``cyclegan train --tensorboard``: the losses, learning rate, held-out metrics,
warnings and sample grids of a run, in RUN/tensorboard/ (watch with ``tensorboard --logdir checkpoints``).

Off by default, although it costs little: the events repeat what metrics.csv, warnings.json and
samples/ already hold, and whether a run folder gets them should be the user's choice, never a
side effect of which packages happen to be installed (the test extra installs tensorboard, for one).

Only rank 0 writes. Every value is logged at the training step it belongs to, so a resumed run
continues the same curves: the writer starts by telling TensorBoard to drop the events after the
step the run resumed from (training that is being redone), as metrics.csv drops those rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import runfolder
from ..errors import ConfigError
from ..evaluate.table import DIRECTIONS, METRICS, SELECTABLE
from ..images import load_image

INSTALL = ".venv/bin/pip install -e '.[tensorboard]'"


def summary_writer_class() -> type:
    """torch's SummaryWriter; a one-line ConfigError naming the install command when tensorboard is missing.

    The trainer calls it before reading any image, so a missing package costs no time and leaves no
    half-made run folder.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(f"--tensorboard needs the tensorboard package; install it with {INSTALL}, or train "
                          "without --tensorboard") from None
    return SummaryWriter


class TensorBoardLog:
    """One run's TensorBoard writer; ``resumed_at`` is the step a resumed run continues from."""

    def __init__(self, run_dir: str | Path, resumed_at: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        # purge_step: TensorBoard hides the events at and after it that an earlier, interrupted
        # process wrote past the checkpoint this run resumes from.
        purge = resumed_at + 1 if resumed_at is not None else None
        self.writer = summary_writer_class()(str(runfolder.tensorboard_dir(run_dir)), purge_step=purge)

    def losses(self, step: int, lr: float, means: dict[str, float]) -> None:
        """A logging step's mean losses (``loss_G`` -> ``loss/G``) and the learning rate."""
        self.writer.add_scalar("train/lr", lr, step)
        for key, value in means.items():
            self.writer.add_scalar(f"loss/{key.removeprefix('loss_')}", value, step)

    def heldout(self, step: int, flat: dict[str, float]) -> None:
        """An evaluation's metrics (the ``val_*`` names of metrics.csv), grouped as table.METRICS
        groups them (``heldout/swd_AtoB``...), and the best-epoch scores (``select_by/swd``...)."""
        for metric in METRICS:
            for direction in DIRECTIONS:
                value = flat.get(f"val_{metric.key}_{direction}")
                if value is not None:
                    self.writer.add_scalar(f"{metric.group}/{metric.key}_{direction}", value, step)
        for rule in SELECTABLE:
            if f"val_{rule}" in flat:
                self.writer.add_scalar(f"select_by/{rule}", flat[f"val_{rule}"], step)
        self.writer.flush()  # once an evaluation: a watcher sees it at once

    def warning(self, item: dict[str, Any]) -> None:
        """One warnings.json entry, as text under ``warnings/KIND`` (runfolder.RunWarnings hands them on)."""
        self.writer.add_text(f"warnings/{item['kind']}", item["message"], item["step"])

    def samples(self, step: int, epoch: int) -> None:
        """The epoch's sample grid, read back from samples/ (so TensorBoard shows the very same picture)."""
        grid = load_image(runfolder.sample_path(self.run_dir, epoch))
        self.writer.add_image("samples", np.asarray(grid), step, dataformats="HWC")
        self.writer.flush()  # once an epoch: a watcher sees the epoch, a kill loses at most one

    def close(self) -> None:
        self.writer.close()
