"""One photo made up: every face found, aligned, run through the model and blended back
(``python -m apply`` runs it on each photo given; apply/video.py does a video's frames).

Pixels outside the faces keep their exact values; the photo keeps its size, and its mode (RGBA
keeps its alpha; greyscale becomes RGB). An aligned crop (no tracker) is run whole, its residual
upsampled onto it. Results are written to a hidden temp file and renamed into place.

A model that reads the face's region maps (``region_inputs``: the default network) gets each
face's maps drawn over its crop from the mesh found for it (apply/composite.py); an aligned crop gets them
from the mesh run on the crop at the model's size, as training places them on its aligned images
(train/region_maps.py). A face the mesh misses gets empty maps, and the log says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from apply.composite import face_regions, made_up_faces, region_inputs, run_model
from apply.outputs import result_paths
from export.runtime import Runner
from faces import FaceTracker, still_faces
from faces.region_weights import TEMPLATE, Shapes, region_shapes, weight_map
from models.atomic import atomic_path
from models.data import open_photo

log = logging.getLogger("apply")

class NoFaceFound(ValueError):
    """A photo in which the detector found no face."""


def crop_mesh_shapes(crop: torch.Tensor, tracker: FaceTracker | None) -> Shapes | None:
    """The region shapes of the largest face the mesh finds on a 1 x 3 x S x S crop (its 8-bit pixels, as
    training runs the mesh on its decoded images: train/region_maps.py), in fractions of its side; None where
    it finds none. ``tracker``: an unsmoothed FaceTracker to reuse (one is made where None)."""
    pixels = np.ascontiguousarray((crop[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    found = [face for face in still_faces(pixels, crop.shape[-1], tracker) if face.landmarks is not None]
    if not found:
        return None
    largest = max(found, key=lambda face: face.alignment.side)
    return region_shapes(largest.landmarks[:, :2] / np.array([pixels.shape[1], pixels.shape[0]], np.float64))


def made_up_aligned(runner: Runner, photo: torch.Tensor, model_size: int, strength: float,
                    regions: dict[str, float] | None = None, region_names: tuple[str, ...] = (),
                    tracker: FaceTracker | None = None, where: str = "the crop") -> torch.Tensor:
    """An already aligned crop: the model at model_size, its residual upsampled onto the photo; ``regions``:
    the residual weighted per region first, where the template face has them (the crop has no mesh).
    ``region_names``: the region maps the model reads (LoadedModel.region_inputs), drawn from the mesh run on
    the crop at model_size (``tracker``, made if None); its regions then serve ``regions`` too. Empty maps
    (logged, naming ``where``) where the mesh finds no face."""
    small = F.interpolate(photo, size=(model_size, model_size), mode="bilinear", antialias=True, align_corners=False)
    small = small.clamp(0, 1)
    shapes, maps = None, None
    if region_names:
        shapes = crop_mesh_shapes(small, tracker)
        if shapes is None:
            log.info("%s: the face mesh found no face on the crop; the model reads empty region maps there "
                     "(no region known, as training gives such a face)", where)
        [maps] = region_inputs(region_names, [shapes], model_size)
    residual = torch.from_numpy(run_model(runner, small.numpy(), maps)) - small
    if regions is not None:
        residual = residual * torch.from_numpy(weight_map(TEMPLATE if shapes is None else shapes, regions, model_size))
    residual = F.interpolate(residual, size=photo.shape[-2:], mode="bilinear", align_corners=False)
    return (photo + strength * residual).clamp(0, 1)


def apply_to_file(runner: Runner, tracker: FaceTracker | None, path: Path, out_dir: Path, model_size: int,
                  strength: float, side_by_side: bool, regions: dict[str, float] | None = None,
                  region_names: tuple[str, ...] = (), crop_tracker: FaceTracker | None = None
                  ) -> tuple[list[Path], list[str]]:
    """Returns (files written, how each face made up was aligned: "mesh" or "detector"; ["aligned"]
    for an aligned crop, tracker None). ``regions``: a strength per region (faces.regions), each face's
    from its mesh (the template's for a face without one). ``region_names``: the region maps the model reads
    (LoadedModel.region_inputs; empty: the face alone), each face's drawn from its mesh, empty (logged) for a
    face without one; an aligned crop's from the mesh on the crop (``crop_tracker``). Raises DataError /
    NoFaceFound before writing anything."""
    image = open_photo(path)  # upright by EXIF, 8 bits per channel, RGB or RGBA
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    rgb = image.convert("RGB")
    original = np.asarray(rgb)
    photo = torch.from_numpy(original.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    if tracker is None:
        made_up = made_up_aligned(runner, photo, model_size, strength, regions, region_names, crop_tracker, str(path))
        outside, faces = None, ["aligned"]
    else:
        found = still_faces(original, model_size, tracker)
        if not found:
            raise NoFaceFound(f"no face found in {path}; nothing written for it (if it is already an aligned "
                              "face crop, pass --aligned)")
        drawn = face_regions(regions, region_names, [(face.alignment, face.landmarks) for face in found])
        if drawn.unmeshed:
            log.info("%s: %d of %d faces have no face mesh (aligned from the detector's keypoints); the model reads "
                     "empty region maps for them (no region known, as training gives such a face)", path,
                     drawn.unmeshed, len(found))
        made_up, coverage = made_up_faces(runner, photo, [face.alignment for face in found], strength, drawn.weights,
                                          drawn.maps)
        outside, faces = (coverage[0, 0] <= 0).numpy(), [face.by for face in found]
    pixels = (made_up[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    if outside is not None:
        pixels[outside] = original[outside]  # exactly the photo wherever no face mask reaches
    result = Image.fromarray(pixels, "RGB")
    if alpha is not None:
        result.putalpha(alpha)
    made_up_path, *pair_path = result_paths(path, out_dir, side_by_side)
    written = [_save(result, made_up_path)]
    if side_by_side:
        pair = Image.new(result.mode, (image.width * 2, image.height))
        pair.paste(image.convert(result.mode), (0, 0))
        pair.paste(result, (image.width, 0))
        written.append(_save(pair, pair_path[0]))
    return written, faces


def _save(image: Image.Image, path: Path) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
