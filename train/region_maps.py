"""The face's region maps the default network reads beside it (``--no-region-inputs``: the face alone).

One soft map in [0, 1] per region of faces/regions.json but the remainder (lips, eyes, cheeks), each the
region's own mask (faces/region_weights.py: ``region_masks``) placed from the face mesh found on the
decoded source at the training size, so the maps sit exactly on the pixels the network sees. The region
shapes are cached by the decoded pixels' sha256 in DIR/.tinybeauty_regions.json (the mesh runs once per
image and size). An image in which no face is found gets empty maps (no region known), not the
definition's template: that places an average face in an aligned crop, and training images are not
aligned (on the built-in set's turned portraits it fell beside the face); the log counts them. The maps
are kept as uint8 beside the eye mask (``PairCache.region_maps``) and follow every crop, flip and warp
with it (train/dataset.py).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faces.region_weights import region_masks, region_shapes
from faces.regions import REGION_NAMES, REMAINDER
from models.data import DataError, PairCache
from train.eye_masks import REGION_CACHE, MeshCache

log = logging.getLogger(__name__)

# The maps the default network reads, in channel order: every region but the rest of the face.
REGION_INPUTS: tuple[str, ...] = tuple(name for name in REGION_NAMES if name != REMAINDER)


class RegionShapesCache(MeshCache):
    """Each image's region shapes (ellipses in fractions of its side: faces/region_weights.py) from the largest
    face's mesh, kept in DIR/.tinybeauty_regions.json; None where no face is found."""

    file = REGION_CACHE

    def _locate(self, image: Image.Image) -> dict | None:
        landmarks = self._landmarks(image)
        if landmarks is None:
            return None
        shapes = region_shapes(landmarks[:, :2] / np.array(image.size, np.float64))
        return {name: [[round(value, 6) for value in ellipse] for ellipse in ellipses]
                for name, ellipses in shapes.items()}


def region_maps(cache: PairCache, root: Path, names: tuple[str, ...] = REGION_INPUTS,
                known: dict[str, dict | None] | None = None) -> np.ndarray:
    """N x S x S x len(names) uint8 (255: inside the region) for the cache's decoded sources, regions placed
    from each face's mesh (all 0 where none is found), shapes cached in ``root``. ``known``: shapes other
    folders of the run found, by the same pixel hash (the built-in looks are drawn on the same faces): taken
    instead of running the mesh again, and added to with this folder's."""
    from faces import DetectorUnavailable

    try:
        shapes_cache = RegionShapesCache(root)
    except DetectorUnavailable as error:
        raise DataError(f"the region maps beside the face (the default network's input) are placed with the face "
                        f"mesh, which cannot run here ({error}); install it or train with --no-region-inputs") from None
    size = cache.sources.shape[1]
    maps = np.zeros((len(cache), size, size, len(names)), np.uint8)
    missed = []
    for index, source in enumerate(cache.sources):
        key = hashlib.sha256(source.tobytes()).hexdigest()
        if known and key in known and key not in shapes_cache.points:
            shapes_cache.points[key], shapes_cache.changed = known[key], True
        shapes = shapes_cache.points_of(key, Image.fromarray(source))
        if known is not None:
            known[key] = shapes
        if shapes is None:
            missed.append(cache.pairs[index].name)
            continue
        maps[index] = np.rint(region_masks(shapes, names, size).transpose(1, 2, 0) * 255)
    shapes_cache.save()
    log.info("region inputs (%s): from the face mesh for %d of %d images (cached in %s)%s", ", ".join(names),
             len(cache) - len(missed), len(cache), shapes_cache.path,
             f"; no face found in {len(missed)}, which get empty maps: {', '.join(missed[:10])}"
             + (" ..." if len(missed) > 10 else "") if missed else "")
    return maps


def run_region_maps(cache: PairCache, split: dict, names: tuple[str, ...] = REGION_INPUTS) -> np.ndarray:
    """The region maps of a run's cache (train/pipeline.py) under its split record: one folder's pairs, or with
    several looks (``split["looks"]``, ``cache.looks`` each pair's look) each look's pairs placed and cached in
    that look's own folder; a look with no pairs in the cache (an --add-look run's earlier looks) is skipped."""
    if "looks" not in split:
        return region_maps(cache, Path(split["data"]), names)
    size = cache.sources.shape[1]
    maps = np.zeros((len(cache), size, size, len(names)), np.uint8)
    known: dict[str, dict | None] = {}
    for look, record in enumerate(split["looks"].values()):
        rows = np.flatnonzero(cache.looks == look)
        if len(rows):
            part = PairCache([cache.pairs[i] for i in rows], [cache.hashes[i] for i in rows], cache.sources[rows],
                             cache.targets[rows])  # what the maps are placed from: the sources and their names
            maps[rows] = region_maps(part, Path(record["data"]), names, known)
    return maps


def region_tensor(maps: np.ndarray) -> torch.Tensor:
    """N x K x S x S float in [0, 1] of N x S x S x K uint8 maps: the ``regions`` the network takes."""
    return torch.from_numpy(maps).permute(0, 3, 1, 2).contiguous().float() / 255.0
