"""The README and docs/ cannot drift from the code.

Every `cyclegan …` command line in a code block of README.md or docs/*.md is parsed with the real
argument parser (built, never run), so a renamed or removed flag, a dropped choice or a missing
required argument fails here. Every link to a section (BENCHMARKS.md's, where the README's figures
come from, or another page's) must name a heading that exists, and the flags the docs say a resumed
run may change are the ones the code allows.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cyclegan.cli import build_parser
from cyclegan.config import RESUMABLE_OVERRIDES

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"(?:^|\s)(?:\S*/)?cyclegan\s+(?=[a-z-])")  # `cyclegan x`, `.venv/bin/cyclegan x`, `-m cyclegan x`


def code_blocks(text: str) -> list[str]:
    """The contents of the page's fenced code blocks, except Python and JSON ones."""
    blocks = re.findall(r"^```([^\n]*)\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return [body for lang, body in blocks if lang.strip() not in ("python", "json")]


def command_lines(page: Path) -> list[tuple[int, list[str]]]:
    """(line number, argv after `cyclegan`) of every command in the page's code blocks."""
    text = page.read_text()
    found = []
    for body in code_blocks(text):
        first = text[: text.index(body)].count("\n") + 1
        lines = body.replace("\\\n", " ").split("\n")  # join continued lines
        for offset, line in enumerate(lines):
            for part in re.split(r"&&|;|\|", line.split(" #")[0]):
                match = COMMAND.search(part)
                if match:
                    found.append((first + offset, shlex.split(part[match.end():])))
    return found


CASES = [pytest.param(argv, id=f"{page.relative_to(ROOT)}:{line}")
         for page in PAGES for line, argv in command_lines(page)]


def test_the_docs_show_commands():
    pages = {case.id.split(":")[0] for case in CASES}
    assert len(CASES) >= 40 and {"README.md", "docs/training.md", "docs/translating.md"} <= pages, pages


@pytest.mark.parametrize("argv", CASES)
def test_every_documented_command_parses(argv, capsys):
    try:
        build_parser().parse_args(argv)
    except SystemExit as exit_:
        assert exit_.code == 0 and "--help" in argv, f"`cyclegan {' '.join(argv)}`: {capsys.readouterr().err.strip()}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def section_links() -> list[tuple[str, Path, str]]:
    """(where, target page, anchor) of every link to a section of a page that exists."""
    links = []
    for page in PAGES:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", page.read_text()):
            path = (page.parent / target).resolve() if target else page
            if path.exists():
                links.append((f"{page.relative_to(ROOT)} -> {target}#{anchor}", path, anchor))
    return links


def test_every_section_link_names_a_heading_that_exists():
    links = section_links()
    assert any(path.name == "BENCHMARKS.md" for _, path, _ in links)
    missing = [where for where, path, anchor in links if anchor not in anchors(path)]
    assert not missing, missing


def test_the_readme_cites_benchmarks_for_its_figures():
    """Each of the README's measured times and ratios sits in a paragraph that links its BENCHMARKS.md section."""
    readme = (ROOT / "README.md").read_text()
    paragraphs = re.split(r"\n\s*\n", re.sub(r"^```.*?^```", "", readme, flags=re.MULTILINE | re.DOTALL))
    figures = re.compile(r"\*\*\d+ min\*\*|\d+ min\b|\d+ s per iteration|\d\.\d+×")
    uncited = [p[:80] for p in paragraphs if figures.search(p) and "BENCHMARKS.md" not in p]
    assert not uncited, uncited


def test_the_flags_a_resume_may_change_are_the_codes():
    text = (ROOT / "docs" / "training.md").read_text()
    passage = re.search(r"only these may change:(.*?)anything else is refused", text, re.DOTALL).group(1)
    documented = {flag[2:].replace("-", "_") for flag in re.findall(r"--[a-z][a-z-]*", passage)}
    assert documented == set(RESUMABLE_OVERRIDES)
