"""Putting the model's makeup on a face in a picture: crop, run, warp the residual back, blend.

Shared by photos (``apply/photo.py``: the whole photo as a tensor) and videos
(``apply/video.py``: only each face's region of a uint8 frame is touched, so a 1280x720 frame
costs what its faces cost). Both give the same pixels: the region is the crop's footprint plus
the bilinear filter's reach, so every sample a face takes lies inside it. Per-region strength
(``--regions``) multiplies the face mask by a weight map over the crop (faces/region_weights.py); with
every strength at 1 that map is exactly 1.0, and the result is the mask's alone to the bit. A model
that reads the face's region maps beside it (``LoadedModel.region_inputs``: the default network)
gets each face's maps drawn over its crop at the model's input size from the same mesh shapes
(:func:`face_regions`: one mesh run per face and frame serves the strengths and the maps); a face without a
mesh gets empty maps, as training gives a face the mesh missed. A model without them is run on the face
alone, as it always was.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from export.runtime import Runner
from faces import Alignment
from faces.region_weights import TEMPLATE, Shapes, region_masks, region_shapes, weight_map

# The feathered face mask, in fractions of the aligned crop: an ellipse over the face (FFHQ crops
# put the eyes at ~0.45 and the mouth at ~0.7 of the height) that fades to zero over FEATHER.
MASK_CENTRE, MASK_RADII, FEATHER = (0.5, 0.55), (0.36, 0.44), 0.12
# Pixels around a face's footprint that its bilinear samples may still read.
REGION_MARGIN = 2


@functools.lru_cache(maxsize=4)
def face_mask(size: int) -> torch.Tensor:
    """1 x 1 x S x S feathered ellipse: 1 on the face, 0 from its edge outwards. Cached: read only."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    radius = torch.sqrt(((u - MASK_CENTRE[0]) / MASK_RADII[0]) ** 2 + ((v - MASK_CENTRE[1]) / MASK_RADII[1]) ** 2)
    ramp = ((1 - radius) / FEATHER).clamp(0, 1)
    return (ramp * ramp * (3 - 2 * ramp))[None, None]  # smoothstep


def _sample_affine(image: torch.Tensor, linear: np.ndarray, offset: np.ndarray, out_hw: tuple[int, int]
                   ) -> torch.Tensor:
    """Bilinear samples of a 1 x C x H x W image (zeros outside) on an out_h x out_w grid whose pixel
    centres q (in output pixels) lie at ``linear @ q + offset`` in the image's pixels. The grid is
    one affine map, so torch builds it (no per-pixel coordinates in Python)."""
    height, width = image.shape[-2:]
    out_h, out_w = out_hw
    # affine_grid works in [-1, 1] coordinates (align_corners=False): q = (base + 1) * out / 2 and
    # image pixels p map to p / size * 2 - 1.
    to_normal, from_normal = np.diag([2 / width, 2 / height]), np.diag([out_w / 2, out_h / 2])
    theta_linear = to_normal @ linear @ from_normal
    theta_offset = to_normal @ (linear @ from_normal @ np.ones(2) + offset) - 1
    theta = np.concatenate([theta_linear, theta_offset[:, None]], axis=1).astype(np.float32)
    base_x = (torch.arange(out_w, dtype=torch.float32) + 0.5) * (2 / out_w) - 1
    base_y = (torch.arange(out_h, dtype=torch.float32) + 0.5) * (2 / out_h) - 1
    # F.affine_grid's grid, built as two outer sums (a third of its time on a 256x256 crop).
    grid = torch.stack([float(row[0]) * base_x[None, :] + (float(row[1]) * base_y[:, None] + float(row[2]))
                        for row in theta], dim=-1)
    return F.grid_sample(image, grid[None], mode="bilinear", padding_mode="zeros", align_corners=False)


def crop_shapes(faces: list[tuple[Alignment, np.ndarray | None]]) -> list[Shapes | None]:
    """Each face's region shapes over its crop (faces.region_weights, in fractions of the crop's side) from its
    mesh landmarks (N x 2+ image pixels); None for a face without a mesh (aligned from the detector)."""
    return [None if landmarks is None else region_shapes(alignment.to_crop(landmarks[:, :2]) / alignment.size)
            for alignment, landmarks in faces]


def region_weights(strengths: dict[str, float] | None, faces: list[tuple[Alignment, np.ndarray | None]],
                   shapes: list[Shapes | None] | None = None) -> list[np.ndarray] | None:
    """Each face's per-region weights over its crop (faces.region_weights), from its mesh landmarks (N x 2+
    image pixels; None: the template's regions); None where no strengths are given (the face mask alone).
    ``shapes``: the faces' :func:`crop_shapes`, where they are drawn already."""
    if strengths is None:
        return None
    shapes = crop_shapes(faces) if shapes is None else shapes
    return [weight_map(TEMPLATE if shape is None else shape, strengths, alignment.size)
            for (alignment, _), shape in zip(faces, shapes, strict=True)]


def region_inputs(names: tuple[str, ...], shapes: list[Shapes | None], size: int) -> list[np.ndarray] | None:
    """Each face's region maps for a model that reads them (``names``: ``LoadedModel.region_inputs``, in the
    order of its regions input): 1 x K x size x size float32 in [0, 1] over the crop the model sees, each region's
    own mask (faces.region_weights.region_masks, as train/region_maps.py draws them), from the face's
    :func:`crop_shapes`; all 0 for a face without a mesh (no region known: what training gives a face the mesh
    missed, not the template). None for a model that reads none."""
    if not names:
        return None
    return [np.zeros((1, len(names), size, size), np.float32) if shape is None
            else region_masks(shape, names, size)[None] for shape in shapes]


