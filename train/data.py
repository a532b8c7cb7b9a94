"""Paired makeup data: discovery, validation, a decoded-once uint8 cache, split and batches.

Layouts read from ``--data DIR`` (first match wins):

1. ``DIR/pairs.csv`` with a header ``source,target[,mask]``; paths relative to DIR.
2. ``DIR/source/NAME.ext`` + ``DIR/target/NAME.ext`` (the amplification stage's layout).
3. ``DIR/non-makeup/NAME.ext`` + ``DIR/makeup/NAME.ext``.

For 2 and 3, optional face-parsing label maps live in ``DIR/mask/NAME.png`` (LaPa/MT
convention: 4 and 5 are the eyes). Pairs match by file stem, so ``a.jpg`` pairs with ``a.png``.

Every file is checked before any training starts; problems raise :class:`DataError` with
the file and the fix. Images are decoded once (``models/data.py``: the reading every stage
shares), resized to ``image_size`` and kept as uint8, each pair with a content hash, beside
the eye mask the eyeliner loss weights by.

The split (train / validation / test) is made here once, by seed, when training starts; its
record and how it is read back live in ``models/data.py`` (the contract export and benchmark
read too).
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import math
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from models.atomic import write_text
from models.data import (
    EYE_LABELS,
    IMAGE_SUFFIXES,
    SPLITS,
    DataError,
    Pair,
    PairCache,
    decode_pairs,
    read_label_map,
    split_pairs,
    unmatched_message,
)

log = logging.getLogger(__name__)

LAYOUTS = (("source", "target"), ("non-makeup", "makeup"))

# Without label maps: where the eyes are on an FFHQ-aligned face (fractions of the image).
# FFHQ's alignment puts the eye centres near y = 0.47 and x = 0.37 / 0.63 at 1024 px; the band
# covers both eyes with brows and lids and fades out over a few pixels.
EYE_BAND = {"top": 0.30, "bottom": 0.56, "left": 0.18, "right": 0.82}
# Where the eye mask comes from: face-parsing label maps, face landmarks (BlazeFace, detected once
# per source image and cached in DIR/.tinybeauty_landmarks.json), the face mesh's eye contours, or
# the fixed band. "auto" is the mesh: over three seeds of the CPU preset on the built-in data it
# beat the label maps by 1.1-1.6 dB of test PSNR per seed (docs/training.md). An image in which a
# located source (mesh, landmarks) finds no face takes its label map where the dataset has them,
# else the band.
EYE_MASK_SOURCES = ("auto", "labels", "landmarks", "mesh", "band")
LANDMARK_CACHE = ".tinybeauty_landmarks.json"
# "mesh": the eye contours of the 468-point face mesh (faces.mesh), filled and grown like the label
# masks; the contours are cached in DIR/.tinybeauty_mesh.json (16 points per eye).
MESH_CACHE = ".tinybeauty_mesh.json"
MESH_RING_POINTS = 16
# Eye region around a detected eye centre, in eye distances: wide enough for lids, liner and its
# wing, as the grown label masks are (measured on the synthetic faces' labels).
EYE_RADII = (0.42, 0.28)


def _images_by_stem(folder: Path) -> dict[str, Path]:
    """Images in ``folder`` by file stem; two files with one stem (a.png, a.jpg) are refused."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        if path.stem in found:
            raise DataError(f"{found[path.stem]} and {path} have the same name {path.stem!r}; pairs match by name, "
                            "so keep one of them (delete or rename the other)")
        found[path.stem] = path
    return found


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
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"source", "target"} <= set(reader.fieldnames):
            raise DataError(f"{manifest} needs a header line 'source,target[,mask]', found {reader.fieldnames}")
        rows = list(reader)
    if not rows:
        raise DataError(f"{manifest} lists no pairs; add one 'source,target' line per pair")
    pairs, missing, first_line = [], [], {}
    for line, row in enumerate(rows, start=2):
        paths = {key: root / row[key] for key in ("source", "target", "mask") if row.get(key)}
        for key, path in paths.items():
            if not path.is_file():
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


def eye_mask_from_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """A soft band around the eyes, grown from the eye labels: uint8, 255 at the eyes."""
    return _grown(np.isin(labels, EYE_LABELS).astype(np.uint8) * 255, size)


