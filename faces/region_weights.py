"""Per-region strength as a weight map over the model's crop, from a face's mesh (faces/regions.json).

Each region (lips, eyes, cheeks) is a union of soft ellipses placed from the mesh points
(:func:`region_shapes`), or, for a face without a mesh, the definition's template (where an average
face has them). :func:`weight_map` turns the shapes and a strength per region into one weight per
crop pixel: the regions' masks are made a partition of the face, each region taking its mask's share
of what the regions before it left (lips first: where the lips' mask is 1 their strength rules alone,
whatever soft cheek reaches there; the remainder is the ``rest``), and the weight is the
strength-weighted sum, ``rest + sum_r (strength_r - rest) x share_r``, so that every strength at 1
gives exactly 1.0 everywhere: the face mask alone, today's composite to the bit. ``apply`` multiplies
the face mask by it; ``web/static/regions.mjs`` computes the same numbers for the page.
"""

from __future__ import annotations

import math

import numpy as np

from faces.regions import CONTOURS, DEFINITION, REGION_NAMES, REMAINDER

# An ellipse in the crop, in fractions of its side: [centre x, centre y, radius along, radius across, angle
# (radians, of the along axis), feather (the mask reaches 0 at (1 + feather) x the radii)].
Ellipse = list[float]
Shapes = dict[str, list[Ellipse]]

INNER_CORNER = DEFINITION["inner_corner"]
CHEEK = DEFINITION["cheek"]
TEMPLATE: Shapes = {name: [list(map(float, ellipse)) for ellipse in ellipses]
                    for name, ellipses in DEFINITION["template"].items()}


def upper_lid(ring: tuple[int, ...]) -> tuple[int, ...]:
    """An eye ring's upper lid, inner corner to outer corner (the rings start at the outer corner)."""
    return ring[INNER_CORNER:] + ring[:1]


def lower_lid(ring: tuple[int, ...]) -> tuple[int, ...]:
    """An eye ring's lower lid, inner corner to outer corner."""
    return ring[INNER_CORNER::-1]


def _box_ellipse(spec: dict, points: np.ndarray) -> Ellipse:
    """The ellipse centred on the box of the spec's contours along its axis, of the box's proportions and just
    large enough to hold every point (a smile's corners reach past the box's inscribed ellipse), then grown."""
    inside = points[[index for name in spec["box"] for index in CONTOURS[name]]]
    start, end = points[spec["axis"][0]], points[spec["axis"][1]]
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    along_axis = np.array([math.cos(angle), math.sin(angle)])
    across_axis = np.array([-math.sin(angle), math.cos(angle)])
    along, across = inside @ along_axis, inside @ across_axis
    mid_along, mid_across = (along.min() + along.max()) / 2, (across.min() + across.max()) / 2
    half_along, half_across = (along.max() - along.min()) / 2, (across.max() - across.min()) / 2
    reach = float(np.sqrt(((along - mid_along) / half_along) ** 2 + ((across - mid_across) / half_across) ** 2).max())
    centre = mid_along * along_axis + mid_across * across_axis
    return [float(centre[0]), float(centre[1]), float(half_along * reach * spec["grow"][0]),
            float(half_across * reach * spec["grow"][1]), angle, float(spec["feather"])]


def cheek_ellipse(lid: tuple[int, ...], corner: int, points: np.ndarray) -> Ellipse:
    """The cheek below an eye's upper ``lid`` (inner to outer corner), toward the mouth ``corner`` and a
    little outward, sized by the eye's width, in the points' units: the built-in portraits' blush
    (train/portraits.py) and the cheeks' region."""
    eye, width = points[list(lid)].mean(0), float(np.hypot(*(points[lid[-1]] - points[lid[0]])))
    outward = (points[lid[-1]] - points[lid[0]]) / max(width, 1e-9)
    centre = eye + CHEEK["toward_corner"] * (points[corner] - eye) + CHEEK["outward"] * width * outward
    radius_along, radius_across = CHEEK["radii"]
    return [float(centre[0]), float(centre[1]), radius_along * width, radius_across * width, 0.0,
            float(CHEEK["feather"])]


def _cheek_ellipse(spec: dict, points: np.ndarray) -> Ellipse:
    return cheek_ellipse(upper_lid(CONTOURS[spec["cheek"]]), spec["corner"], points)


