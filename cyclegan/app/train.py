"""The Train tab: save uploads as a dataset, start, stop and resume one background training job, watch it.

A timer polls the job: its progress, the newest sample grid and the log, and it keeps the other
tabs' run lists current, so a run appears for translation as soon as it has weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from ..config import FAMILIES, PRESETS
from ..errors import ConfigError, CycleGANError
from ..evaluate.timing import time_line
from .catalog import NOT_KNOWN, DatasetUploadLimits, RunCatalog, list_datasets, save_uploaded_dataset
from .common import RunLists, escape, open_picture, run_list_updates, user_error
from .jobs import JobStatus, TrainingJobs, preset_epochs

if TYPE_CHECKING:
    import gradio as gr


def job_text(status: JobStatus) -> str:
    """Markdown for the job: its state and message, where it is, and its latest losses."""
    lines = [f"**{status.state}**: {escape(status.message)}"]
    p = status.progress
    if status.run and (p.epoch or status.epochs_done):
        where = f"epoch {p.epoch} of {p.epochs}" if p.epoch else f"{status.epochs_done} epochs done"
        if p.batch is not None:
            where += f", batch {p.batch}/{p.batches}"
        lines.append(f"Progress: {where}; {status.epochs_done} epoch(s) complete; speed {p.rate or NOT_KNOWN}.")
    if status.seconds_spent is not None:
        lines.append(f"Time: {time_line(status.seconds_spent, status.seconds_left, status.state == 'finished')}.")
    if status.losses:
        lines.append("Losses: " + ", ".join(f"{k} {v:.3f}" for k, v in status.losses.items()))
    return "\n\n".join(lines)


@dataclass
class TrainTab:
    """What the timer updates, by name: the job's components, the run lists, and what it sent last."""

    progress: gr.Markdown
    latest: gr.Image
    log: gr.Textbox
    lists: RunLists
    seen_runs: gr.State  # the run lists last sent, as RunListUpdates.signature
    seen_sample: gr.State  # the sample grid last sent, as its path ("" for none)

    @property
    def poll_outputs(self) -> list[gr.components.Component]:
        return [self.progress, self.latest, self.log, *self.lists.outputs, self.seen_runs, self.seen_sample]


class TrainHandlers:
    """The tab's handlers; datasets are saved under, and trained from, ``jobs.datasets``."""

    def __init__(self, jobs: TrainingJobs, catalog: RunCatalog, limits: DatasetUploadLimits | None = None) -> None:
        self.jobs = jobs
        self.catalog = catalog
        self.limits = limits or DatasetUploadLimits()

    def save_dataset(self, name: str, files_a: list[str] | None, files_b: list[str] | None
                     ) -> tuple[str, dict[str, Any]]:
        """Save two uploaded image sets as datasets/NAME; returns (message, dataset dropdown update)."""
        import gradio as gr

        try:
            saved = save_uploaded_dataset(self.jobs.datasets, name, files_a or [], files_b or [], self.limits)
        except CycleGANError as exc:
            raise user_error(exc) from None
        message = (f"Saved dataset `{saved.path.name}`: {saved.kept['trainA']} images in trainA, "
                   f"{saved.kept['trainB']} in trainB.")
        if saved.skipped:
            message += "\n\nSkipped (not readable images):\n" + "\n".join(f"- {escape(s)}" for s in saved.skipped)
        return message, gr.update(choices=list_datasets(self.jobs.datasets), value=saved.path.name)

    def start_training(self, dataset: str | None, run: str, preset_name: str, epochs: float, decay: float,
                       model: str = "cyclegan", one_way: bool = False) -> str:
        try:
            if not dataset:
                raise ConfigError("choose a dataset first (or upload two sets of images and save them)")
            return job_text(self.jobs.start(dataset, run, preset_name, epochs, decay, model, one_way))
        except CycleGANError as exc:
            raise user_error(exc) from None

    def resume_training(self, run: str) -> str:
        try:
            return job_text(self.jobs.resume((run or "").strip()))
        except CycleGANError as exc:
            raise user_error(exc) from None

    def stop_training(self) -> str:
        try:
            return job_text(self.jobs.stop())
        except CycleGANError as exc:
            raise user_error(exc) from None

    def poll(self, tab: TrainTab, current: str | None, seen_runs: str, seen_sample: str
             ) -> dict[gr.components.Component, Any]:
        """The timer: the job's text and log each tick; the sample grid and the run lists only when they
        changed since ``seen_sample`` / ``seen_runs`` (a component left out of the dict is not sent)."""
        status = self.jobs.status()
        updates: dict[Any, Any] = {tab.progress: job_text(status), tab.log: status.log}
        sample = str(status.sample) if status.sample else ""
        if sample != seen_sample:
            updates |= {tab.latest: open_picture(status.sample), tab.seen_sample: sample}
        lists = run_list_updates(self.catalog, current)
        if lists.signature != seen_runs:
            updates |= tab.lists.updates(lists) | {tab.seen_runs: lists.signature}
        return updates


