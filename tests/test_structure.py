"""The imports flow one way, like the data: models <- faces <- train / export <- benchmark, apply, web.

Parsed from the source (ast), so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "faces", "train", "export", "benchmark", "apply", "web")
# What each package may import of the project (besides itself).
ALLOWED = {
    "models": set(),
    "faces": {"models"},
    "train": {"models", "faces"},
    "export": {"models"},
    "benchmark": {"models", "export", "web", "faces", "apply"},  # the live section runs apply on video
    "apply": {"models", "faces", "export"},
    "web": {"models", "faces", "export"},
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