def _grown(region: np.ndarray, size: int) -> np.ndarray:
    """A uint8 region grown to cover lid and liner, then blurred: every eye mask's last step."""
    grow = max(3, int(round(size * 0.035)) | 1)  # odd window, ~9 px at 256: covers lid and liner
    band = Image.fromarray(region).filter(ImageFilter.MaxFilter(grow)).filter(ImageFilter.GaussianBlur(size * 0.012))
    return np.asarray(band, dtype=np.uint8)


def mesh_region_mask(points: list[float], source_size: tuple[int, int], size: int) -> np.ndarray:
    """Filled polygons (points: flat x, y of closed rings of MESH_RING_POINTS each, in source
    pixels) at ``size`` x ``size``: uint8, 255 inside, grown and blurred like the label masks."""
    scale = [size / source_size[0], size / source_size[1]]
    rings = np.asarray(points, np.float64).reshape(-1, MESH_RING_POINTS, 2) * scale
    canvas = Image.new("L", (size, size))
    draw = ImageDraw.Draw(canvas)
    for ring in rings:
        draw.polygon([tuple(point) for point in ring], fill=255)
    return _grown(np.asarray(canvas), size)


def fixed_eye_band(size: int) -> np.ndarray:
    """The documented eye band for aligned faces without label maps (see EYE_BAND)."""
    axis = np.arange(size, dtype=np.float32) / size
    fade = 0.02

    def ramp(lo: float, hi: float) -> np.ndarray:
        return np.clip((axis - lo) / fade, 0, 1) * np.clip((hi - axis) / fade, 0, 1)

    band = ramp(EYE_BAND["top"], EYE_BAND["bottom"])[:, None] * ramp(EYE_BAND["left"], EYE_BAND["right"])[None, :]
    return (band * 255).astype(np.uint8)


def eye_mask_from_landmarks(points: list[float], source_size: tuple[int, int], size: int) -> np.ndarray:
    """Two soft ellipses around the eye centres (points: left eye x, y, right eye x, y in source
    pixels), oriented along the eye line; uint8, 255 at the eyes, blurred like the label masks."""
    scale = np.array([size / source_size[0], size / source_size[1]])
    left, right = np.array(points[0:2]) * scale, np.array(points[2:4]) * scale
    distance = max(float(np.hypot(*(right - left))), 1.0)
    along = (right - left) / distance
    across = np.array([-along[1], along[0]])
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    grid = np.stack([xs, ys], axis=-1)
    inside = np.zeros((size, size), bool)
    for centre in (left, right):
        offset = grid - centre
        inside |= (((offset @ along) / (EYE_RADII[0] * distance)) ** 2
                   + ((offset @ across) / (EYE_RADII[1] * distance)) ** 2 <= 1)
    mask = Image.fromarray(inside.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(size * 0.012))
    return np.asarray(mask, dtype=np.uint8)


class LandmarkCache:
    """Eye and mouth landmarks per source image, detected once and kept in DIR/.tinybeauty_landmarks.json
    by the file's sha256 (a changed file is detected again). ``None``: no face found."""

    def __init__(self, root: Path):
        from faces import FaceDetector

        self.path = Path(root) / LANDMARK_CACHE
        try:
            self.points: dict[str, list[float] | None] = (json.loads(self.path.read_text()) if self.path.is_file()
                                                          else {})
        except (json.JSONDecodeError, OSError):
            self.points = {}  # a damaged cache is rebuilt
        self.detector = FaceDetector(threads=1)
        self.lock = threading.Lock()  # one interpreter, several decoding threads
        self.changed = False

    def eye_points(self, key: str, image: Image.Image) -> list[float] | None:
        """Landmarks of the image whose file has sha256 ``key``: cached, or detected now."""
        with self.lock:
            if key not in self.points:
                self.points[key] = self._locate(image)
                self.changed = True
            return self.points[key]

    def _locate(self, image: Image.Image) -> list[float] | None:
        faces = self.detector(image)
        best = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), default=None)
        return None if best is None else [*best.left_eye, *best.right_eye, *best.mouth]

    def save(self) -> None:
        if not self.changed:
            return
        try:
            write_text(self.path, json.dumps(self.points) + "\n")
        except OSError as error:  # a read-only data folder: the landmarks are detected again next run
            log.warning("could not cache landmarks in %s (%s); they will be detected again next time", self.path, error)


