"""Follow faces through video: detect once, then the mesh on the region the previous frame predicts.

:class:`FaceTracker` runs the detector and the mesh for the tracker's decisions, which are one pure
step a frame (:mod:`faces.tracking_step`, the page's ``tracking_step.mjs`` in JavaScript, both
reading ``faces/tracking.json``): detect, mesh the new face three times, then each frame the mesh on
the square its own previous landmarks give, smoothed by a One Euro filter; detect again when a
track is lost, when there is none, or every ``detect_every`` frames.

A still photo is one frame of the same chain (:func:`still_faces`, :func:`align_still`); a face
the detector finds but the mesh rejects keeps the detector keypoints' crop, and says so.
:class:`PerFrameDetector`
is the baseline: a fresh detection per frame, as a photo is handled, no tracking, no smoothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from faces.alignment import Alignment
from faces.detection import Face, FaceDetector
from faces.mesh import FaceMesh
from faces.tracking_step import (
    DETECT_EVERY,
    MAX_FACES,
    PARAMS,
    STILL_MAX_FACES,
    Frame,
    Request,
    TrackedFace,
    TrackerState,
    run_step,
)


class FaceTracker:
    """Detect once, then follow each face frame to frame (mesh on the region predicted from the
    previous frame); detect again when a track's confidence drops, or every `detect_every` frames
    to pick up new faces; smooth each track's alignment (One Euro filter). The decisions are
    :func:`faces.tracking_step.step`'s; this class runs the detector and the mesh it asks for, in
    the frame that asks (``params``: the step's numbers, tracking.json's by default)."""

    def __init__(self, image_size: int, *, threads: int | None = 1, detect_every: int = DETECT_EVERY,
                 max_faces: int = MAX_FACES, smoothing: bool = True, params: dict = PARAMS):
        if detect_every < 1 or max_faces < 1:
            raise ValueError(f"detect_every and max_faces must be at least 1, got {detect_every} and {max_faces}")
        self.image_size, self.detect_every = image_size, detect_every
        self.max_faces, self.smoothing, self.params = max_faces, smoothing, params
        self.detector, self.mesh = FaceDetector(threads), FaceMesh(threads)
        self.reset()

    def reset(self) -> None:
        self.state = TrackerState(self.image_size, self.detect_every, self.max_faces, self.smoothing)
        self.rejected: list[Face] = []  # the last update's detections the mesh found no face in

    @property
    def tracks(self) -> list:
        return self.state.tracks

    def update(self, frame: np.ndarray, timestamp_s: float) -> list[TrackedFace]:
        """The faces in this frame (H x W x 3 uint8 RGB), oldest track first."""
        observed = Frame(frame.shape[1], frame.shape[0], timestamp_s)
        outcome = run_step(self.params, self.state, observed, lambda request: self._run(request, frame))
        self.state, self.rejected = outcome.state, outcome.rejected
        return outcome.faces

    def _run(self, request: Request, frame: np.ndarray):
        if request["run"] == "mesh":
            return self.mesh(frame, request["region"])
        if request["run"] == "detect":
            return self.detector(Image.fromarray(frame))
        raise ValueError(f"the tracker asked for {request['run']!r}, which only a detector run aside (the page's "
                         "worker) leads to; FaceTracker runs the detector in the frame")


class PerFrameDetector:
    """Same update()/reset() signature: fresh detection on every frame, no tracking, no smoothing.
    The baseline the live benchmark and the tests compare tracking against."""

    def __init__(self, image_size: int, *, threads: int | None = 1, max_faces: int = 4, **_unused):
        self.image_size, self.max_faces = image_size, max_faces
        self.detector = FaceDetector(threads)

    def reset(self) -> None:
        pass

    def update(self, frame: np.ndarray, timestamp_s: float) -> list[TrackedFace]:
        faces = self.detector(Image.fromarray(frame))[: self.max_faces]
        return [TrackedFace(index, Alignment.from_face(face, self.image_size), None, face.score)
                for index, face in enumerate(faces)]


@dataclass(frozen=True)
class StillFace:
    alignment: Alignment  # the model's crop of this face
    by: str  # "mesh", or "detector": the mesh found no face where the detector did, its keypoints' crop
    landmarks: np.ndarray | None = None  # the mesh's 468 x 3 points in image pixels (None: detector only)


def still_faces(image: np.ndarray | Image.Image, image_size: int,
                tracker: FaceTracker | None = None) -> list[StillFace]:
    """A still photo: one frame through the video's code (detect, mesh MESH_PASSES times, align from the mesh),
    unsmoothed; faces the mesh rejects follow, aligned from the detector's keypoints. ``tracker``:
    an unsmoothed FaceTracker to reuse across photos (reset here)."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    tracker = tracker or FaceTracker(image_size, threads=None, smoothing=False, max_faces=STILL_MAX_FACES)
    tracker.reset()
    meshed = [StillFace(face.alignment, "mesh", face.landmarks)
              for face in tracker.update(np.ascontiguousarray(image), 0.0)]
    return meshed + [StillFace(Alignment.from_face(face, image_size), "detector") for face in tracker.rejected]


def align_still(image: np.ndarray | Image.Image, image_size: int) -> list[Alignment]:
    """The crops of a still photo's faces (:func:`still_faces`)."""
    return [face.alignment for face in still_faces(image, image_size)]
