"""Pictures of a run: sample grids and, from metrics.csv, curves (matplotlib, PNG).

The held-out panels come from ``table.METRICS``: every metric with a panel title gets one,
with its do-nothing baseline dashed where it has one.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from torchvision.utils import make_grid

from .. import runfolder
from ..images import as_rgb, png_bytes, tensor_to_pil
from .table import METRICS


def save_sample_grid(path: Path, columns: list[torch.Tensor]) -> None:
    """One row per sample, one column per tensor in ``columns`` (each (N, C, H, W) in [-1, 1];
    grayscale columns are shown as gray RGB beside colour ones).

    The trainer passes real A, A->B, A->B->A, real B, B->A, B->A->B, so a row reads left to right
    as a translation and its round trip.
    """
    columns = [as_rgb(c.float().cpu()) for c in columns]
    n = columns[0].shape[0]
    tiles = torch.stack(columns, 1).reshape(n * len(columns), *columns[0].shape[1:])
    grid = make_grid(tiles.clamp(-1, 1), nrow=len(columns), padding=2, pad_value=1.0)
    runfolder.atomic_write_bytes(path, png_bytes(tensor_to_pil(grid)))


_HELDOUT_PANELS = [m for m in METRICS if m.title]


def _series(rows: list[dict[str, str]], x: str, y: str) -> tuple[list[float], list[float]]:
    """(x, y) over the rows where both are filled and finite."""
    xs, ys = [], []
    for row in rows:
        try:
            xv, yv = float(row.get(x) or "nan"), float(row.get(y) or "nan")
        except ValueError:
            continue
        if math.isfinite(xv) and math.isfinite(yv):
            xs.append(xv)
            ys.append(yv)
    return xs, ys


def _save_figure(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    runfolder.atomic_write_bytes(path, buffer.getvalue())
    return path


def _mark_best(ax, best_epoch: int | None) -> None:
    """Whole-number epoch ticks and a dotted line at the best epoch."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if best_epoch is not None:
        ax.axvline(best_epoch, color="tab:green", linestyle=":", linewidth=1.5, label=f"best (epoch {best_epoch})")


def save_training_plots(run_dir: str | Path, best_epoch: int | None = None) -> list[Path]:
    """Draw the run's curves from its metrics.csv into ``plots/``; returns the files written.

    losses.png (every loss against the step), lr.png, heldout.png (held-out metrics against the
    epoch, the best epoch marked) and discriminator.png (mean scores on real and translated
    images, and how well they separate). A curve with no data yet is left out.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, safe off the main thread

    run_dir = Path(run_dir)
    rows = runfolder.read_metrics(run_dir)
    written = []
    loss_columns = sorted({k for row in rows for k in row if k.startswith("loss_")})
    if loss_columns:
        fig = Figure(figsize=(8, 4.5))
        ax = fig.subplots()
        for column in loss_columns:
            ax.plot(*_series(rows, "step", column), label=column.removeprefix("loss_"))
        ax.set(xlabel="step", ylabel="loss (mean since the previous row)", title="Training losses")
        ax.legend(fontsize="small", ncol=2)
        ax.grid(alpha=0.3)
        written.append(_save_figure(fig, runfolder.plot_path(run_dir, "losses")))
    if any(row.get("lr") for row in rows):
        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
        ax.plot(*_series(rows, "step", "lr"))
        ax.set(xlabel="step", ylabel="learning rate", title="Learning rate")
        ax.grid(alpha=0.3)
        written.append(_save_figure(fig, runfolder.plot_path(run_dir, "lr")))
    panels = [m for m in _HELDOUT_PANELS if _series(rows, "epoch", f"val_{m.key}_AtoB")[0]]
    if panels:
        fig = Figure(figsize=(11, 3.6 * math.ceil(len(panels) / 2)), layout="constrained")
        axes = fig.subplots(math.ceil(len(panels) / 2), 2, squeeze=False).flatten()
        for ax, metric in zip(axes, panels):
            for direction, colour in (("AtoB", "tab:blue"), ("BtoA", "tab:orange")):
                ax.plot(*_series(rows, "epoch", f"val_{metric.key}_{direction}"), marker="o", color=colour,
                        label=direction)
                if metric.baseline:
                    ax.plot(*_series(rows, "epoch", f"val_{metric.baseline}_{direction}"), linestyle="--",
                            color=colour)
            _mark_best(ax, best_epoch)
            ax.set(xlabel="epoch", ylabel=metric.axis, title=metric.title)
            ax.legend(fontsize="small")
            ax.grid(alpha=0.3)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        written.append(_save_figure(fig, runfolder.plot_path(run_dir, "heldout")))
    if _series(rows, "epoch", "val_d_auc_AtoB")[0]:
        fig = Figure(figsize=(11, 3.8), layout="constrained")
        scores, separation = fig.subplots(1, 2)
        for direction, domain, colour in (("AtoB", "B", "tab:blue"), ("BtoA", "A", "tab:orange")):
            scores.plot(*_series(rows, "epoch", f"val_d_real_{direction}"), marker="o", color=colour,
                        label=f"D_{domain} on real {domain}")
            scores.plot(*_series(rows, "epoch", f"val_d_fake_{direction}"), marker="x", linestyle="--", color=colour,
                        label=f"D_{domain} on translated")
            separation.plot(*_series(rows, "epoch", f"val_d_auc_{direction}"), marker="o", color=colour,
                            label=f"D_{domain}")
        separation.axhline(0.5, color="grey", linewidth=1, label="cannot tell (0.5)")
        separation.axhline(0.99, color="tab:red", linestyle=":", linewidth=1, label="dominance warning")
        scores.set(xlabel="epoch", ylabel="mean patch score", title="Discriminator scores (held out)")
        separation.set(xlabel="epoch", ylabel="AUC real vs translated", title="How well D separates them",
                       ylim=(0, 1.02))
        for ax in (scores, separation):
            _mark_best(ax, best_epoch)
            ax.legend(fontsize="small")
            ax.grid(alpha=0.3)
        written.append(_save_figure(fig, runfolder.plot_path(run_dir, "discriminator")))
    return written
