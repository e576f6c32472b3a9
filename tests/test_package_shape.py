"""The package's shape (DESIGN.md): no import cycles, stages import only the stages below them,
and only runfolder.py names the files inside a run folder. Read from the source with ``ast``, so
an import inside a function counts as much as one at the top (only ``if TYPE_CHECKING:`` blocks,
which never run, are left out)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cyclegan"

# What each stage may import (besides itself and the leaf modules config, errors, devices, images, video, runfolder).
ALLOWED = {
    "models": set(),
    "data": set(),
    "evaluate": {"data", "models"},
    "train": {"data", "models", "evaluate"},
    "translate": {"data", "models"},
    "app": {"data", "models", "evaluate", "train", "translate"},
}
LEAVES = {"config", "errors", "devices", "images", "video", "runfolder"}
RUN_FOLDER_NAMES = {"config.json", "train_state.pt", "metrics.csv", "warnings.json", "meta.json", "samples",
                    "plots", "best", "epochs", "tensorboard", "G_AB.safetensors", "G_BA.safetensors",
                    "D_A.safetensors", "D_B.safetensors", "train.lock"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _skips_type_checking(tree: ast.AST) -> list[ast.AST]:
    """Every node, except those under ``if TYPE_CHECKING:``."""
    nodes, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        nodes.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return nodes


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The cyclegan modules ``path`` imports (``from . import x`` resolved to the module x)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _skips_type_checking(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cyclegan")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("cyclegan"):
                continue
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
    return {m for m in found if m in modules and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def test_there_is_no_import_cycle(graph):
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_each_stage_imports_only_the_stages_below_it(graph):
    wrong = []
    for module, imported in graph.items():
        parts = module.split(".")
        if len(parts) < 3 or parts[1] not in ALLOWED:
            continue
        stage = parts[1]
        for target in imported:
            other = target.split(".")[1] if target.count(".") else ""
            if other and other != stage and other not in LEAVES and other not in ALLOWED[stage]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "; ".join(sorted(wrong))


def test_the_leaf_modules_import_no_stage_but_models_and_the_metrics_table(graph):
    # config validates against the generator registry and the metrics table: both import no config
    for leaf in LEAVES:
        imported = {t for t in graph[f"cyclegan.{leaf}"] if t.split(".")[1] not in LEAVES}
        assert imported <= {"cyclegan.models.generators", "cyclegan.evaluate.table", "cyclegan.models",
                            "cyclegan.evaluate"}, (leaf, imported)


def _names_a_run_file(node: ast.AST) -> bool:
    """``folder / "metrics.csv"``, ``Path("samples")``-style joins and ``.glob("epoch_*.png")``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return isinstance(node.right, ast.Constant) and node.right.value in RUN_FOLDER_NAMES
    if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("glob", "rglob", "joinpath"):
        return any(isinstance(a, ast.Constant) and isinstance(a.value, str)
                   and (a.value in RUN_FOLDER_NAMES or a.value.startswith("epoch_")) for a in node.args)
    return False


def test_only_runfolder_names_the_files_of_a_run_folder():
    named = [f"{path.relative_to(PACKAGE)}:{node.lineno}" for path in PACKAGE.rglob("*.py")
             if path.name != "runfolder.py"
             for node in ast.walk(ast.parse(path.read_text())) if _names_a_run_file(node)]
    assert not named, named