@dataclasses.dataclass(frozen=True)
class FaceRegions:
    """What each face of one photo or frame takes beyond its crop, from one mesh run: ``weights`` for
    ``--regions`` strengths (None: the face mask alone), ``maps`` for a region-input model (None: the face
    alone), and how many faces had no mesh (their maps empty)."""

    weights: list[np.ndarray] | None = None
    maps: list[np.ndarray] | None = None
    unmeshed: int = 0


def face_regions(strengths: dict[str, float] | None, names: tuple[str, ...],
                 faces: list[tuple[Alignment, np.ndarray | None]]) -> FaceRegions:
    """The faces' (alignment, mesh landmarks or None) weights and maps: their shapes drawn once, for both.
    Nothing is drawn where neither is asked for (a model of the face alone, no strengths)."""
    if strengths is None and not names:
        return FaceRegions()
    shapes = crop_shapes(faces)
    size = faces[0][0].size if faces else 0
    return FaceRegions(region_weights(strengths, faces, shapes), region_inputs(names, shapes, size),
                       sum(shape is None for shape in shapes) if names else 0)


def run_model(runner: Runner, faces: np.ndarray, regions: np.ndarray | None = None) -> np.ndarray:
    """The runner on N x 3 x S x S faces; ``regions`` (N x K x S x S) only for a model that reads them, so a
    model of the face alone is called as it always was, with the face alone."""
    made_up = runner(faces) if regions is None else runner(faces, regions=regions)
    return np.asarray(made_up, np.float32)


def made_up_faces(runner: Runner, photo: torch.Tensor, alignments: list[Alignment], strength: float,
                  weights: list[np.ndarray] | None = None, maps: list[np.ndarray] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """photo: 1 x 3 x H x W in [0, 1]. Returns (made-up photo, mask coverage), same size. ``weights``: each
    face's per-region weights (:func:`region_weights`), multiplied into its face mask; None: the mask alone.
    ``maps``: each face's region maps (:func:`region_inputs`), passed to the model with its crop; None: the
    model reads the face alone."""
    height, width = photo.shape[-2:]
    result, coverage = photo.clone(), torch.zeros(1, 1, height, width)
    mask = face_mask(alignments[0].size) if alignments else None
    for index, alignment in enumerate(alignments):
        size = alignment.size
        basis = np.stack([alignment.x_axis, alignment.y_axis], axis=1).astype(np.float64)  # crop -> image, columns
        # Supersample the crop when the face is larger than the crop (no aliasing), then average.
        factor = max(1, min(4, math.ceil(np.hypot(*alignment.x_axis) / size)))
        crop = _sample_affine(result, basis / (size * factor), np.asarray(alignment.origin, np.float64),
                              (size * factor, size * factor))
        crop = (F.avg_pool2d(crop, factor) if factor > 1 else crop).clamp(0, 1)
        made_up = run_model(runner, crop.numpy(), None if maps is None else maps[index])
        residual = torch.from_numpy(made_up) - crop
        x0, y0, x1, y1 = alignment.image_bounds(width, height)
        if x1 <= x0 or y1 <= y0:
            continue
        # The footprint's pixels, read back in the crop: crop pixels = size x basis^-1 (image - origin).
        to_crop = size * np.linalg.inv(basis)
        weighted = mask if weights is None else mask * torch.from_numpy(weights[index])
        back = _sample_affine(torch.cat([residual * weighted, mask], dim=1), to_crop,
                              to_crop @ (np.array([x0, y0], np.float64) - alignment.origin), (y1 - y0, x1 - x0))
        result[..., y0:y1, x0:x1] = (result[..., y0:y1, x0:x1] + strength * back[:, :3]).clamp(0, 1)
        coverage[..., y0:y1, x0:x1] = torch.maximum(coverage[..., y0:y1, x0:x1], back[:, 3:])
    return result, coverage


def face_region(alignment: Alignment, width: int, height: int) -> tuple[int, int, int, int]:
    """The box of a frame that one face reads and writes: its footprint plus the filter's reach."""
    x0, y0, x1, y1 = alignment.image_bounds(width, height)
    return (max(0, x0 - REGION_MARGIN), max(0, y0 - REGION_MARGIN),
            min(width, x1 + REGION_MARGIN), min(height, y1 + REGION_MARGIN))


def make_up_frame(runner: Runner, frame: np.ndarray, alignments: list[Alignment], strength: float,
                  weights: list[np.ndarray] | None = None, maps: list[np.ndarray] | None = None) -> int:
    """Make up each face of an H x W x 3 uint8 RGB frame in place, touching only its region;
    pixels the face mask does not reach keep their exact values. Returns the faces made up.
    ``weights``, ``maps``: as made_up_faces'."""
    height, width = frame.shape[:2]
    done = 0
    for index, alignment in enumerate(alignments):
        x0, y0, x1, y1 = face_region(alignment, width, height)
        if x1 <= x0 or y1 <= y0:
            continue  # wholly outside the frame
        region = frame[y0:y1, x0:x1]
        local = dataclasses.replace(alignment, origin=np.asarray(alignment.origin, np.float64) - (x0, y0))
        pixels = torch.from_numpy(np.ascontiguousarray(region)).permute(2, 0, 1)[None].float() / 255
        made_up, coverage = made_up_faces(runner, pixels, [local], strength,
                                          None if weights is None else [weights[index]],
                                          None if maps is None else [maps[index]])
        reached = (coverage[0, 0] > 0).numpy()
        made_up_pixels = (made_up[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        region[reached] = made_up_pixels[reached]
        done += 1
    return done
