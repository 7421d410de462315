"""The house rules a reader relies on, checked from the source (issue 33): the three whiteboard nevers,
no import circle, no module over 550 lines, one home per shared helper. Imports are read with `ast`, so
type-checking and function-level imports count as much as top-level ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hebbnas"
MAX_LINES = 550

NEVERS = (
    ("hebbnas.probe", "hebbnas.cluster"),  # the probe records statistics; clustering reads them
    ("hebbnas.report.round", "hebbnas.strategies"),  # a report gets the strategy's facts as values
    ("hebbnas.pipeline", "hebbnas.search"),  # the seed -> probe path serves search, not the other way
)


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every module `path` imports, wherever the import sits (TYPE_CHECKING blocks and functions included)."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize(("importer", "imported"), NEVERS, ids=[f"{a} -/-> {b}" for a, b in NEVERS])
def test_the_whiteboard_nevers(importer: str, imported: str) -> None:
    offenders = [f"{name} imports {target}" for name, path in _modules().items() if _within(name, importer)
                 for target in sorted(_imports(name, path)) if _within(target, imported)]
    assert not offenders, offenders


def test_no_import_circle() -> None:
    """Tarjan's strongly connected components over the package's own imports (a package's __init__ counts)."""
    mods = _modules()

    def resolve(target: str) -> str | None:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    graph = {n: {t for t in map(resolve, _imports(n, p)) if t and t != n} for n, p in mods.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, circles


def test_no_module_over_the_line_limit() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


HELPERS = {
    "def plain(": "hebbnas/plain.py",
    "def one_line(": "hebbnas/errors.py",
    "def first_line(": "hebbnas/errors.py",
    "def channels_last_wins(": "hebbnas/speed.py",
    "def read_config(": "hebbnas/runfolder.py",
    "def replacing(": "hebbnas/atomic.py",
}
"""Each shared helper is defined once, in its home."""


def test_one_home_per_helper() -> None:
    for needle, home in HELPERS.items():
        homes = sorted(str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py") if needle in p.read_text())
        assert homes == [home], (needle, homes)
    inline = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")
              if p.name != "errors.py" and ("splitlines()[0]" in p.read_text() or "os.replace(" in p.read_text())]
    assert sorted(inline) == ["hebbnas/atomic.py", "hebbnas/export/files.py"], inline
