"""Where apply's results go, by each input's name alone: what ``python -m apply`` checks for
clashes before it loads anything (so a clash, like a bad argument, answers without importing
torch, PyAV or a runtime).

A photo's results: OUT/NAME_makeup.png, then OUT/NAME_before_after.png with --side-by-side. A
video (by its suffix) keeps its container: OUT/NAME_makeup.SUFFIX (apply/video.py).
"""

from __future__ import annotations

from pathlib import Path

CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}


def is_video(path: Path) -> bool:
    return Path(path).suffix.lower() in CONTAINERS


def output_path(path: Path, out_dir: Path) -> Path:
    """A video's result."""
    return Path(out_dir) / f"{Path(path).stem}_makeup{Path(path).suffix.lower()}"


def result_paths(path: Path, out_dir: Path, side_by_side: bool) -> list[Path]:
    """Where an input's results go: OUT/NAME_makeup.png, then OUT/NAME_before_after.png (a video's:
    OUT/NAME_makeup.SUFFIX)."""
    if is_video(path):
        return [output_path(path, out_dir)]
    return [out_dir / f"{path.stem}_makeup.png"] + ([out_dir / f"{path.stem}_before_after.png"] if side_by_side else [])
