"""No two modules of the product import each other (the house rule on import circles).

Every ``import`` statement counts, those inside functions included: a lazy import hides a
circle from Python but not from the reader (the house notes named three such two-file
circles: geo/raster <-> writer, inference/predict <-> predict_raster, meta/maml <->
task_batching).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("landcover", "api")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Product modules ``path`` imports (``from a.b import c`` counts ``a.b.c`` if a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in modules:
                found.add(node.module)
            subs = {f"{node.module}.{a.name}" for a in node.names}
            found.update(subs & modules)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the product modules it imports, over ``landcover`` and ``api``."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    modules = set(files)
    return {m: _imports(p, modules) - {m} for m, p in files.items()}


def test_graph_sees_lazy_imports() -> None:
    graph = import_graph()
    # landcover.inference.predict_raster imports vectorize inside a function
    assert "landcover.inference.vectorize" in graph["landcover.inference.predict_raster"]
    assert "landcover.geo.raster" in graph["landcover.geo.writer"]


def test_no_two_modules_import_each_other() -> None:
    graph = import_graph()
    circles = sorted(
        f"{a} <-> {b}" for a, deps in graph.items() for b in deps if a < b and a in graph[b]
    )
    # a package's __init__ re-exporting its submodules is not a circle of two files
    circles = [c for c in circles if not _is_package_reexport(c)]
    assert not circles, "modules that import each other: " + "; ".join(circles)


def _is_package_reexport(circle: str) -> bool:
    a, b = circle.split(" <-> ")
    return b.startswith(a + ".") or a.startswith(b + ".")