class MeshCache(LandmarkCache):
    """The face mesh's two eye contours per source image (the largest face), found once and kept
    in DIR/.tinybeauty_mesh.json like LandmarkCache's points."""

    def __init__(self, root: Path):
        from faces import FaceTracker

        self.path = Path(root) / MESH_CACHE
        try:
            self.points = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except (json.JSONDecodeError, OSError):
            self.points = {}  # a damaged cache is rebuilt
        self.tracker = FaceTracker(256, threads=1, smoothing=False)
        self.lock = threading.Lock()
        self.changed = False

    def _locate(self, image: Image.Image) -> list[float] | None:
        from faces.mesh import LEFT_EYE, RIGHT_EYE

        self.tracker.reset()
        faces = self.tracker.update(np.asarray(image.convert("RGB")), 0.0)
        if not faces:
            return None
        best = max(faces, key=lambda face: face.alignment.side)
        rings = best.landmarks[list(RIGHT_EYE + LEFT_EYE)]
        return [round(float(value), 2) for value in rings.ravel()]


def _labels_mask(pair: Pair, source: Image.Image, size: int) -> np.ndarray:
    labels = read_label_map(pair.mask)
    if labels.shape[::-1] != source.size:
        raise DataError(f"{pair.mask} is {labels.shape[1]}x{labels.shape[0]} but {pair.source} is "
                        f"{source.size[0]}x{source.size[1]}; label maps must match their image's size")
    resized = Image.fromarray(labels.astype(np.uint8 if labels.max() < 256 else np.int32))
    return eye_mask_from_labels(np.asarray(resized.resize((size, size), Image.NEAREST)), size)


def _eye_mask_of(eye_mask: str, size: int, landmarks: LandmarkCache | None, fallbacks: dict[str, str]):
    """The per-pair step of decoding that makes its eye mask (None: the fixed band). A located source
    that finds no face falls back to the pair's label map if it has one (``fallbacks[name] = 'labels'``)."""

    def make(pair: Pair, source: Image.Image, file_shas: list[str]) -> np.ndarray | None:
        if eye_mask == "labels":
            return _labels_mask(pair, source, size)
        if eye_mask in ("landmarks", "mesh"):
            points = landmarks.eye_points(file_shas[0], source)
            if points is None:
                fallbacks[pair.name] = "labels" if pair.mask is not None else "band"
                return _labels_mask(pair, source, size) if pair.mask is not None else None
            draw = eye_mask_from_landmarks if eye_mask == "landmarks" else mesh_region_mask
            return draw(points, source.size, size)
        return None

    return make


def load_pairs(root: Path, image_size: int = 256, workers: int = 4, eye_mask: str = "auto") -> PairCache:
    """Discover, validate and decode every pair once. Raises DataError before any training."""
    pairs = discover_pairs(root)
    with_masks = sum(p.mask is not None for p in pairs)
    if 0 < with_masks < len(pairs):
        raise DataError(f"{with_masks} of {len(pairs)} pairs in {root} have label maps; give every pair one or none")
    if eye_mask == "labels" and not with_masks:
        raise DataError(f"--eye-mask labels, but {root} has no mask/ label maps; add them or use --eye-mask landmarks")
    source = eye_mask if eye_mask != "auto" else "mesh"
    if source == "band":
        pairs = [Pair(p.name, p.source, p.target, None) for p in pairs]  # label maps not used
    return decode_with_eye_masks(pairs, image_size, workers, eye_mask=source, root=root)


def _landmark_cache(root: Path, eye_mask: str = "landmarks") -> LandmarkCache | None:
    from faces import DetectorUnavailable

    try:
        return MeshCache(root) if eye_mask == "mesh" else LandmarkCache(root)
    except DetectorUnavailable as error:
        log.warning("eye mask: %s; using the fixed eye band", error)
        return None


