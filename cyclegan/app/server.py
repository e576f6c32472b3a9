"""The web app's server: its settings, the state its tabs share, the page made of the tabs, and serving it.

Each tab is one module (``translate``, ``runs``, ``train``) whose handlers take and return plain
values, so they are tested without a server; this module makes the shared state once and hands each
tab the parts it uses. Names from the browser go through ``catalog.safe_child`` in every tab.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..devices import select_device
from ..errors import CycleGANError
from . import runs, train, translate
from .catalog import DatasetUploadLimits, RunCatalog
from .common import RunLists
from .jobs import TrainingJobs
from .settings import AppSettings, add_app_arguments, settings_from_args
from .train import TrainHandlers
from .translate import ModelCache, TranslateHandlers, UploadLimits, load_translator

if TYPE_CHECKING:
    import gradio as gr

@dataclass
class AppState:
    """What the tabs share, made once per server: one of each, since each is a limit or a cache for the
    whole process (the model cache bounds memory, the job runner allows one training at a time, the
    catalog inspects each run folder once for every tab)."""

    settings: AppSettings
    catalog: RunCatalog
    models: ModelCache
    jobs: TrainingJobs
    limits: UploadLimits
    work: Path  # per-request output folders of the Translate tab

    @classmethod
    def from_settings(cls, settings: AppSettings) -> AppState:
        work = Path(tempfile.gettempdir()) / "cyclegan-app"
        work.mkdir(parents=True, exist_ok=True)
        return cls(settings=settings,
                   catalog=RunCatalog(settings.checkpoints),
                   models=ModelCache(settings.max_models, partial(load_translator, device=settings.device)),
                   jobs=TrainingJobs(settings.checkpoints, settings.datasets, device=settings.device),
                   limits=UploadLimits(int(settings.max_upload_mb * 2**20), int(settings.max_megapixels * 1e6),
                                       settings.max_side),
                   work=work)


def build_ui(state: AppState) -> gr.Blocks:
    """The three tabs, each given the parts of ``state`` it uses."""
    import gradio as gr

    s = state.settings
    with gr.Blocks(title="cyclegan", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# cyclegan\nUnpaired image-to-image translation: translate images with a trained run, "
                    "look at how runs trained, or train a new one.")
        # The Train tab's timer sits outside the tabs: an inactive tab's components are not on the page,
        # and the timer must tick (keeping the run lists current) whichever tab is shown.
        timer = gr.Timer(s.poll_seconds)
        with gr.Tabs():
            translate_tab = translate.build(TranslateHandlers(state.catalog, state.models, state.limits, state.work),
                                            s.max_upload_mb, s.concurrency)
            runs_tab = runs.build(state.catalog, demo)
            lists = RunLists(run=translate_tab.run, notice=translate_tab.no_runs, runs=runs_tab.run)
            train.build(TrainHandlers(state.jobs, state.catalog,
                                      DatasetUploadLimits(max_pixels=state.limits.max_pixels)), lists, timer)
        lists.refresh_on(translate_tab.refresh, demo, state.catalog)
    return demo


def serve(settings: AppSettings) -> None:
    """Build the app and serve it until interrupted; a running training job is stopped cleanly."""
    import signal

    select_device(settings.device)  # a bad --device fails here, before the server starts
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup probes, one line each
    state = AppState.from_settings(settings)
    demo = build_ui(state)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    # SIGTERM (a service manager, a test) takes the same clean path as Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        demo.launch(server_name=settings.host, server_port=settings.port, share=settings.share,
                    max_file_size=int(settings.max_upload_mb * 2**20), footer_links=["api", "settings"],
                    show_error=True, auth=settings.auth)
    except KeyboardInterrupt:
        pass
    finally:
        state.jobs.shutdown()
        demo.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python app.py``: the web app's own entry point (``cyclegan app`` takes the same flags)."""
    import sys

    parser = argparse.ArgumentParser(prog="app.py", description="The cyclegan web app (Gradio).")
    add_app_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        serve(settings_from_args(args))
    except CycleGANError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
