"""``manifest.json``: what an export wrote, and the checks every reader makes before trusting it.

The manifest names the checkpoint the set was exported from (path and sha256) and, per
artifact, its format, file and sha256. An artifact set is something people download and
share, so :func:`read_manifest` validates it once, for every reader: each entry has a known
format, a sha256 and a file whose path stays inside the artifacts folder (no ``../``, no
absolute path, no symlink out, also inside a folder artifact); the file matches its sha256;
and it runs as a TinyBeauty model (one plain face through its runtime, where the runtime
exists here). :func:`check_source_checkpoint` refuses a set exported from another checkpoint
than the one at the recorded path now (the stale-artifacts case: retrained, not re-exported).
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from export.loading import load_model
from export.runtime import ModelFileError, RuntimeUnavailable
from models.atomic import sha256_file, sha256_tree

MANIFEST = "manifest.json"
# The catalogue an app or the page reads: each look's name, index (in the files' look input), swatch
# colour and figures (export/pipeline.py looks_document).
LOOKS_FILE = "looks.json"
# What every reader takes from an entry, and of which type; `bytes` is shown in the reports.
ENTRY_FIELDS = {"format": str, "file": str, "sha256": str, "bytes": int}
TOP_FIELDS = {"checkpoint": str, "checkpoint_sha256": str, "artifacts": list}
REEXPORT = "re-export with `make export`"


class ManifestError(ValueError):
    """An artifact set that does not match its manifest. The message names the file and the fix."""


def _load(path: Path, artifacts: Path) -> dict:
    if not path.is_file():
        raise ManifestError(f"{path} not found; run `make export` (or python -m export --out {artifacts}) first")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path} is not a TinyBeauty export manifest ({error}); {REEXPORT}") from error
    problems = [name for name, kind in TOP_FIELDS.items()
                if not isinstance(manifest, dict) or not isinstance(manifest.get(name), kind)]
    if problems:
        raise ManifestError(f"{path} is not a TinyBeauty export manifest (no valid {', '.join(problems)}); {REEXPORT}")
    return manifest


def inside(root: Path, relative: str) -> bool:
    """Whether ``relative`` names a place under ``root``: not absolute, no ``..``, and, with
    every symlink followed, still under ``root`` (for a folder, everything in it too)."""
    if "\x00" in relative:
        return False
    for pure in (PurePosixPath(relative), PureWindowsPath(relative)):
        if pure.is_absolute() or pure.anchor or ".." in pure.parts:
            return False
    root = root.resolve()
    target = root / relative
    places = [target]
    if target.is_dir() and not target.is_symlink():
        for folder, names, files in os.walk(target):  # symlinks are listed, never followed
            places += [Path(folder) / name for name in (*names, *files)]
    return all(place.resolve().is_relative_to(root) for place in places)


def _checked_file(record, index: int, artifacts: Path, path: Path) -> Path:
    """The file of one entry, once its fields, format and path are valid."""
    from export.formats import BY_NAME  # the table imports every converter: only readers pay for it

    if not isinstance(record, dict):
        raise ManifestError(f"{path}: artifact entry {index + 1} is not an object; {REEXPORT}")
    label = f"{path}: artifact entry {index + 1} ({record.get('file', 'no file')})"
    missing = [name for name, kind in ENTRY_FIELDS.items() if not isinstance(record.get(name), kind)]
    if missing:
        raise ManifestError(f"{label} has no valid {', '.join(missing)}; {REEXPORT}")
    fmt = BY_NAME.get(record["format"])
    if fmt is None:
        known = ", ".join(sorted(BY_NAME))
        raise ManifestError(f"{label} has an unknown format {record['format']!r} (known: {known}); "
                            f"it was written by another version of TinyBeauty: {REEXPORT}")
    if Path(record["file"]).suffix != Path(fmt.filename).suffix:
        raise ManifestError(f"{label}: a {fmt.name} file ends in {Path(fmt.filename).suffix}; {REEXPORT}")
    if not inside(artifacts, record["file"]):
        raise ManifestError(f"{label} points outside {artifacts} (an absolute path, '..' or a symlink out); "
                            "an artifact "
                            f"set only uses its own files: refused, {REEXPORT}")
    return Path(artifacts) / record["file"]


def _check_runs(file: Path, path: Path) -> None:
    """One plain face through the file's runtime (export/loading.py load_model): a network of
    another shape is refused here, naming the file, not inside a runtime mid-benchmark."""
    try:
        load_model(file)
    except RuntimeUnavailable:
        return  # cannot run here (Core ML off macOS): the reader says so and uses its stand-in check
    except ModelFileError as error:
        raise ManifestError(f"{error} (listed in {path}); {REEXPORT}") from error


def read_manifest(artifacts: Path, check_runs: bool = True) -> dict:
    """Load ``artifacts/manifest.json``; check every entry's fields and path, its file against its
    sha256 and (``check_runs``) that it runs as a TinyBeauty model. Raises ManifestError."""
    path = Path(artifacts) / MANIFEST
    manifest = _load(path, artifacts)
    files = [_checked_file(record, index, artifacts, path) for index, record in enumerate(manifest["artifacts"])]
    for file, record in zip(files, manifest["artifacts"], strict=True):
        if not file.exists():
            raise ManifestError(f"{file} is listed in {path} but missing; {REEXPORT}")
        if sha256_tree(file) != record["sha256"]:
            raise ManifestError(f"{file} differs from the file the export wrote and checked (sha256 mismatch "
                                f"with {path}): it was altered or replaced; {REEXPORT}")
    for file in files if check_runs else ():
        _check_runs(file, path)
    return manifest


def check_source_checkpoint(manifest: dict) -> Path:
    """The checkpoint the set was exported from, checked to be that very file. Returns its path."""
    checkpoint = Path(manifest["checkpoint"])
    if not checkpoint.is_file():
        raise ManifestError(f"the artifacts were exported from {checkpoint}, which no longer exists; re-export "
                            "from the checkpoint you have (`make export`)")
    if sha256_file(checkpoint) != manifest["checkpoint_sha256"]:
        raise ManifestError(f"{checkpoint} is not the checkpoint these artifacts were exported from (sha256 "
                            f"{manifest['checkpoint_sha256'][:12]}..., it was retrained or replaced since); "
                            "re-export with `make export` before benchmarking")
    return checkpoint
