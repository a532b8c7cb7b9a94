"""The data contract every stage reads: how an image is read, what a pair and its hash are,
and the recorded split a checkpoint carries.

Training makes the split once, by seed (``train/split.py``), and stores :func:`split_record`
in every checkpoint: file names relative to the data folder and one content hash per pair.
Resume, export and benchmark decode exactly that record (:func:`load_split`), never a split
recomputed from what is on disk now; a pair whose files changed is refused.

Images are read by :func:`open_image` everywhere (training, export, benchmark, apply, the web
server's checks): oversized images refused before decoding, EXIF orientation applied, every
bit depth scaled to 8 bits per channel (a 16-bit greyscale PNG is not clipped to white).
Errors are :class:`DataError` naming the file and saying what to do.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from models.atomic import sha256_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
# Refuse images above this many pixels before decoding them (decompression bombs). 8K x 8K
# is far beyond any face crop; PIL's own limit would only warn below 2x its default.
MAX_IMAGE_PIXELS = 64_000_000
# Face-parsing label maps (LaPa / MT convention).
EYE_LABELS = (4, 5)
LIP_LABELS = (7, 9)
SPLITS = ("train", "val", "test")
# The built-in data's real-photo test split (train/builtin.py): one person's portraits, never trained
# or tuned on. Recorded in every split (empty for --data); a split recorded without it has none.
REAL_TEST_SPLIT = "test-real"
RECORDED_SPLITS = (*SPLITS, REAL_TEST_SPLIT)
SPLIT_FORMAT = "tinybeauty-split-v1"
# Modes that hold more than 8 bits per sample, with the value that maps to 255.
HIGH_DEPTH_FULL_SCALE = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}


class DataError(ValueError):
    """Bad data. The message names the file and says what to do."""


@dataclass(frozen=True)
class Pair:
    name: str
    source: Path
    target: Path
    mask: Path | None = None


def to_8bit(image: Image.Image) -> Image.Image:
    """High-bit-depth greyscale (16-bit ``I;16``, 32-bit ``I``, float ``F``) scaled to ``L``.

    PIL's own ``convert("RGB")`` clips these at 255, so a 16-bit photo would come out almost
    white. 16- and 32-bit integers are read as 16-bit data (what PNG and TIFF store), floats as
    [0, 1]. Other modes are returned as they are (PIL already reads 16-bit RGB as 8-bit)."""
    full_scale = HIGH_DEPTH_FULL_SCALE.get(image.mode)
    if full_scale is None:
        return image
    values = np.asarray(image, dtype=np.float64)
    scaled = np.clip(values / full_scale * 255.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled, "L")


def open_image(path: Path, mode: str | None) -> Image.Image:
    """Open, refuse oversized images before decoding, decode, turn upright by the EXIF
    orientation (a phone portrait stored sideways), and convert to ``mode`` from 8 bits per
    channel. ``mode=None`` keeps the file's own mode and values (label maps).

    Errors are DataError naming the file."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(f"{path} is {width}x{height} ({width * height:,} pixels), over the "
                                f"{MAX_IMAGE_PIXELS:,}-pixel limit; resize it (faces need ~512 px)")
            image.load()
            upright = ImageOps.exif_transpose(image)  # a copy, EXIF orientation applied
            if mode is None:
                return upright
            upright = to_8bit(upright)
            return upright.convert(mode) if upright.mode != mode else upright
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"{path} is not a readable image ({error}); replace or delete it") from error


def open_photo(path: Path) -> Image.Image:
    """A photo as 8-bit RGB, or RGBA when the file has transparency (which a result keeps)."""
    image = open_image(path, None)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return to_8bit(image).convert("RGBA" if has_alpha else "RGB")


def read_label_map(path: Path) -> np.ndarray:
    """A face-parsing label map as its label indices (H x W ints).

    Palette (``P``) images hold indices with a colour table: their indices are the labels, not
    their colours' brightness. Greyscale and 16/32-bit maps hold labels directly; an RGB map is
    accepted only when its three channels agree."""
    image = open_image(path, None)
    labels = np.asarray(image)
    if image.mode in ("RGB", "RGBA", "LA"):
        channels = labels[..., :3] if image.mode != "LA" else labels[..., :1]
        if not (channels == channels[..., :1]).all():
            raise DataError(f"{path} is a colour image, not a label map; save the labels as a single-channel "
                            "(L or P mode) PNG whose pixel values are the LaPa/MT label numbers")
        labels = channels[..., 0]
    return np.asarray(labels)


