"""The Runs tab: how a run trained, read from its folder (config, loss and held-out curves, sample grids),
and which of several runs to use (``cyclegan compare``'s table and pick)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from .. import runfolder
from ..errors import CycleGANError
from ..evaluate.compare import compare_runs, comparison_lines
from ..evaluate.table import BY_KEY
from .catalog import RunCatalog, safe_child
from .common import describe_run, escape, open_picture, run_choices

if TYPE_CHECKING:
    import gradio as gr
    import pandas as pd
    from PIL import Image


def losses_frame(rows: list[dict[str, str]]) -> pd.DataFrame:
    """metrics.csv rows as a long table (step, value, series) of the loss columns, for gr.LinePlot."""
    import pandas as pd

    records = [{"step": float(r["step"]), "value": float(v), "series": k.removeprefix("loss_")}
               for r in rows if r.get("step") for k, v in r.items() if k.startswith("loss_") and _is_number(v)]
    return pd.DataFrame(records, columns=["step", "value", "series"])


CHART = BY_KEY["swd"]  # the held-out metric charted per epoch, with its do-nothing baseline


def metrics_frame(rows: list[dict[str, str]]) -> pd.DataFrame:
    """The charted metric's columns of metrics.csv per epoch: each direction, their mean, and the
    input-unchanged baselines. One scale on one chart; the other held-out metrics, on their own
    scales, are in the run's plots/heldout.png, shown in the gallery below."""
    import pandas as pd

    wanted = {f"val_{CHART.key}"} | {f"val_{key}_{direction}" for key in (CHART.key, CHART.baseline)
                                     for direction in ("AtoB", "BtoA")}
    records = [{"epoch": float(r["epoch"]), "value": float(v), "series": k.removeprefix("val_")}
               for r in rows if _is_number(r.get("epoch"))
               for k, v in r.items() if k in wanted and _is_number(v)]
    return pd.DataFrame(records, columns=["epoch", "value", "series"])


def _is_number(value: str | None) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError):
        return False


def grid_caption(epoch: int, run_dir) -> str:
    """'epoch 7 (chosen: best/)' for the chosen epoch; '(kept: translate --epoch 7)' for kept ones."""
    best = runfolder.read_best(run_dir)
    notes = []
    if best and best.get("epoch") == epoch:
        notes.append("chosen: best/ — " + str(best.get("reason") or best["metric"]))
    if epoch in runfolder.kept_epochs(run_dir):
        notes.append(f"kept: translate --epoch {epoch}")
    return f"epoch {epoch}" + (f" ({'; '.join(notes)})" if notes else "")


def show_run(catalog: RunCatalog, name: str | None
             ) -> tuple[str, str, pd.DataFrame, pd.DataFrame, list[tuple[Image.Image, str]]]:
    """(info markdown, config json, losses table, metrics table, sample grids) for the Runs tab."""
    empty = ("", "", losses_frame([]), metrics_frame([]), [])
    if not name:
        return empty
    try:
        run_dir = safe_child(catalog.root, name, "run")
        info = catalog.get(name)
    except CycleGANError as exc:
        return (escape(str(exc)),) + empty[1:]
    try:
        config = json.dumps(json.loads((run_dir / runfolder.CONFIG_FILE).read_text()), indent=2)
    except (OSError, ValueError) as exc:
        config = f"config.json cannot be read: {exc}"
    rows = runfolder.read_metrics(run_dir)
    pictures = [(open_picture(p), grid_caption(epoch, run_dir)) for epoch, p in runfolder.sample_grids(run_dir)]
    pictures += [(open_picture(p), p.stem) for p in runfolder.plot_files(run_dir)]
    pictures = [(img, caption) for img, caption in pictures if img is not None]
    return describe_run(info), config, losses_frame(rows), metrics_frame(rows), pictures


def compare_for_app(catalog: RunCatalog, names: list[str] | None) -> str:
    """``cyclegan compare`` for runs chosen in the app (names inside the checkpoints folder), as markdown."""
    if not names or len(names) < 2:
        return "Choose two or more runs to compare."
    try:
        comparison = compare_runs([safe_child(catalog.root, name, "run") for name in names])
    except CycleGANError as exc:
        return escape(str(exc))
    lines = comparison_lines(comparison)
    return "```\n" + "\n".join(lines[:-2]) + "\n```\n\n**" + escape(lines[-1]) + "**"


@dataclass
class RunsTab:
    """The tab's component that is updated from outside it: its run list."""

    run: gr.Dropdown


def build(catalog: RunCatalog, demo: gr.Blocks) -> RunsTab:
    """The Runs tab; the run chosen when the page loads is shown at once (``demo.load``)."""
    import gradio as gr

    every = run_choices(catalog, usable_only=False)
    with gr.Tab("Runs", id="runs"):
        run = gr.Dropdown(every, value=every[0][1] if every else None, label="Run", allow_custom_value=True,
                          elem_id="runs-select")
        info = gr.Markdown()
        with gr.Row():
            loss_plot = gr.LinePlot(x="step", y="value", color="series", label="Losses (metrics.csv)")
            metric_plot = gr.LinePlot(x="epoch", y="value", color="series",
                                      label="Held-out SWD per epoch, lower is better "
                                            "(swd_identity: the input unchanged)")
        grids = gr.Gallery(label="Sample grids, newest first: real A, A→B, A→B→A, real B, B→A, B→A→B",
                           columns=1, format="png", object_fit="contain", height="auto")
        config = gr.Code(language="json", label="config.json")
        with gr.Accordion("Compare runs: which one to use", open=False):
            chosen = gr.Dropdown(every, multiselect=True, label="Runs trained on the same folders",
                                 elem_id="compare-select")
            compare = gr.Button("Compare")
            verdict = gr.Markdown()
    chosen.focus(lambda: gr.update(choices=run_choices(catalog, usable_only=False)), None, chosen, api_name=False)
    compare.click(partial(compare_for_app, catalog), chosen, verdict, api_name="compare_runs",
                  concurrency_limit=None)
    show = partial(show_run, catalog)
    outputs = [info, config, loss_plot, metric_plot, grids]
    run.change(show, run, outputs, api_name="show_run", concurrency_limit=None)
    demo.load(show, run, outputs, api_name=False, concurrency_limit=None)
    return RunsTab(run=run)
