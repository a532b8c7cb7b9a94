"""One photo made up: every face found, aligned, run through the model and blended back
(``python -m apply`` runs it on each photo given; apply/video.py does a video's frames).

Pixels outside the faces keep their exact values; the photo keeps its size, and its mode (RGBA
keeps its alpha; greyscale becomes RGB). An aligned crop (no tracker) is run whole, its residual
upsampled onto it. Results are written to a hidden temp file and renamed into place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from apply.composite import made_up_faces, region_weights
from apply.outputs import result_paths
from export.runtime import Runner
from faces import FaceTracker, still_faces
from faces.region_weights import TEMPLATE, weight_map
from models.atomic import atomic_path
from models.data import open_photo


class NoFaceFound(ValueError):
    """A photo in which the detector found no face."""


def made_up_aligned(runner: Runner, photo: torch.Tensor, model_size: int, strength: float,
                    regions: dict[str, float] | None = None) -> torch.Tensor:
    """An already aligned crop: the model at model_size, its residual upsampled onto the photo; ``regions``:
    the residual weighted per region first, where the template face has them (the crop has no mesh)."""
    small = F.interpolate(photo, size=(model_size, model_size), mode="bilinear", antialias=True, align_corners=False)
    small = small.clamp(0, 1)
    residual = torch.from_numpy(np.asarray(runner(small.numpy()), np.float32)) - small
    if regions is not None:
        residual = residual * torch.from_numpy(weight_map(TEMPLATE, regions, model_size))
    residual = F.interpolate(residual, size=photo.shape[-2:], mode="bilinear", align_corners=False)
    return (photo + strength * residual).clamp(0, 1)


def apply_to_file(runner: Runner, tracker: FaceTracker | None, path: Path, out_dir: Path, model_size: int,
                  strength: float, side_by_side: bool, regions: dict[str, float] | None = None
                  ) -> tuple[list[Path], list[str]]:
    """Returns (files written, how each face made up was aligned: "mesh" or "detector"; ["aligned"]
    for an aligned crop, tracker None). ``regions``: a strength per region (faces.regions), each face's
    from its mesh (the template's for a face without one). Raises DataError / NoFaceFound before writing
    anything."""
    image = open_photo(path)  # upright by EXIF, 8 bits per channel, RGB or RGBA
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    rgb = image.convert("RGB")
    original = np.asarray(rgb)
    photo = torch.from_numpy(original.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    if tracker is None:
        made_up, outside, faces = made_up_aligned(runner, photo, model_size, strength, regions), None, ["aligned"]
    else:
        found = still_faces(original, model_size, tracker)
        if not found:
            raise NoFaceFound(f"no face found in {path}; nothing written for it (if it is already an aligned "
                              "face crop, pass --aligned)")
        weights = region_weights(regions, [(face.alignment, face.landmarks) for face in found])
        made_up, coverage = made_up_faces(runner, photo, [face.alignment for face in found], strength, weights)
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
