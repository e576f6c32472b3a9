"""Plots: sample grids and the curves drawn from metrics.csv."""

from __future__ import annotations

import torch
from PIL import Image

from cyclegan.runfolder import MetricsLog, read_metrics
from cyclegan.evaluate.plots import save_sample_grid, save_training_plots


def _write_metrics(run, epochs: int = 3, with_eval: bool = True) -> None:
    log = MetricsLog(run)
    for epoch in range(1, epochs + 1):
        for step in (2 * epoch - 1, 2 * epoch):
            log.append({"epoch": epoch, "step": step, "lr": 2e-4, "loss_G": 5.0 / step, "loss_D_A": 0.3,
                        "loss_D_B": 0.25})
        if with_eval:
            row = {"epoch": epoch, "step": 2 * epoch}
            for direction in ("AtoB", "BtoA"):
                row |= {f"val_swd_{direction}": 50.0 - epoch, f"val_swd_identity_{direction}": 60.0,
                        f"val_cycle_l1_{direction}": 0.1, f"val_identity_mapping_l1_{direction}": 0.05,
                        f"val_diversity_{direction}": 0.9, f"val_d_real_{direction}": 0.6,
                        f"val_d_fake_{direction}": 0.4, f"val_d_auc_{direction}": 0.8}
            log.append_or_merge(row)


def test_training_plots_are_written_from_metrics_csv(tmp_path):
    _write_metrics(tmp_path)
    written = save_training_plots(tmp_path, best_epoch=3)
    assert {p.name for p in written} == {"losses.png", "lr.png", "heldout.png", "discriminator.png"}
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 300
    assert not list((tmp_path / "plots").glob("*.tmp"))


def test_evaluation_rows_merge_into_the_step_they_belong_to(tmp_path):
    _write_metrics(tmp_path)
    rows = read_metrics(tmp_path)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[1]["loss_G"] and rows[1]["val_swd_AtoB"] == "49" and not rows[0]["val_swd_AtoB"]


def test_a_cut_off_last_row_is_dropped_and_logging_carries_on(tmp_path):
    """A trainer killed mid-append, or a reader racing a live append, sees only whole rows."""
    _write_metrics(tmp_path, with_eval=False)
    path = tmp_path / "metrics.csv"
    path.write_text(path.read_text() + "4,7,0.0")  # epoch, step, then cut off inside the lr column
    assert [r["step"] for r in read_metrics(tmp_path)] == ["1", "2", "3", "4", "5", "6"]
    log = MetricsLog(tmp_path)  # what a resumed run starts from
    log.append({"epoch": 4, "step": 7, "lr": 1e-4, "loss_G": 0.5, "loss_D_A": 0.3, "loss_D_B": 0.2})
    assert [r["step"] for r in read_metrics(tmp_path)] == ["1", "2", "3", "4", "5", "6", "7"]
    assert read_metrics(tmp_path)[-1]["lr"] == "0.0001"


def test_curves_without_data_are_left_out(tmp_path):
    assert save_training_plots(tmp_path) == []  # no metrics.csv yet
    _write_metrics(tmp_path, with_eval=False)
    assert {p.name for p in save_training_plots(tmp_path)} == {"losses.png", "lr.png"}


def test_sample_grid_has_one_row_per_sample_and_one_column_per_tensor(tmp_path):
    columns = [torch.full((2, 3, 16, 16), v) for v in (-1.0, 0.0, 1.0)]
    save_sample_grid(tmp_path / "grid.png", columns)
    with Image.open(tmp_path / "grid.png") as image:
        assert image.size == (3 * 18 + 2, 2 * 18 + 2)