def decode_with_eye_masks(pairs: list[Pair], image_size: int, workers: int = 4, eye_mask: str = "band",
                          root: Path | None = None, expected_hashes: list[str] | None = None,
                          origin: str = "") -> PairCache:
    """Decode ``pairs`` (``models.data.decode_pairs``) with the eye mask of each: from its label
    map, from landmarks (detected, cached in ``root``), or the fixed band."""
    located = eye_mask in ("landmarks", "mesh")
    landmarks = _landmark_cache(root or pairs[0].source.parent, eye_mask) if located else None
    if located and landmarks is None:  # no detector here: logged by _landmark_cache
        eye_mask = "labels" if pairs and all(pair.mask is not None for pair in pairs) else "band"
    fallbacks: dict[str, str] = {}
    cache, masks = decode_pairs(pairs, image_size, workers, expected_hashes, origin,
                                extra=_eye_mask_of(eye_mask, image_size, landmarks, fallbacks))
    band = fixed_eye_band(image_size)
    cache.eye_masks = np.stack([band if mask is None else mask for mask in masks]) if masks else \
        np.empty((0, image_size, image_size), np.uint8)
    cache.eye_mask = eye_mask
    if landmarks is not None:
        landmarks.save()
    if eye_mask == "labels":
        log.info("eye mask: grown from the face-parsing labels %s", EYE_LABELS)
    elif located:
        missed = sorted(fallbacks)
        log.info("eye mask: from face %s for %d of %d images (cached in %s)%s",
                 "mesh contours" if eye_mask == "mesh" else "landmarks", len(pairs) - len(missed), len(pairs),
                 landmarks.path, f"; no face found in {len(missed)}, which use their label map or the fixed band: "
                 + ", ".join(f"{name} ({fallbacks[name]})" for name in missed[:10])
                 + (" ..." if len(missed) > 10 else "") if missed else "")
    else:
        log.info("eye mask: the fixed eye band for aligned faces %s", EYE_BAND)
    return cache


def load_split_for_training(split: dict, part: str, origin: str = "this run started") -> PairCache:
    """The recorded ``part`` with the eye masks it was trained with (resume), hashes checked."""
    pairs, hashes = split_pairs(split, part)
    return decode_with_eye_masks(pairs, split["image_size"], eye_mask=split.get("eye_mask", "band"),
                                 root=Path(split["data"]), expected_hashes=hashes, origin=origin)


