"""Align a face to the crop the model was trained on, and map between the two.

The FFHQ recipe (Karras et al. 2019, ``align_images.py``): a square oriented by the
eye-to-eye and eye-to-mouth vectors, centred a little below the eyes, with a side of
max(4 x eye distance, 3.6 x eye-to-mouth distance), from the detector's eyes and mouth
(:meth:`Alignment.from_face`). :class:`Alignment` is the similarity transform between that square
and the model's SxS crop, in both directions. :meth:`Alignment.from_mesh` places the same square
from the 468-point mesh: a fixed template of seven mesh points, fitted once to the detector's crop
(:data:`MESH_TEMPLATE`), solved as a similarity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faces.detection import Face
from faces.mesh import MOUTH_CORNERS

# FFHQ's square: half its side is the larger of 2 x the eye distance and 1.8 x the eye-to-mouth one.
EYE_HALF_SIDE, MOUTH_HALF_SIDE = 2.0, 1.8

# Where seven stable mesh points sit in the crop Alignment.from_face gives (x, y as fractions of
# its side): the eye corners (33, 133, 362, 263), the nose tip (1), the mouth corners (61, 291).
# from_mesh solves the similarity that puts them on a mesh, so the mesh gives the detector's crop,
# the framing the model's training crops have, without the detector's keypoint noise (its crop
# of one face moves by 3-6% in size and 2-3 degrees from view to view; the mesh's by 0.4% and
# 0.2 degrees). Fitted once, each point the mean of from_face.to_crop over 50 views (5 scales x 5
# turns) of two real portraits: `python -m tools.tracking_metrics --fit` prints this table (docs/faces.md).
MESH_TEMPLATE = {33: (0.3271, 0.4771), 133: (0.4377, 0.4797), 362: (0.5763, 0.4763), 263: (0.6857, 0.4681),
                 1: (0.5117, 0.6229), 61: (0.3917, 0.7073), 291: (0.6358, 0.6988)}
EYE_CORNERS = (33, 133, 362, 263)


@dataclass(frozen=True)
class Alignment:
    """Similarity transform between an image and an SxS FFHQ-style crop of one face.

    ``origin`` is the image point that maps to the crop's (0, 0); ``x_axis`` and ``y_axis`` are
    the image vectors along the crop's full width and height."""

    origin: np.ndarray
    x_axis: np.ndarray
    y_axis: np.ndarray
    size: int

    @classmethod
    def from_face(cls, face: Face, size: int) -> Alignment:
        """From the detector's keypoints (its mouth point is the mouth's centre)."""
        return cls.from_points(face.left_eye, face.right_eye, face.mouth, size)

    @classmethod
    def from_mesh(cls, points: np.ndarray, size: int) -> Alignment:
        """From the 468-point mesh (N x 2+ image pixels): the least-squares similarity from
        MESH_TEMPLATE's crop positions onto those mesh points; its side grown, as from_points' is,
        to FFHQ's minimum for the eye-to-mouth distance, which rules once a turned face's eyes
        foreshorten (a three-quarter view: 16% too small without it)."""
        points = np.asarray(points, np.float64)[:, :2]
        x_axis, origin = _similarity(np.array(list(MESH_TEMPLATE.values())), points[list(MESH_TEMPLATE)])
        eye_to_mouth = points[list(MOUTH_CORNERS)].mean(0) - points[list(EYE_CORNERS)].mean(0)
        side = max(float(np.hypot(*x_axis)), 2 * MOUTH_HALF_SIDE * float(np.hypot(*eye_to_mouth)))
        centre = origin + (x_axis + np.array([-x_axis[1], x_axis[0]])) / 2
        return cls.from_params(centre, side, float(np.arctan2(x_axis[1], x_axis[0])), size)

    @classmethod
    def from_points(cls, left_eye, right_eye, mouth, size: int) -> Alignment:
        """FFHQ's formula from the eye on the image's left, the one on its right and the mouth."""
        left, right = np.asarray(left_eye, np.float64), np.asarray(right_eye, np.float64)
        eye_avg, mouth = (left + right) / 2, np.asarray(mouth, np.float64)
        eye_to_eye, eye_to_mouth = right - left, mouth - eye_avg
        x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
        x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * EYE_HALF_SIDE, np.hypot(*eye_to_mouth) * MOUTH_HALF_SIDE)
        y = np.flipud(x) * [1, -1] * -1
        centre = eye_avg + eye_to_mouth * 0.1
        return cls(centre - x - y, 2 * x, 2 * y, size)

    @classmethod
    def from_params(cls, centre, side: float, angle: float, size: int) -> Alignment:
        """From the square's centre (image pixels), side (pixels) and angle (radians, of its x axis)."""
        x = np.array([np.cos(angle), np.sin(angle)]) * (side / 2)
        y = np.array([-x[1], x[0]])
        return cls(np.asarray(centre, np.float64) - x - y, 2 * x, 2 * y, size)

    @property
    def centre(self) -> np.ndarray:
        return self.origin + (self.x_axis + self.y_axis) / 2

    @property
    def side(self) -> float:
        return float(np.hypot(*self.x_axis))

    @property
    def angle(self) -> float:
        return float(np.arctan2(self.x_axis[1], self.x_axis[0]))

    def to_image(self, crop_xy: np.ndarray) -> np.ndarray:
        """Crop pixel coordinates (N x 2, pixel centres at +0.5) -> image coordinates."""
        uv = np.asarray(crop_xy, np.float64) / self.size
        return self.origin + uv[:, :1] * self.x_axis + uv[:, 1:2] * self.y_axis

    def to_crop(self, image_xy: np.ndarray) -> np.ndarray:
        """Image coordinates (N x 2) -> crop pixel coordinates."""
        basis = np.stack([self.x_axis, self.y_axis], axis=1)  # columns
        uv = np.linalg.solve(basis, (np.asarray(image_xy, np.float64) - self.origin).T).T
        return uv * self.size

    def image_bounds(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The crop's footprint in the image, as an integer box clipped to the image."""
        corners = self.to_image(np.array([[0, 0], [self.size, 0], [0, self.size], [self.size, self.size]]))
        x0, y0 = np.floor(corners.min(0)).astype(int)
        x1, y1 = np.ceil(corners.max(0)).astype(int)
        return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def _similarity(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares similarity target ~ s R source + t (Umeyama 1991, no reflection), as
    (s R's first column, t): for a unit-square template, the image's crop x axis and origin."""
    source_mean, target_mean = source.mean(0), target.mean(0)
    source, target = source - source_mean, target - target_mean
    norm = (source**2).sum()
    cos = (source * target).sum() / norm  # s cos(angle)
    sin = (source[:, 0] * target[:, 1] - source[:, 1] * target[:, 0]).sum() / norm  # s sin(angle)
    x_axis, y_axis = np.array([cos, sin]), np.array([-sin, cos])
    return x_axis, target_mean - source_mean[0] * x_axis - source_mean[1] * y_axis
