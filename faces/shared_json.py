"""Reading the JSON files that faces/ and the page share (detection.json, regions.json, tracking.json):
each is checked for every key its reader takes, and a file that cannot be read or lacks one is a
ValueError naming it and saying how to restore it. The standard library only, so a command line can
read them before anything heavy is imported."""

from __future__ import annotations

import json
from pathlib import Path


def read_shared_json(path: Path, keys: tuple[str, ...], what: str) -> dict:
    """``path``'s object, holding every one of ``keys``; ``what`` names its contents in the error
    ("the face tracker's parameters"). The fix named is git's copy of the file of that name in faces/."""
    restore = f"restore it from git (git checkout -- faces/{Path(path).name})"
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: {what} cannot be read ({error}); {restore}") from error
    missing = [key for key in keys if key not in values]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: {restore}")
    return values