def file_hashes(pair: Pair) -> list[str]:
    """sha256 of the source, the target and (if any) the label map, in that order."""
    return [sha256_file(path) for path in (pair.source, pair.target, pair.mask) if path is not None]


def pair_sha256(file_shas: list[str]) -> str:
    """One content hash per pair, over its files' hashes (:func:`file_hashes`)."""
    return hashlib.sha256("".join(file_shas).encode()).hexdigest()


@dataclass
class PairCache:
    """Pairs decoded once: uint8 arrays of N x S x S x 3 (images) and N x S x S (eye masks, when
    the reader asked for them), with the pairs and their content hashes (:func:`pair_sha256`)."""

    pairs: list[Pair]
    hashes: list[str]
    sources: np.ndarray
    targets: np.ndarray
    eye_masks: np.ndarray | None = None
    eye_mask: str = "none"  # where the eye masks came from: labels, landmarks, band, or none
    looks: np.ndarray | None = None  # each pair's look index, in a run of several looks (train/multilook.py)
    # N x S x S x K uint8 (train/region_maps.py), set on a region-input run's cache once its parts are joined
    region_maps: np.ndarray | None = None

    @property
    def names(self) -> list[str]:
        return [pair.name for pair in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)


def same_face(first: PairCache, i: int, second: PairCache, j: int) -> bool:
    """Pair i of ``first`` and pair j of ``second`` hold the same face (in two looks, say): the same name and the
    same source pixels (a name alone may be another face in another look's folder)."""
    return first.pairs[i].name == second.pairs[j].name and np.array_equal(first.sources[i], second.sources[j])


def concat_caches(caches: list[PairCache], eye_mask: str, looks: np.ndarray | None = None
                  ) -> tuple[PairCache, np.ndarray]:
    """``caches`` one after another as one cache (its eye masks from ``eye_mask``; ``looks``: each pair's
    look index, for several looks), and each cache's first index in it (one more: the total)."""
    joined = PairCache(
        [pair for cache in caches for pair in cache.pairs], [h for cache in caches for h in cache.hashes],
        np.concatenate([cache.sources for cache in caches]), np.concatenate([cache.targets for cache in caches]),
        np.concatenate([cache.eye_masks for cache in caches]), eye_mask, looks)
    return joined, np.cumsum([0] + [len(cache) for cache in caches])


# Called once per pair with (pair, upright source image, the pair's file hashes); returns what
# the caller computes per pair in the same pass (training's eye mask and where it came from).
PairExtra = Callable[[Pair, Image.Image, list[str]], object]


def read_pair(pair: Pair, size: int) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """(upright source image, source, target as S x S x 3 uint8) of one pair, sizes checked."""
    source, target = open_image(pair.source, "RGB"), open_image(pair.target, "RGB")
    if source.size != target.size:
        raise DataError(f"{pair.target} is {target.size[0]}x{target.size[1]} but its source {pair.source} is "
                        f"{source.size[0]}x{source.size[1]}; a pair must be the same face at the same size")
    resize = lambda image: np.asarray(image.resize((size, size), Image.BICUBIC))  # noqa: E731
    return source, resize(source), resize(target)


def decode_pairs(pairs: list[Pair], image_size: int, workers: int = 4, expected_hashes: list[str] | None = None,
                 origin: str = "", extra: PairExtra | None = None) -> tuple[PairCache, list[object]]:
    """Decode ``pairs`` into a uint8 cache, hashing each; with ``expected_hashes``, a pair whose
    files changed is a DataError (``origin`` says where the expectation came from). ``extra``
    computes a per-pair value in the same pass (returned beside the cache, in pair order)."""
    n = len(pairs)
    sources = np.empty((n, image_size, image_size, 3), np.uint8)
    targets = np.empty_like(sources)

    def load(index: int):
        pair = pairs[index]
        shas = file_hashes(pair)
        digest = pair_sha256(shas)
        if expected_hashes is not None and digest != expected_hashes[index]:
            raise DataError(f"pair {pair.name!r} ({pair.source}, {pair.target}) changed since {origin}: its content "
                            "hash differs from the recorded one; restore the original files or retrain")
        upright, source, target = read_pair(pair, image_size)
        return digest, source, target, (extra(pair, upright, shas) if extra else None)

    hashes, extras = [], []
    with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL decodes and hashlib hashes outside the GIL
        results = pool.map(load, range(n))
        for i, (digest, source, target, extra_map) in enumerate(
                tqdm(results, total=n, desc=f"decoding {n} pairs", unit="pair", disable=n < 64)):
            sources[i], targets[i] = source, target
            hashes.append(digest)
            extras.append(extra_map)
    return PairCache(list(pairs), hashes, sources, targets), extras


