"""``manifest.json``: what an export wrote, and the checks every reader makes before trusting it.

The manifest names the checkpoint the set was exported from (path and sha256) and, per
artifact, its file and sha256. :func:`read_manifest` refuses a set whose files are missing or
differ from what was exported; :func:`check_source_checkpoint` refuses a set exported from
another checkpoint than the one at the recorded path now (the stale-artifacts case: retrained,
not re-exported).
"""

from __future__ import annotations

import json
from pathlib import Path

from models.atomic import sha256_file, sha256_tree

MANIFEST = "manifest.json"


class ManifestError(ValueError):
    """An artifact set that does not match its manifest. The message names the file and the fix."""


def read_manifest(artifacts: Path) -> dict:
    """Load ``artifacts/manifest.json`` and check every listed file against its sha256."""
    path = Path(artifacts) / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{path} not found; run `make export` (or python -m export --out {artifacts}) first")
    try:
        manifest = json.loads(path.read_text())
        records = manifest["artifacts"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ManifestError(f"{path} is not a TinyBeauty export manifest ({error}); re-export with `make export`") from error
    for record in records:
        file = Path(artifacts) / record["file"]
        if not file.exists():
            raise ManifestError(f"{file} is listed in {path} but missing; re-export with `make export`")
        if sha256_tree(file) != record["sha256"]:
            raise ManifestError(f"{file} differs from the file the export wrote and checked (sha256 mismatch "
                                f"with {path}): it was altered or replaced; re-export with `make export`")
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
