"""The imports flow one way, like the data: models <- faces <- train / export <- apply, web <- tools <- benchmark;
and inside a package no modules import each other in a circle.

Parsed from the source (ast), so a lazy import inside a function counts as much as one at the top
(an import under ``if TYPE_CHECKING:`` never runs, and makes no circle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "faces", "train", "export", "benchmark", "apply", "web", "tools")
# What each package may import of the project (besides itself).
ALLOWED = {
    "models": set(),
    "faces": {"models"},
    "train": {"models", "faces"},
    "export": {"models", "train"},  # a region-input network's maps, drawn as training drew them (train/region_maps.py)
    # the live section runs apply on video; a region-input model's maps are drawn as training draws them
    "benchmark": {"models", "export", "web", "faces", "apply", "tools", "train"},
    "apply": {"models", "faces", "export"},
    "web": {"models", "faces", "export"},
    # The tests' and the benchmark's harness (a browser, camera clips, tracking measures) and the
    # page's face-model converter: above what they drive, below the benchmark.
    "tools": {"models", "faces", "export", "web"},
}


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level project package) of every import in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name.split(".")[0]) for name in names if name.split(".")[0] in PACKAGES]
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_flow_one_way(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in files for line, name in project_imports(path)
             if name != package and name not in ALLOWED[package]]
    assert not wrong, "imports against the direction of the data:\n" + "\n".join(wrong)


def test_the_guard_sees_lazy_imports(tmp_path):
    """The parser finds an import inside a function, so the guard above can fail."""
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f():\n    from train.pairs import discover_pairs\n    import export.runtime\n")
    assert project_imports(sample) == [(4, "train"), (5, "export")]


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path, known: set[str]) -> set[str]:
    """The project modules a file imports when it runs, at the top or inside a function: ``import
    a.b`` is a.b; ``from a import b`` is the module a.b if there is one, else a (b is a name in a);
    relative imports are resolved against the file's package. Imports under ``if TYPE_CHECKING:``
    never run (they name types for annotations) and are left out."""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    tree = ast.parse(path.read_text(), str(path))
    type_only = {id(inner) for node in ast.walk(tree)
                 if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                 for statement in node.body for inner in ast.walk(statement)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] if node.level else [])
            base = ".".join(part for part in (base, node.module or "") if part)
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    return found & known


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    files = {module_name(path, root): path for package in packages for path in sorted((root / package).rglob("*.py"))}
    return {name: imported_modules(path, root, set(files)) - {name} for name, path in files.items()}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Circles as the modules along them, back to the first: [a, b, a]. At least one is listed
    wherever modules import each other (a depth-first search), not every path around it."""
    circles, done = [], set()

    def visit(name: str, trail: list[str]) -> None:
        for imported in sorted(graph[name]):
            if imported in trail:
                circle = trail[trail.index(imported):]
                start = circle.index(min(circle))  # one rotation of each circle, so each is listed once
                circle = circle[start:] + circle[:start]
                if circle + [circle[0]] not in circles:
                    circles.append(circle + [circle[0]])
            elif imported not in done:
                visit(imported, trail + [imported])
        done.add(name)

    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    return circles


def test_no_modules_import_each_other_in_a_circle():
    circles = import_circles(import_graph(ROOT, PACKAGES))
    assert not circles, "modules that import each other (lazy imports included):\n" + "\n".join(
        " -> ".join(circle) for circle in circles)


def test_the_circle_guard_sees_a_lazy_circle(tmp_path):
    """The export's old circle: the formats table imported the runtime at the top, and the runtime
    imported the table inside a function (loading a file by its suffix)."""
    package = tmp_path / "export"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "onnx_format.py").write_text("from typing import TYPE_CHECKING\n\nfrom .runtime import Runner\n\n"
                                            "if TYPE_CHECKING:\n    from export.formats import ExportFormat\n")
    (package / "formats.py").write_text("from export import onnx_format\nfrom export.runtime import Runner\n")
    (package / "runtime.py").write_text("Runner = object\n\n\ndef format_for(path):\n"
                                        "    from export.formats import FORMATS\n")
    graph = import_graph(tmp_path, ("export",))
    assert graph["export.formats"] == {"export.onnx_format", "export.runtime"}
    assert graph["export.onnx_format"] == {"export.runtime"}  # the import for annotations only never runs
    # Two circles through the lazy import (formats -> runtime, formats -> onnx_format -> runtime); a
    # search reports one of them, with every module along it.
    assert import_circles(graph) == [["export.formats", "export.onnx_format", "export.runtime", "export.formats"]]
