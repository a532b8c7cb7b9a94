"""Paired makeup data: discovery, validation, a decoded-once uint8 cache, split and batches.

Layouts read from ``--data DIR`` (first match wins):

1. ``DIR/pairs.csv`` with a header ``source,target[,mask]``; paths relative to DIR.
2. ``DIR/source/NAME.ext`` + ``DIR/target/NAME.ext`` (the amplification stage's layout).
3. ``DIR/non-makeup/NAME.ext`` + ``DIR/makeup/NAME.ext``.

For 2 and 3, optional face-parsing label maps live in ``DIR/mask/NAME.png`` (LaPa/MT
convention: 4 and 5 are the eyes). Pairs match by file stem, so ``a.jpg`` pairs with ``a.png``.

Every file is checked before any training starts; problems raise :class:`DataError` with
the file and the fix. Images are decoded once, resized to ``image_size`` and kept as uint8.
"""

from __future__ import annotations

import csv
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, UnidentifiedImageError
from tqdm import tqdm

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
LAYOUTS = (("source", "target"), ("non-makeup", "makeup"))
EYE_LABELS = (4, 5)  # LaPa / MT face parsing
# Refuse images above this many pixels before decoding them (decompression bombs). 8K x 8K
# is far beyond any face crop; PIL's own limit would only warn below 2x its default.
MAX_IMAGE_PIXELS = 64_000_000

# Without label maps: where the eyes are on an FFHQ-aligned face (fractions of the image).
# FFHQ's alignment puts the eye centres near y = 0.47 and x = 0.37 / 0.63 at 1024 px; the band
# covers both eyes with brows and lids and fades out over a few pixels.
EYE_BAND = {"top": 0.30, "bottom": 0.56, "left": 0.18, "right": 0.82}


class DataError(ValueError):
    """Bad training data. The message names the file and says what to do."""


@dataclass(frozen=True)
class Pair:
    name: str
    source: Path
    target: Path
    mask: Path | None = None


def _images_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")}


def _unmatched_message(label: str, names: list[str]) -> str:
    shown = ", ".join(names[:20]) + (f" ... (+{len(names) - 20} more)" if len(names) > 20 else "")
    return f"{len(names)} {label}: {shown}"


def discover_pairs(root: Path) -> list[Pair]:
    """Find the (source, target[, mask]) pairs under ``root`` in any supported layout."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; pass --data DIR with source/ and target/ "
                        "folders (or run `python -m train.synthetic --out DIR` for the built-in data)")
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
            problems.append(_unmatched_message(f"images in {source_dir} have no match in {target_dir}", missing_target))
        if missing_source:
            problems.append(_unmatched_message(f"images in {target_dir} have no match in {source_dir}", missing_source))
        raise DataError("unmatched names; every source needs a same-named target. " + "; ".join(problems))
    mask_dir = root / "mask"
    masks = _images_by_stem(mask_dir) if mask_dir.is_dir() else {}
    if masks:
        missing_mask = sorted(set(sources) - set(masks))
        if missing_mask:
            raise DataError(_unmatched_message(f"images have no label map in {mask_dir} (add them, or remove "
                                               "the mask folder to use the fixed eye band)", missing_mask))
    return [Pair(name, sources[name], targets[name], masks.get(name)) for name in sorted(sources)]


def _pairs_from_manifest(root: Path, manifest: Path) -> list[Pair]:
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"source", "target"} <= set(reader.fieldnames):
            raise DataError(f"{manifest} needs a header line 'source,target[,mask]', found {reader.fieldnames}")
        rows = list(reader)
    if not rows:
        raise DataError(f"{manifest} lists no pairs; add one 'source,target' line per pair")
    pairs, missing = [], []
    for line, row in enumerate(rows, start=2):
        paths = {key: root / row[key] for key in ("source", "target", "mask") if row.get(key)}
        for key, path in paths.items():
            if not path.is_file():
                missing.append(f"line {line} {key} {path}")
        pairs.append(Pair(Path(row["source"]).stem + f"_{line}", paths["source"], paths["target"], paths.get("mask")))
    if missing:
        raise DataError(_unmatched_message(f"files listed in {manifest} do not exist (fix the paths, relative to {root})", missing))
    return pairs


def open_image(path: Path, mode: str | None) -> Image.Image:
    """Open, refuse oversized images before decoding, decode, convert (unless mode is None).

    Errors are DataError naming the file."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(f"{path} is {width}x{height} ({width * height:,} pixels), over the "
                                f"{MAX_IMAGE_PIXELS:,}-pixel limit; resize it (faces need ~512 px)")
            image.load()
            return image.convert(mode) if mode and image.mode != mode else image.copy()
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"{path} is not a readable image ({error}); replace or delete it") from error


def eye_mask_from_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """A soft band around the eyes, grown from the eye labels: uint8, 255 at the eyes."""
    eyes = np.isin(labels, EYE_LABELS).astype(np.uint8) * 255
    grow = max(3, int(round(size * 0.035)) | 1)  # odd window, ~9 px at 256: covers lid and liner
    band = Image.fromarray(eyes).filter(ImageFilter.MaxFilter(grow)).filter(ImageFilter.GaussianBlur(size * 0.012))
    return np.asarray(band, dtype=np.uint8)


