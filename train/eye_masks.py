"""The eye mask of each pair: where the eyeliner loss looks (uint8, image_size square, 255 at the eyes).

Sources, each an :class:`EyeMaskSource` that says of one pair whether it can serve it:

- ``labels``: grown from the pair's face-parsing label map (LaPa/MT: 4 and 5 are the eyes);
- ``landmarks``: ellipses around the eyes BlazeFace finds (points cached in DIR/.tinybeauty_landmarks.json);
- ``mesh``: the face mesh's eye contours, filled and grown (cached in DIR/.tinybeauty_mesh.json);
- ``band``: a fixed band where aligned faces have their eyes; serves every pair.

``--eye-mask`` picks the first source; :data:`FALLBACK_ORDER` says which serve a pair it cannot
(no face found: its label map if it has one, else the band). ``auto`` is the mesh.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from models.atomic import write_text
from models.data import EYE_LABELS, DataError, Pair, PairCache, decode_pairs, read_label_map

log = logging.getLogger(__name__)

# Without label maps: where the eyes are on an FFHQ-aligned face (fractions of the image).
# FFHQ's alignment puts the eye centres near y = 0.47 and x = 0.37 / 0.63 at 1024 px; the band
# covers both eyes with brows and lids and fades out over a few pixels.
EYE_BAND = {"top": 0.30, "bottom": 0.56, "left": 0.18, "right": 0.82}
LANDMARK_CACHE = ".tinybeauty_landmarks.json"
# "mesh": the eye contours of the 468-point face mesh (faces.mesh), filled and grown like the label
# masks; the contours are cached in DIR/.tinybeauty_mesh.json (16 points per eye).
MESH_CACHE = ".tinybeauty_mesh.json"
REGION_CACHE = ".tinybeauty_regions.json"  # region shapes from the same mesh (train/region_maps.py)
MESH_RING_POINTS = 16
# Eye region around a detected eye centre, in eye distances: wide enough for lids, liner and its
# wing, as the grown label masks are (measured on the synthetic faces' labels).
EYE_RADII = (0.42, 0.28)


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

    def points_of(self, key: str, image: Image.Image) -> list[float] | None:
        """What the cache keeps of the image with hash ``key`` (here its landmarks): cached, or located now."""
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
    in DIR/.tinybeauty_mesh.json like LandmarkCache's points (a subclass keeps other points of the mesh in
    its own ``file``)."""

    file = MESH_CACHE

    def __init__(self, root: Path):
        from faces import FaceTracker

        self.path = Path(root) / self.file
        try:
            self.points = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except (json.JSONDecodeError, OSError):
            self.points = {}  # a damaged cache is rebuilt
        self.tracker = FaceTracker(256, threads=1, smoothing=False)
        self.lock = threading.Lock()
        self.changed = False

    def _landmarks(self, image: Image.Image) -> np.ndarray | None:
        """The largest face's 468 x 2 mesh points in the image's pixels, or None where no face is found."""
        self.tracker.reset()
        faces = self.tracker.update(np.asarray(image.convert("RGB")), 0.0)
        if not faces:
            return None
        return max(faces, key=lambda face: face.alignment.side).landmarks

    def _locate(self, image: Image.Image) -> list[float] | None:
        from faces.mesh import LEFT_EYE, RIGHT_EYE

        landmarks = self._landmarks(image)
        if landmarks is None:
            return None
        return [round(float(value), 2) for value in landmarks[list(RIGHT_EYE + LEFT_EYE)].ravel()]


def _labels_mask(pair: Pair, source: Image.Image, size: int) -> np.ndarray:
    labels = read_label_map(pair.mask)
    if labels.shape[::-1] != source.size:
        raise DataError(f"{pair.mask} is {labels.shape[1]}x{labels.shape[0]} but {pair.source} is "
                        f"{source.size[0]}x{source.size[1]}; label maps must match their image's size")
    resized = Image.fromarray(labels.astype(np.uint8 if labels.max() < 256 else np.int32))
    return eye_mask_from_labels(np.asarray(resized.resize((size, size), Image.NEAREST)), size)



class EyeMaskSource(Protocol):
    """One place eye masks come from. ``mask`` (the pair, its upright source image, its files'
    sha256): the pair's eye mask (uint8, size x size, 255 at the eyes), or None where this source
    cannot serve it (no label map, no face found)."""

    name: str

    def mask(self, pair: Pair, image: Image.Image, file_shas: list[str]) -> np.ndarray | None: ...


@dataclass(frozen=True)
class LabelMaps:
    """Grown from the pair's face-parsing label map; serves the pairs that have one."""

    size: int
    name: str = "labels"

    def mask(self, pair: Pair, image: Image.Image, file_shas: list[str]) -> np.ndarray | None:
        return None if pair.mask is None else _labels_mask(pair, image, self.size)


class FixedBand:
    """The documented band where aligned faces have their eyes (EYE_BAND); serves every pair."""

    name = "band"

    def __init__(self, size: int):
        self.band = fixed_eye_band(size)

    def mask(self, pair: Pair, image: Image.Image, file_shas: list[str]) -> np.ndarray | None:
        return self.band


