"""Align a face to the crop the model was trained on, and map between the two.

The FFHQ recipe (Karras et al. 2019, ``align_images.py``): a square oriented by the
eye-to-eye and eye-to-mouth vectors, centred a little below the eyes, with a side of
max(4 x eye distance, 3.6 x eye-to-mouth distance). :class:`Alignment` is the similarity
transform between that square and the model's SxS crop, in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faces.detection import Face
from faces.mesh import LEFT_EYE, MOUTH_CORNERS, RIGHT_EYE


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
        """From the 468-point mesh, as FFHQ takes its 68 dlib points: each eye the mean of its
        contour, the mouth the mean of its corners."""
        points = np.asarray(points)[:, :2]
        return cls.from_points(points[list(RIGHT_EYE)].mean(0), points[list(LEFT_EYE)].mean(0),
                               points[list(MOUTH_CORNERS)].mean(0), size)

    @classmethod
    def from_points(cls, left_eye, right_eye, mouth, size: int) -> Alignment:
        """FFHQ's formula from the eye on the image's left, the one on its right and the mouth."""
        left, right = np.asarray(left_eye, np.float64), np.asarray(right_eye, np.float64)
        eye_avg, mouth = (left + right) / 2, np.asarray(mouth, np.float64)
        eye_to_eye, eye_to_mouth = right - left, mouth - eye_avg
        x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
        x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
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
