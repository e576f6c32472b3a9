"""The web app's server: its settings, the state its tabs share, the page made of the tabs, and serving it.

Each tab is one module (``translate``, ``runs``, ``train``) whose handlers take and return plain
values, so they are tested without a server; this module makes the shared state once and hands each
tab the parts it uses. Names from the browser go through ``catalog.safe_child`` in every tab.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..devices import select_device
from ..errors import ConfigError, CycleGANError
from . import runs, train, translate
from .catalog import DatasetUploadLimits, RunCatalog
from .common import RunLists
from .jobs import TrainingJobs
from .train import TrainHandlers
from .translate import ModelCache, TranslateHandlers, UploadLimits, load_translator

if TYPE_CHECKING:
    import gradio as gr

AUTH_ENV = "CYCLEGAN_APP_AUTH"  # USER:PASS, for --auth without the password on the command line


@dataclass
class AppSettings:
    """Everything ``cyclegan app`` / ``python app.py`` can be told."""

    checkpoints: Path = Path("checkpoints")
    datasets: Path = Path("datasets")
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    device: str = "auto"
    max_models: int = 2
    concurrency: int = 2
    queue_size: int = 64
    max_side: int = 1024
    max_upload_mb: float = 20.0
    max_megapixels: float = 40.0
    poll_seconds: float = 1.5
    auth: tuple[str, str] | None = None  # (user, password) for Gradio's own login page
    trust_network: bool = False  # serve beyond this machine without auth, knowingly


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
        lists.refresh_on(translate_tab.refresh, state.catalog)
    return demo


def add_app_arguments(parser: argparse.ArgumentParser) -> None:
    """The app's flags, shared by ``python app.py`` and ``cyclegan app``."""
    d = AppSettings()
    parser.add_argument("--checkpoints", type=Path, default=d.checkpoints, help="folder of run folders (default: checkpoints)")
    parser.add_argument("--datasets", type=Path, default=d.datasets, help="folder of datasets (default: datasets)")
    parser.add_argument("--host", default=d.host, help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=d.port, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link (off by default)")
    parser.add_argument("--device", default=d.device, help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--max-models", type=int, default=d.max_models, help="models kept loaded (default 2)")
    parser.add_argument("--concurrency", type=int, default=d.concurrency,
                        help="translations run at once; more requests wait in the queue (default 2)")
    parser.add_argument("--max-side", type=int, default=d.max_side,
                        help="larger uploads are resized to this many pixels on their long side (default 1024)")
    parser.add_argument("--max-upload-mb", type=float, default=d.max_upload_mb, help="upload size limit (default 20)")
    parser.add_argument("--auth", metavar="USER:PASS",
                        help=f"ask for this user name and password (Gradio's login page); needed with a --host other "
                             f"than 127.0.0.1 and with --share. ${AUTH_ENV} is read when it is not given, which "
                             "keeps the password out of the process list")
    parser.add_argument("--trust-network", action="store_true",
                        help="serve a --host beyond this machine without --auth: everyone who can reach it may "
                             "translate, and train on this machine")


def settings_from_args(args: argparse.Namespace) -> AppSettings:
    for name, minimum in (("max_models", 1), ("concurrency", 1), ("max_side", 16), ("port", 1)):
        if getattr(args, name) < minimum:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {minimum}, got {getattr(args, name)}")
    auth = _auth(args.auth or os.environ.get(AUTH_ENV))
    exposed = "--share" if args.share else None if _loopback(args.host) else f"--host {args.host}"
    if exposed and auth is None and not args.trust_network:
        raise ConfigError(f"{exposed} lets anyone who can reach it use the app, its Train tab included; add --auth "
                          "USER:PASS (or set $" + AUTH_ENV + "), or --trust-network if the network is yours alone")
    return AppSettings(checkpoints=args.checkpoints, datasets=args.datasets, host=args.host, port=args.port,
                       share=args.share, device=args.device, max_models=args.max_models,
                       concurrency=args.concurrency, max_side=args.max_side, max_upload_mb=args.max_upload_mb,
                       auth=auth, trust_network=args.trust_network)


def _auth(text: str | None) -> tuple[str, str] | None:
    """``USER:PASS`` as (user, password); None when not given."""
    if not text:
        return None
    user, _, password = text.partition(":")
    if not user or not password:
        raise ConfigError("--auth takes USER:PASS, both non-empty (the password may contain ':')")
    return user, password


def _loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, localhost); 0.0.0.0 is every interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


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