def split_indices(n: int, val_fraction: float = 0.1, test_fraction: float = 0.0,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic train / val / test split by seed, as fractions of all ``n`` pairs.

    Validation takes the first ``ceil(n * val_fraction)`` of a seeded permutation (so
    ``test_fraction=0`` is the paper's 90/10 split), test the next ``ceil(n * test_fraction)``,
    training the rest. Validation and training get at least one pair each."""
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(f"split fractions must satisfy 0 < val ({val_fraction}), 0 <= test ({test_fraction}) "
                        "and val + test < 1")
    n_val = max(1, int(math.ceil(n * val_fraction)))
    n_test = int(math.ceil(n * test_fraction)) if test_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise DataError(f"{n} pairs are too few for a {val_fraction:.0%} validation and {test_fraction:.0%} test "
                        f"split with training pairs left; add pairs (at least {n_val + n_test + 1})")
    order = np.random.default_rng(seed).permutation(n)
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return {name: np.sort(parts[name]) for name in SPLITS}


# --augment: colour and geometry changes drawn per pair and applied identically to its source and
# target (and, for geometry, its eye mask), so the pair still shows the same makeup on the same face.
AUGMENTATIONS = ("none", "photometric", "geometric", "both")
# Small on purpose: the style is one colour, so large hue or brightness changes would teach
# the network other makeup; a face still reads as a face at +-10% scale and +-10 degrees.
# (name, neutral value, +- range) of each value drawn, uniformly, in draw order.
# No gamma: a power of every value cost as much as the rest of the colour change together.
PHOTOMETRIC_DRAWS = (("brightness", 1.0, 0.10), ("contrast", 1.0, 0.10), ("saturation", 1.0, 0.10),
                     ("hue_degrees", 0.0, 5.0))
GEOMETRIC_DRAWS = (("scale", 1.0, 0.10), ("rotation_degrees", 0.0, 10.0),
                   ("shift_x", 0.0, 0.05), ("shift_y", 0.0, 0.05))  # shifts: fractions of the side
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
AUGMENT_STREAM = 1  # the third seed word of the augmentation's own random stream


def colour_matrix(saturation: float, hue_degrees: float) -> np.ndarray:
    """3x3 RGB matrix: saturation about the luma grey, then a hue rotation about the grey axis
    (Rodrigues' rotation about (1, 1, 1) / sqrt(3)). In numpy: 3x3 torch ops cost more here."""
    saturate = saturation * np.eye(3) + (1 - saturation) * np.tile(LUMA, (3, 1))
    angle = math.radians(hue_degrees)
    cross = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / math.sqrt(3)
    rotate = math.cos(angle) * np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) / 3 * np.ones((3, 3))
    return (rotate @ saturate).astype(np.float32)


def photometric(images: list[torch.Tensor], draw: dict[str, float]) -> list[torch.Tensor]:
    """One colour transform, a function of each pixel alone, on images (3 x H x W in [0, 1]):
    saturation and hue (colour_matrix), contrast about the first image's mean luma, brightness,
    a clamp to [0, 1] (``draw``: the values named in PHOTOMETRIC_DRAWS). One matrix product and
    offset per image, in numpy on the channels-last pixels (twice as fast as torch's for a
    3 x 3 matrix); each image on its own, so equal images stay bit-equal."""
    pixels = [image.permute(1, 2, 0).numpy().reshape(-1, 3) for image in images]
    pivot = float((pixels[0] @ LUMA).mean())  # the source's, for every image; a column mean is 20x slower
    gain = draw["brightness"] * draw["contrast"]
    matrix = (gain * colour_matrix(draw["saturation"], draw["hue_degrees"])).T.astype(np.float32)
    offset = np.float32(draw["brightness"] * (1 - draw["contrast"]) * pivot)
    changed = []
    for image, values in zip(images, pixels, strict=True):
        mixed = values @ matrix
        mixed += offset
        np.clip(mixed, 0.0, 1.0, out=mixed)
        changed.append(torch.from_numpy(mixed.reshape(image.shape[1], image.shape[2], 3)).permute(2, 0, 1))
    return changed


def warp_window(arrays: list[np.ndarray], window: tuple[int, int, int], draw: dict[str, float],
                flip: bool) -> torch.Tensor:
    """The square ``window`` (top, left, side) of ``arrays`` (H x W x C uint8 each, one image),
    zoomed, rotated about its centre, shifted and mirrored (``draw``: the values named in
    GEOMETRIC_DRAWS), resampled bilinearly; what falls outside the image is its reflection.
    Returns their channels stacked, float in [0, 1], C x side x side."""
    (top, left, side), (height, width) = window, arrays[0].shape[:2]
    angle, scale = math.radians(draw["rotation_degrees"]), draw["scale"]
    centre_x, centre_y = left + side * (0.5 + draw["shift_x"]), top + side * (0.5 + draw["shift_y"])
    # Only the part of the image the window can reach is converted to float (2 px for bilinear's
    # neighbours): a quarter of the cost at 128 px crops of 256 px images.
    reach = side / 2 / scale * (abs(math.cos(angle)) + abs(math.sin(angle))) + 2
    x0, x1 = max(0, math.floor(centre_x - reach)), min(width, math.ceil(centre_x + reach))
    y0, y1 = max(0, math.floor(centre_y - reach)), min(height, math.ceil(centre_y + reach))
    # Channels stay last in memory (a permuted view): grid_sample reads it as fast, and no copy is made.
    region = np.concatenate([a[y0:y1, x0:x1] for a in arrays], axis=2)
    stack = torch.from_numpy(region).permute(2, 0, 1).float().div_(255.0)
    grid = affine_grid(side, (x1 - x0, y1 - y0), (centre_x - x0, centre_y - y0), angle, scale, flip)
    return torch.nn.functional.grid_sample(stack[None], grid, mode="bilinear", padding_mode="reflection",
                                           align_corners=False)[0]


@functools.lru_cache(maxsize=4)
def _output_pixels(side: int) -> np.ndarray:
    """(x, y, 1) of each output pixel centre of a side x side square, in [-1, 1]: side^2 x 3 float32."""
    axis = (np.arange(side, dtype=np.float32) + 0.5) * (2 / side) - 1
    ys, xs = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([xs, ys, np.ones_like(xs)], axis=-1).reshape(-1, 3)


def affine_grid(side: int, size: tuple[int, int], centre: tuple[float, float], angle: float, scale: float,
                flip: bool) -> torch.Tensor:
    """grid_sample's 1 x side x side x 2 grid (input coordinates in [-1, 1], align_corners=False) for
    an output square centred on ``centre`` (pixels) of an input of ``size`` (width, height), rotated
    by ``angle``, zoomed by ``scale``, mirrored if ``flip``: torch's affine_grid of that matrix, as
    one numpy product with cached pixel centres (4x faster than torch at this size)."""
    cos, sin, mirror = math.cos(angle), math.sin(angle), -1.0 if flip else 1.0
    fx, fy = side / size[0] / scale, side / size[1] / scale
    theta = np.array([[mirror * fx * cos, mirror * fy * sin],
                      [-fx * sin, fy * cos],
                      [2 * centre[0] / size[0] - 1, 2 * centre[1] / size[1] - 1]], np.float32)
    return torch.from_numpy(_output_pixels(side) @ theta).reshape(1, side, side, 2)


class PairDataset(torch.utils.data.Dataset):
    """Float tensors (source, target, eye_mask) in [0, 1], CHW, from the uint8 cache.

    With ``train=True``: a random horizontal flip and, if ``crop`` is set, a random square
    crop, applied identically to the three arrays so pairs stay aligned; ``augment`` adds a
    colour change (``photometric``: source and target), a small zoom / rotation / shift
    (``geometric``: all three, resampled from the whole image around the crop), or ``both``.
    Crops and flips come from the (seed, epoch) stream as they always have, the augmentation's
    values from a second stream of (seed, epoch): so ``none`` draws exactly what it did before
    ``augment`` existed, and every option sees the same crops and flips as ``none``.
    """

    def __init__(self, cache: PairCache, indices: np.ndarray | None = None, train: bool = False,
                 crop: int | None = None, seed: int = 0, augment: str = "none"):
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
        self.cache, self.train, self.crop, self.seed, self.augment = cache, train, crop, seed, augment
        self.indices = np.arange(len(cache)) if indices is None else np.asarray(indices)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Augmentation draws from streams fixed by (seed, epoch): a resumed run repeats them exactly."""
        self.rng = np.random.default_rng([self.seed, epoch])
        self.augment_rng = np.random.default_rng([self.seed, epoch, AUGMENT_STREAM])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int):
        index = self.indices[item]
        arrays = [self.cache.sources[index], self.cache.targets[index], self.cache.eye_masks[index][..., None]]
        if not self.train:
            return self._as_tensors(arrays)
        side = arrays[0].shape[0]
        top = left = 0
        if self.crop and self.crop < side:
            top, left = self.rng.integers(0, side - self.crop + 1, size=2)
            side = self.crop
        flip = self.rng.random() < 0.5
        if self.augment in ("geometric", "both"):
            warped = warp_window(arrays, (int(top), int(left), side), self._draw(GEOMETRIC_DRAWS), flip)
            source, target, eye = warped[:3], warped[3:6], warped[6:]
        else:
            arrays = [a[top:top + side, left:left + side] for a in arrays]
            source, target, eye = self._as_tensors([a[:, ::-1] for a in arrays] if flip else arrays)
        if self.augment in ("photometric", "both"):
            source, target = photometric([source, target], self._draw(PHOTOMETRIC_DRAWS))
        return source, target, eye

    def _draw(self, draws: tuple[tuple[str, float, float], ...]) -> dict[str, float]:
        """One value per (name, neutral, range) of ``draws``, uniform in neutral +- range."""
        limits = np.array([limit for _, _, limit in draws])
        values = self.augment_rng.uniform(-limits, limits)
        return {name: neutral + float(value) for (name, neutral, _), value in zip(draws, values, strict=True)}

    @staticmethod
    def _as_tensors(arrays: list[np.ndarray]) -> tuple[torch.Tensor, ...]:
        """C x H x W float views in [0, 1] of H x W x C uint8 arrays (channels stay last in memory)."""
        return tuple(torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0 for a in arrays)
