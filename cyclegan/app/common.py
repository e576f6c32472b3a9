"""What more than one tab uses: safe text, user errors, pictures from run folders, and the run lists.

The run lists sit in two tabs (the Translate dropdown with its no-runs notice, the Runs dropdown) and
change from two places (Translate's *Refresh runs* button, the Train tab's timer), so both the
components and their updates are named here once.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from PIL import Image

from .catalog import NOT_KNOWN, RunCatalog, RunInfo, hide_server_paths

if TYPE_CHECKING:
    import gradio as gr

NO_RUNS = ("**No trained runs yet** in `{root}`. Make one with `make demo` (the synthetic shapes dataset, about "
           "11 minutes on a 2-core CPU), or train on your own images in the **Train** tab; runs appear here when the "
           "page loads or when you press *Refresh runs*.")


def escape(text: str) -> str:
    """Markdown and gr.Error render HTML: neutralise tags in file names and messages, keep quotes readable."""
    return html.escape(text, quote=False)


def user_error(exc: Exception) -> Exception:
    """A CycleGANError as the message the UI shows (gr.Error renders HTML, so the text is escaped; server
    paths are cut to their last parts)."""
    import gradio as gr

    return gr.Error(escape(hide_server_paths(str(exc))), print_exception=False)


def open_picture(path: Path | None) -> Image.Image | None:
    """A PNG from a run folder as an image (served from Gradio's cache, so the run folder stays private)."""
    if path is None:
        return None
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (OSError, ValueError):
        return None


def run_choices(catalog: RunCatalog, usable_only: bool) -> list[tuple[str, str]]:
    """The runs as dropdown choices (label, name): Translate offers the usable ones, Runs shows them all."""
    return [(r.label, r.name) for r in catalog.runs() if r.usable or not usable_only]


def describe_run(info: RunInfo) -> str:
    """Markdown about one run for the Translate and Runs tabs."""
    if not info.usable:
        return f"**{escape(info.name)}** cannot be used: {escape(info.reason)}"
    total = info.epochs_total or NOT_KNOWN
    lines = [f"**{escape(info.name)}**: domain A = `{info.domain_a}`, domain B = `{info.domain_b}`; "
             f"{info.epochs_done} of {total} epochs trained; preset `{info.preset}`.",
             f"Best held-out metric: {info.best}. Best weights: {'available' if info.has_best else 'not yet'}."]
    if info.resumable and info.epochs_total and info.epochs_done < info.epochs_total:
        lines.append("Training stopped early: resume it from the Train tab.")
    if info.warnings:
        lines.append("Warnings from training:\n" + "\n".join(f"- {escape(w)}" for w in info.warnings))
    return "\n\n".join(lines)


class RunListUpdates(NamedTuple):
    """New values for the components that list runs (``RunLists``), by the same names."""

    run: dict[str, Any]
    notice: dict[str, Any]
    runs: dict[str, Any]

    @property
    def signature(self) -> str:
        """The choices as text: the Train tab's timer keeps it to send the lists only when they change."""
        return json.dumps([self.run["choices"], self.runs["choices"], self.notice["value"]])


def runs_notice(catalog: RunCatalog, usable: bool) -> str:
    """Translate's notice: how to make a run when there is none, and which folders were skipped and why."""
    lines = [] if usable else [NO_RUNS.format(root=catalog.root)]
    lines += [f"Skipped {escape(name)}: {escape(reason)}." for name, reason in catalog.skipped()]
    return "\n\n".join(lines)


def run_list_updates(catalog: RunCatalog, current: str | None = None) -> RunListUpdates:
    """The run lists for the run folders now on disk; Translate keeps ``current`` while it is still usable."""
    import gradio as gr

    usable = run_choices(catalog, usable_only=True)
    names = [name for _, name in usable]
    value = current if current in names else (names[0] if names else None)
    notice = runs_notice(catalog, bool(usable))
    return RunListUpdates(run=gr.update(choices=usable, value=value, visible=bool(usable)),
                          notice=gr.update(value=notice, visible=bool(notice)),
                          runs=gr.update(choices=run_choices(catalog, usable_only=False)))


@dataclass
class RunLists:
    """The components that list runs: Translate's run dropdown and no-runs notice, the Runs dropdown."""

    run: gr.Dropdown
    notice: gr.Markdown
    runs: gr.Dropdown

    @property
    def outputs(self) -> list[gr.components.Component]:
        return [self.run, self.notice, self.runs]

    def updates(self, values: RunListUpdates) -> dict[gr.components.Component, Any]:
        """``values`` keyed by component, the form a Gradio handler returns to update outputs by name."""
        return {self.run: values.run, self.notice: values.notice, self.runs: values.runs}

    def refresh_on(self, button: gr.Button, demo: gr.Blocks, catalog: RunCatalog) -> None:
        """Refresh every run list when ``button`` is pressed and whenever a page loads, so a reload shows
        the runs on disk now rather than those of the server's start (Translate's selection is kept if
        still usable)."""
        def refresh(current: str | None) -> dict[gr.components.Component, Any]:
            return self.updates(run_list_updates(catalog, current))

        button.click(refresh, self.run, self.outputs, api_name="refresh_runs", concurrency_limit=None)
        demo.load(refresh, self.run, self.outputs, api_name=False, concurrency_limit=None)
