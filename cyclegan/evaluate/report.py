"""What ``cyclegan report`` (and the app) says about a run, read from its folder alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import runfolder
from .plots import save_training_plots
from .timing import spent_and_left


def run_report(run_dir: str | Path) -> dict[str, Any]:
    """Progress, the best epoch, the latest held-out metrics and the warnings of a run; also
    redraws the plots (their paths are under ``plots``)."""
    run_dir = Path(run_dir)
    config = runfolder.load_config(run_dir)
    t = config.train
    rows = runfolder.read_metrics(run_dir)
    evaluations = [r for r in rows if r.get("val_swd_AtoB")]
    steps = [int(float(r["step"])) for r in rows if r.get("step")]
    best = runfolder.read_best(run_dir)
    latest = {k: float(v) for k, v in evaluations[-1].items() if k.startswith("val_") and v} if evaluations else {}
    epochs_done, epochs_total = runfolder.epochs_done(run_dir), t.epochs + t.epochs_decay
    spent, left = spent_and_left(rows, finished=epochs_done >= epochs_total)
    return {
        "run": str(run_dir),
        "epochs_done": epochs_done,
        "epochs_total": epochs_total,
        "steps": max(steps, default=0),
        "seconds_spent": spent,  # training time so far (None: not recorded)
        "seconds_left": left,  # the trainer's latest estimate (None: none yet; 0 when finished)
        "select_by": f"val_{t.select_by}",
        "best": best,
        "evaluations": len(evaluations),
        "latest_epoch": int(float(evaluations[-1]["epoch"])) if evaluations else None,
        "latest": latest,
        "skipped_steps": sum(int(float(r.get("skipped_steps") or 0)) for r in rows),
        "warnings": runfolder.read_warnings(run_dir),
        "kept_epochs": runfolder.kept_epochs(run_dir),
        "plots": [str(p) for p in save_training_plots(run_dir, best["epoch"] if best else None)],
    }
