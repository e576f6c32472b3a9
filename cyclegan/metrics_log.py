"""metrics.csv: one row per logged step or evaluation, columns growing as new metrics appear."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_bytes


METRICS_FILE = "metrics.csv"


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The complete rows of a metrics.csv; empty when it does not exist (yet) or cannot be read.

    The app and the report read the file while a trainer may be appending to it, and a killed
    trainer can leave a cut-off last line: a row with fewer fields than the header is dropped
    rather than handed on with holes.
    """
    try:
        return _parse(Path(path).read_text())[1]
    except (OSError, csv.Error):
        return []


def _parse(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the complete rows of metrics.csv's text."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = [dict(row) for row in reader if None not in row.values() and None not in row]
    return list(reader.fieldnames or []), rows


class MetricsLog:
    """Append-only CSV that is rewritten (atomically) only when a row brings a new column."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, str]] = []
        self.columns: list[str] = []
        # A file cut off mid-row (a killed run) is rewritten before the next row goes in, or that
        # row would be glued onto the broken one.
        self._damaged = False
        if self.path.exists():
            text = self.path.read_text()
            self.columns, self.rows = _parse(text)
            self._damaged = bool(text) and not text.endswith("\n")

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step``: on resume they belong to training that is being redone."""
        kept = [r for r in self.rows if int(float(r.get("step") or 0)) <= step]
        if len(kept) != len(self.rows):
            self.rows = kept
            self._rewrite()

    def append(self, row: dict[str, Any]) -> None:
        row = {k: _format(v) for k, v in row.items()}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new or self._damaged or not self.path.exists():
            self.columns += new
            self._rewrite()
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns, lineterminator="\n").writerow(row)

    def append_or_merge(self, row: dict[str, Any]) -> None:
        """Append ``row``, or fill it into the last row when that one is for the same step.

        An epoch's held-out evaluation lands on the step its last losses were logged at; merging
        keeps one row per step.
        """
        if not self.rows or "step" not in row or self.rows[-1].get("step") != _format(row["step"]):
            self.append(row)
            return
        merged = {k: _format(v) for k, v in row.items()}
        self.rows[-1].update(merged)
        self.columns += [k for k in merged if k not in self.columns]
        self._rewrite()

    def _rewrite(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(self.path, buffer.getvalue().encode())
        self._damaged = False


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