def fixed_eye_band(size: int) -> np.ndarray:
    """The documented eye band for aligned faces without label maps (see EYE_BAND)."""
    axis = np.arange(size, dtype=np.float32) / size
    fade = 0.02

    def ramp(lo: float, hi: float) -> np.ndarray:
        return np.clip((axis - lo) / fade, 0, 1) * np.clip((hi - axis) / fade, 0, 1)

    band = ramp(EYE_BAND["top"], EYE_BAND["bottom"])[:, None] * ramp(EYE_BAND["left"], EYE_BAND["right"])[None, :]
    return (band * 255).astype(np.uint8)


@dataclass
class PairCache:
    """All pairs decoded once: uint8 arrays of N x S x S x 3 (images) and N x S x S (eye masks)."""

    names: list[str]
    sources: np.ndarray
    targets: np.ndarray
    eye_masks: np.ndarray
    has_labels: bool

    def __len__(self) -> int:
        return len(self.names)


def _load_pair(pair: Pair, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    source, target = open_image(pair.source, "RGB"), open_image(pair.target, "RGB")
    if source.size != target.size:
        raise DataError(f"{pair.target} is {target.size[0]}x{target.size[1]} but its source {pair.source} is "
                        f"{source.size[0]}x{source.size[1]}; a pair must be the same face at the same size")
    eye = None
    if pair.mask is not None:
        labels = open_image(pair.mask, "L")
        if labels.size != source.size:
            raise DataError(f"{pair.mask} is {labels.size[0]}x{labels.size[1]} but {pair.source} is "
                            f"{source.size[0]}x{source.size[1]}; label maps must match their image's size")
        labels = np.asarray(labels.resize((size, size), Image.NEAREST))
        eye = eye_mask_from_labels(labels, size)
    resize = lambda image: np.asarray(image.resize((size, size), Image.BICUBIC))  # noqa: E731
    return resize(source), resize(target), eye


def load_pairs(root: Path, image_size: int = 256, workers: int = 4) -> PairCache:
    """Discover, validate and decode every pair once. Raises DataError before any training."""
    pairs = discover_pairs(root)
    with_masks = sum(p.mask is not None for p in pairs)
    if 0 < with_masks < len(pairs):
        raise DataError(f"{with_masks} of {len(pairs)} pairs in {root} have label maps; give every pair one or none")
    n = len(pairs)
    sources = np.empty((n, image_size, image_size, 3), np.uint8)
    targets = np.empty_like(sources)
    eye_masks = np.empty((n, image_size, image_size), np.uint8)
    band = fixed_eye_band(image_size)
    with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL decodes outside the GIL
        results = pool.map(lambda p: _load_pair(p, image_size), pairs)
        for i, (source, target, eye) in enumerate(tqdm(results, total=n, desc=f"decoding {n} pairs", unit="pair")):
            sources[i], targets[i] = source, target
            eye_masks[i] = band if eye is None else eye
    if with_masks:
        log.info("eye mask: grown from the face-parsing labels %s in %s/mask", EYE_LABELS, root)
    else:
        log.info("eye mask: no label maps in %s, using the fixed eye band for aligned faces %s", root, EYE_BAND)
    return PairCache([p.name for p in pairs], sources, targets, eye_masks, bool(with_masks))


def split_indices(n: int, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/val split by seed; at least one pair on each side when n >= 2."""
    if n < 2:
        raise DataError(f"need at least 2 pairs to split into train and validation, found {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, int(math.ceil(n * val_fraction))))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class PairDataset(torch.utils.data.Dataset):
    """Float tensors (source, target, eye_mask) in [0, 1], CHW, from the uint8 cache.

    With ``train=True``: a random horizontal flip and, if ``crop`` is set, a random square
    crop, applied identically to the three arrays so pairs stay aligned.
    """

    def __init__(self, cache: PairCache, indices: np.ndarray, train: bool, crop: int | None = None, seed: int = 0):
        self.cache, self.indices, self.train, self.crop = cache, np.asarray(indices), train, crop
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int):
        index = self.indices[item]
        arrays = [self.cache.sources[index], self.cache.targets[index], self.cache.eye_masks[index][..., None]]
        if self.train:
            if self.crop and self.crop < arrays[0].shape[0]:
                top, left = self.rng.integers(0, arrays[0].shape[0] - self.crop + 1, size=2)
                arrays = [a[top:top + self.crop, left:left + self.crop] for a in arrays]
            if self.rng.random() < 0.5:
                arrays = [a[:, ::-1] for a in arrays]
        source, target, eye = (torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0 for a in arrays)
        return source, target, eye


def faces_as_tensors(cache: PairCache, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, target) float N x 3 x S x S in [0, 1] for the given pair indices."""
    to_tensor = lambda a: torch.from_numpy(a[np.asarray(indices)]).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
    return to_tensor(cache.sources), to_tensor(cache.targets)


def load_training_split(train_config: dict, override: str | Path | None = None,
                        image_size: int | None = None) -> tuple[PairCache, np.ndarray, np.ndarray]:
    """The pairs a checkpoint was trained on (or ``override``), split exactly as training split
    them: (cache, train indices, validation indices). Export and benchmark use this."""
    root = Path(override or train_config.get("data") or "data/synthetic")
    cache = load_pairs(root, image_size or int(train_config.get("image_size", 256)))
    train_idx, val_idx = split_indices(len(cache), train_config.get("val_fraction", 0.1), train_config.get("seed", 0))
    return cache, train_idx, val_idx