class LocatedEyes:
    """Eyes found on the face (``landmarks``: ellipses around BlazeFace's eye points; ``mesh``: the
    mesh's eye contours), the points cached in the data folder by the source file's sha256;
    serves the pairs in which a face is found."""

    def __init__(self, name: str, size: int, root: Path):
        self.name, self.size = name, size
        self.cache = MeshCache(root) if name == "mesh" else LandmarkCache(root)
        self.draw = mesh_region_mask if name == "mesh" else eye_mask_from_landmarks

    def mask(self, pair: Pair, image: Image.Image, file_shas: list[str]) -> np.ndarray | None:
        from faces import UnsearchableImage

        try:
            points = self.cache.points_of(file_shas[0], image)
        except UnsearchableImage as error:
            raise DataError(f"{pair.source}: {error}; crop it to the face or remove the pair") from None
        return None if points is None else self.draw(points, image.size, self.size)


# The sources tried for each --eye-mask, in order: the first that can serve a pair makes its mask.
FALLBACK_ORDER = {"labels": ("labels",), "landmarks": ("landmarks", "labels", "band"),
                  "mesh": ("mesh", "labels", "band"), "band": ("band",)}
LOCATED = ("landmarks", "mesh")


@dataclass(frozen=True)
class EyeMask:
    pixels: np.ndarray
    source: str  # the name of the source that served it


def first_serving(sources: list[EyeMaskSource]) -> Callable[[Pair, Image.Image, list[str]], EyeMask]:
    """The per-pair step of decoding that asks ``sources`` in order for the pair's eye mask."""

    def make(pair: Pair, image: Image.Image, file_shas: list[str]) -> EyeMask:
        for candidate in sources:
            pixels = candidate.mask(pair, image, file_shas)
            if pixels is not None:
                return EyeMask(pixels, candidate.name)
        raise DataError(f"no eye mask for {pair.source} from {[s.name for s in sources]}: it has no label map; "
                        "give every pair one, or use --eye-mask band")

    return make


def _located_eyes(eye_mask: str, size: int, root: Path) -> LocatedEyes | None:
    """The face-finding source, or None (logged) where its detector is not installed."""
    from faces import DetectorUnavailable

    try:
        return LocatedEyes(eye_mask, size, root)
    except DetectorUnavailable as error:
        log.warning("eye mask: %s; using the label maps where every pair has one, else the fixed eye band", error)
        return None


def eye_mask_sources(eye_mask: str, pairs: list[Pair], size: int,
                     root: Path | None) -> tuple[str, list[EyeMaskSource]]:
    """The sources for ``eye_mask`` (FALLBACK_ORDER) and the name of the first one that runs: where
    the face detector is not installed, the label maps if every pair has one, else the band."""
    located = _located_eyes(eye_mask, size, root or pairs[0].source.parent) if eye_mask in LOCATED else None
    if eye_mask in LOCATED and located is None:
        eye_mask = "labels" if pairs and all(pair.mask is not None for pair in pairs) else "band"
    simple = {"labels": LabelMaps, "band": FixedBand}
    return eye_mask, [located if name in LOCATED else simple[name](size) for name in FALLBACK_ORDER[eye_mask]]


def decode_with_eye_masks(pairs: list[Pair], image_size: int, workers: int = 4, eye_mask: str = "band",
                          root: Path | None = None, expected_hashes: list[str] | None = None,
                          origin: str = "") -> PairCache:
    """Decode ``pairs`` (``models.data.decode_pairs``) with the eye mask of each from the first of
    ``eye_mask``'s sources that serves it (FALLBACK_ORDER); landmarks are cached in ``root``."""
    eye_mask, sources = eye_mask_sources(eye_mask, pairs, image_size, root)
    cache, masks = decode_pairs(pairs, image_size, workers, expected_hashes, origin, extra=first_serving(sources))
    cache.eye_masks = np.stack([mask.pixels for mask in masks]) if masks else \
        np.empty((0, image_size, image_size), np.uint8)
    cache.eye_mask = eye_mask
    located = next((source for source in sources if isinstance(source, LocatedEyes)), None)
    if located is not None:
        located.cache.save()
    _log_sources(eye_mask, located, pairs, masks)
    return cache


def _log_sources(eye_mask: str, located: LocatedEyes | None, pairs: list[Pair], masks: list[EyeMask]) -> None:
    if eye_mask == "labels":
        log.info("eye mask: grown from the face-parsing labels %s", EYE_LABELS)
    elif located is not None:
        missed = sorted((pair.name, mask.source) for pair, mask in zip(pairs, masks, strict=True)
                        if mask.source != eye_mask)
        log.info("eye mask: from face %s for %d of %d images (cached in %s)%s",
                 "mesh contours" if eye_mask == "mesh" else "landmarks", len(pairs) - len(missed), len(pairs),
                 located.cache.path, f"; no face found in {len(missed)}, which use their label map or the fixed band: "
                 + ", ".join(f"{name} ({source})" for name, source in missed[:10])
                 + (" ..." if len(missed) > 10 else "") if missed else "")
    else:
        log.info("eye mask: the fixed eye band for aligned faces %s", EYE_BAND)