def region_shapes(points: np.ndarray) -> Shapes:
    """Each region's ellipses from a face's mesh: 468 x 2+ points in fractions of the crop's side."""
    points = np.asarray(points, np.float64)[:, :2]
    return {name: [_box_ellipse(spec, points) if "box" in spec else _cheek_ellipse(spec, points) for spec in specs]
            for name, specs in DEFINITION["shapes"].items()}


def ellipse_mask(ellipse: Ellipse, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """1 inside the ellipse, 0 from (1 + feather) x its radii outwards, smoothstep between; u, v in
    fractions of the crop's side."""
    centre_x, centre_y, radius_along, radius_across, angle, feather = ellipse
    cos, sin = math.cos(angle), math.sin(angle)
    du, dv = u - centre_x, v - centre_y
    along, across = (du * cos + dv * sin) / radius_along, (dv * cos - du * sin) / radius_across
    ramp = np.clip((1 + feather - np.sqrt(along * along + across * across)) / feather, 0, 1)
    return ramp * ramp * (3 - 2 * ramp)


def _reach(ellipse: Ellipse, size: int) -> tuple[int, int, int, int]:
    """The crop pixels an ellipse's mask can reach, as (row from, row to, column from, column to): beyond
    (1 + feather) x its longer radius it is exactly 0, so only these are computed (a few % of the crop)."""
    centre_x, centre_y, radius_along, radius_across, _, feather = ellipse
    reach = (1 + feather) * max(radius_along, radius_across)
    return (max(0, math.floor((centre_y - reach) * size)), min(size, math.ceil((centre_y + reach) * size) + 1),
            max(0, math.floor((centre_x - reach) * size)), min(size, math.ceil((centre_x + reach) * size) + 1))


def weight_map(shapes: Shapes, strengths: dict[str, float], size: int) -> np.ndarray:
    """size x size float32 weights at the crop's pixel centres: rest + sum_r (strength_r - rest) x share_r, each
    region's share its mask over what the regions before it left (REGION_NAMES' order: lips, eyes, cheeks);
    exactly 1.0 where every strength is 1."""
    centres = (np.arange(size, dtype=np.float64) + 0.5) / size
    rest = strengths[REMAINDER]
    weight, left = np.full((size, size), rest, np.float64), np.ones((size, size))
    for name in REGION_NAMES:
        if name == REMAINDER:
            continue
        boxes = [_reach(ellipse, size) for ellipse in shapes[name]]
        top, left_column = min(box[0] for box in boxes), min(box[2] for box in boxes)
        rows, columns = slice(top, max(box[1] for box in boxes)), slice(left_column, max(box[3] for box in boxes))
        mask = np.zeros((rows.stop - rows.start, columns.stop - columns.start))  # outside it the share is 0
        for ellipse, (row, row_end, column, column_end) in zip(shapes[name], boxes, strict=True):
            part = ellipse_mask(ellipse, centres[None, column:column_end], centres[row:row_end, None])
            inside = mask[row - top:row_end - top, column - left_column:column_end - left_column]
            np.maximum(inside, part, out=inside)
        share = mask * left[rows, columns]
        weight[rows, columns] += (strengths[name] - rest) * share
        left[rows, columns] -= share
    return weight.astype(np.float32)


def region_masks(shapes: Shapes, names: tuple[str, ...], size: int) -> np.ndarray:
    """len(names) x size x size float32 in [0, 1]: each named region's own soft mask (the largest of its
    ellipses' at each pixel centre), before :func:`weight_map` shares overlaps out; the maps a region-input
    network reads beside the face (train/region_maps.py)."""
    centres = (np.arange(size, dtype=np.float64) + 0.5) / size
    masks = np.zeros((len(names), size, size))
    for mask, name in zip(masks, names, strict=True):
        for ellipse in shapes[name]:  # only the pixels it can reach (beyond them its mask is exactly 0)
            row, row_end, column, column_end = _reach(ellipse, size)
            inside = mask[row:row_end, column:column_end]
            np.maximum(inside, ellipse_mask(ellipse, centres[None, column:column_end], centres[row:row_end, None]),
                       out=inside)
    return masks.astype(np.float32)


def face_shapes(points_in_crop: np.ndarray | None) -> Shapes:
    """The shapes of one face: from its mesh (crop fractions) where it has one, else the template."""
    return TEMPLATE if points_in_crop is None else region_shapes(points_in_crop)