def build(handlers: TrainHandlers, lists: RunLists, timer: gr.Timer) -> TrainTab:
    """The Train tab; each ``timer`` tick polls the job and refreshes ``lists`` when the runs changed."""
    import gradio as gr

    datasets = list_datasets(handlers.jobs.datasets)
    epochs, decay = preset_epochs("tiny")
    with gr.Tab("Train", id="train"):
        gr.Markdown("Train a new run in the background (one job at a time). Stopping saves a "
                    "resumable checkpoint; *Resume* continues the run named below.")
        with gr.Row():
            dataset = gr.Dropdown(datasets, value=datasets[0] if datasets else None, scale=5,
                                  allow_custom_value=True,
                                  label="Dataset (folders with trainA/ and trainB/ under the datasets folder)",
                                  elem_id="dataset-select")
            refresh_data = gr.Button("Refresh datasets", scale=1, size="sm")
        with gr.Accordion("Or upload two sets of images as a new dataset", open=False):
            with gr.Row():
                files_a = gr.File(file_count="multiple", label="Domain A images")
                files_b = gr.File(file_count="multiple", label="Domain B images")
            with gr.Row():
                new_name = gr.Textbox(label="New dataset name", placeholder="e.g. horses_zebras")
                save = gr.Button("Save as dataset")
            saved = gr.Markdown()
        with gr.Row():
            preset_dd = gr.Dropdown(list(PRESETS), value="tiny", label="Preset",
                                    info="tiny: CPU demo; paper: the published settings; quality: paper with a "
                                         "colour transform and no identity loss (styles that keep the layout); "
                                         "fast: one GPU")
            model_dd = gr.Dropdown(list(FAMILIES), value="cyclegan", label="Model",
                                   info="cut, fastcut: CUT (Park et al., 2020), both ways; docs/cut.md")
            one_way = gr.Checkbox(False, label="One way (A->B only)", elem_id="one-way",
                                  info="cut, fastcut: about half the time; the run cannot translate B->A")
            run_name = gr.Textbox(label="Run name", placeholder="e.g. shapes_tiny", elem_id="run-name")
            n_epochs = gr.Number(epochs, precision=0, minimum=1, label="Epochs at full learning rate",
                                 elem_id="epochs")
            n_decay = gr.Number(decay, precision=0, minimum=0, label="Epochs of learning-rate decay",
                                elem_id="epochs-decay")
        with gr.Row():
            start = gr.Button("Start training", variant="primary", elem_id="start-training")
            stop = gr.Button("Stop (saves a resumable checkpoint)", variant="stop", elem_id="stop-training")
            resume = gr.Button("Resume the run named above", elem_id="resume-training")
        progress = gr.Markdown(job_text(handlers.jobs.status()), elem_id="train-progress")
        latest = gr.Image(label="Latest sample grid", type="pil", format="png", interactive=False)
        log_box = gr.Textbox(label="Log (last lines)", lines=8, max_lines=8, interactive=False)
        tab = TrainTab(progress=progress, latest=latest, log=log_box, lists=lists,
                       seen_runs=gr.State(""), seen_sample=gr.State(""))

    refresh_data.click(lambda: gr.update(choices=list_datasets(handlers.jobs.datasets)), None, dataset,
                       api_name=False, concurrency_limit=None)
    save.click(handlers.save_dataset, [new_name, files_a, files_b], [saved, dataset], api_name="save_dataset",
               concurrency_limit=1)
    preset_dd.change(preset_epochs, preset_dd, [n_epochs, n_decay], api_name=False, concurrency_limit=None)
    start.click(handlers.start_training, [dataset, run_name, preset_dd, n_epochs, n_decay, model_dd, one_way],
                progress, api_name="start_training", concurrency_limit=1, concurrency_id="jobs")
    stop.click(handlers.stop_training, None, progress, api_name="stop_training", concurrency_limit=1,
               concurrency_id="jobs")
    resume.click(handlers.resume_training, run_name, progress, api_name="resume_training", concurrency_limit=1,
                 concurrency_id="jobs")
    timer.tick(partial(handlers.poll, tab), [lists.run, tab.seen_runs, tab.seen_sample], tab.poll_outputs,
               api_name="poll", concurrency_limit=None, show_progress="hidden")
    return tab