def split_record(root: Path, cache: PairCache, indices: dict[str, np.ndarray], image_size: int,
                 val_fraction: float, test_fraction: float, seed: int) -> dict:
    """The split as stored in every checkpoint: plain types, paths relative to the data folder."""
    root = Path(root)

    def entry(i: int) -> dict:
        pair = cache.pairs[i]
        rel = lambda path: Path(os.path.relpath(path, root)).as_posix() if path else None  # noqa: E731
        return {"name": pair.name, "source": rel(pair.source), "target": rel(pair.target), "mask": rel(pair.mask),
                "sha256": cache.hashes[i]}

    return {"format": SPLIT_FORMAT, "data": str(root), "image_size": int(image_size), "seed": int(seed),
            "val_fraction": float(val_fraction), "test_fraction": float(test_fraction),
            "eye_mask": cache.eye_mask,
            **{part: [entry(int(i)) for i in indices.get(part, ())] for part in RECORDED_SPLITS}}


def unmatched_message(label: str, names: list[str]) -> str:
    shown = ", ".join(names[:20]) + (f" ... (+{len(names) - 20} more)" if len(names) > 20 else "")
    return f"{len(names)} {label}: {shown}"


def split_pairs(split: dict, part: str, data_override: str | Path | None = None,
                limit: int | None = None) -> tuple[list[Pair], list[str]]:
    """The pairs a split record lists for ``part`` and their recorded hashes, files checked to
    exist. ``limit`` takes that many pairs spread evenly over the part."""
    root = Path(data_override or split["data"])
    entries = split[part]
    if limit is not None and limit < len(entries):
        entries = [entries[i] for i in np.linspace(0, len(entries) - 1, max(limit, 0)).round().astype(int)]
    pairs = [Pair(e["name"], root / e["source"], root / e["target"], root / e["mask"] if e["mask"] else None)
             for e in entries]
    if not pairs:
        raise DataError(f"the recorded split has no {part} pairs")
    missing = [str(path) for pair in pairs for path in (pair.source, pair.target, pair.mask)
               if path is not None and not path.is_file()]
    if missing:
        raise DataError(unmatched_message(f"files of the recorded {part} split are missing (restore them, pass "
                                          f"--data if the data moved, or retrain)", missing))
    return pairs, [e["sha256"] for e in entries]


def load_split(split: dict, part: str, data_override: str | Path | None = None, limit: int | None = None,
               origin: str = "training") -> PairCache:
    """Decode exactly the pairs a split record lists for ``part`` ('train', 'val', 'test' or 'test-real'),
    from the recorded data folder (or ``data_override``, where it has moved), checking each
    pair's content hash (see :func:`split_pairs` for ``limit``)."""
    pairs, hashes = split_pairs(split, part, data_override, limit)
    cache, _ = decode_pairs(pairs, split["image_size"], expected_hashes=hashes, origin=origin)
    return cache


def faces_as_tensors(cache: PairCache, indices: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, target) float N x 3 x S x S in [0, 1] for the given pair indices (default: all)."""
    select = slice(None) if indices is None else np.asarray(indices)
    # contiguous NCHW: a permuted view keeps channels-last strides, and exporters that record the
    # example's memory layout (ExecuTorch's dim order) would then expect channels-last input.
    to_tensor = lambda a: torch.from_numpy(a[select]).permute(0, 3, 1, 2).contiguous().float() / 255.0  # noqa: E731
    return to_tensor(cache.sources), to_tensor(cache.targets)

