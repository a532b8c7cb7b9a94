"""Find the pairs in a data folder; every file is checked before any training starts.

Layouts read from ``--data DIR`` (first match wins):

1. ``DIR/pairs.csv`` with a header ``source,target[,mask]``; paths relative to DIR (UTF-8, with
   or without the byte-order mark spreadsheets write).
2. ``DIR/source/NAME.ext`` + ``DIR/target/NAME.ext`` (the amplification stage's layout).
3. ``DIR/non-makeup/NAME.ext`` + ``DIR/makeup/NAME.ext``.

For 2 and 3, optional face-parsing label maps live in ``DIR/mask/NAME.png`` (LaPa/MT
convention: 4 and 5 are the eyes). Pairs match by file stem, so ``a.jpg`` pairs with ``a.png``.
Problems raise :class:`DataError` with the file and the fix; a symbolic link that points nowhere
or into a loop is named as such.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from models.data import IMAGE_SUFFIXES, DataError, Pair, unmatched_message
from train.config import PAIR_LAYOUTS as LAYOUTS


def check_link(path: Path) -> None:
    """A DataError naming ``path`` if it is a symbolic link that leads nowhere or into a loop
    (opening it later would fail with an OS error far from the data folder's check)."""
    if not path.is_symlink():
        return
    try:
        path.resolve(strict=True)
    except FileNotFoundError:
        raise DataError(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist; "
                        "point it at the file or remove it") from None
    except (OSError, RuntimeError):  # ELOOP; Python 3.11 raises RuntimeError for a loop
        raise DataError(f"{path} is a symbolic link that leads back to itself ({os.readlink(path)}); "
                        "point it at the file or remove it") from None


def _images_by_stem(folder: Path) -> dict[str, Path]:
    """Images in ``folder`` by file stem; two files with one stem (a.png, a.jpg) are refused."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        check_link(path)
        if path.stem in found:
            raise DataError(f"{found[path.stem]} and {path} have the same name {path.stem!r}; pairs match by name, "
                            "so keep one of them (delete or rename the other)")
        found[path.stem] = path
    return found


def discover_pairs(root: Path) -> list[Pair]:
    """Find the (source, target[, mask]) pairs under ``root`` in any supported layout."""
    root = Path(root)
    check_link(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; pass --data DIR with source/ and target/ "
                        "folders (or run `python -m train.synthetic --out DIR` for the built-in data)")
    for entry in (root / "pairs.csv", root / "mask", *(root / folder for layout in LAYOUTS for folder in layout)):
        check_link(entry)
    manifest = root / "pairs.csv"
    if manifest.is_file():
        return _pairs_from_manifest(root, manifest)
    for source_dir, target_dir in LAYOUTS:
        if (root / source_dir).is_dir() and (root / target_dir).is_dir():
            return _pairs_from_folders(root, root / source_dir, root / target_dir)
    raise DataError(f"{root} has no pairs.csv, source/ + target/ or non-makeup/ + makeup/ folders; "
                    "put same-named images in source/ and target/, or list them in pairs.csv")


def _pairs_from_folders(root: Path, source_dir: Path, target_dir: Path) -> list[Pair]:
    sources, targets = _images_by_stem(source_dir), _images_by_stem(target_dir)
    if not sources:
        raise DataError(f"{source_dir} holds no .png/.jpg images; add the faces without makeup there")
    missing_target = sorted(set(sources) - set(targets))
    missing_source = sorted(set(targets) - set(sources))
    if missing_target or missing_source:
        problems = []
        if missing_target:
            problems.append(unmatched_message(f"images in {source_dir} have no match in {target_dir}", missing_target))
        if missing_source:
            problems.append(unmatched_message(f"images in {target_dir} have no match in {source_dir}", missing_source))
        raise DataError("unmatched names; every source needs a same-named target. " + "; ".join(problems))
    mask_dir = root / "mask"
    masks = _images_by_stem(mask_dir) if mask_dir.is_dir() else {}
    if masks:
        missing_mask = sorted(set(sources) - set(masks))
        if missing_mask:
            raise DataError(unmatched_message(f"images have no label map in {mask_dir} (add them, or remove "
                                               "the mask folder to use the fixed eye band)", missing_mask))
    return [Pair(name, sources[name], targets[name], masks.get(name)) for name in sorted(sources)]


def _pairs_from_manifest(root: Path, manifest: Path) -> list[Pair]:
    # utf-8-sig: spreadsheets save CSV with a byte-order mark, which would otherwise join the first column's name.
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"source", "target"} <= set(reader.fieldnames):
                raise DataError(f"{manifest} needs a header line 'source,target[,mask]', found {reader.fieldnames}")
            rows = list(reader)
    except UnicodeDecodeError as error:
        raise DataError(f"{manifest} is not UTF-8 text ({error.reason} at byte {error.start}); "
                        "save it as UTF-8 (CSV UTF-8 in a spreadsheet)") from None
    if not rows:
        raise DataError(f"{manifest} lists no pairs; add one 'source,target' line per pair")
    pairs, missing, first_line = [], [], {}
    for line, row in enumerate(rows, start=2):
        paths = {key: root / row[key] for key in ("source", "target", "mask") if row.get(key)}
        for key, path in paths.items():
            if not path.is_file():  # a link that leads nowhere too: listed with the rest
                missing.append(f"line {line} {key} {path}")
        name = Path(row["source"]).as_posix()  # the pair's name: its source path, unique per manifest
        if name in first_line:
            raise DataError(f"{manifest} lists the source {name} twice (lines {first_line[name]} and {line}); "
                            "list each pair once")
        first_line[name] = line
        pairs.append(Pair(name, paths["source"], paths["target"], paths.get("mask")))
    if missing:
        raise DataError(unmatched_message(
            f"files listed in {manifest} do not exist (fix the paths, relative to {root})", missing))
    return pairs
