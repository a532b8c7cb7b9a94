"""Follow faces through video: detect once, then the mesh on the region the previous frame predicts.

MediaPipe's face graph (``face_landmark_front_cpu.pbtxt``) as one chain: BlazeFace finds a face;
the face mesh runs on a square around it, then, frame after frame, on the square its own
previous landmarks give (:func:`faces.mesh.region_from_landmarks`); the detector runs again only
when a track's face flag drops, when there is no track, or every ``detect_every`` frames to pick
up new faces (matched to the tracks by box overlap). Each track's crop is the FFHQ alignment of
its mesh (:meth:`Alignment.from_mesh`), smoothed by a One Euro filter (Casiez, Roussel and Vogel,
"1 Euro Filter", CHI 2012) on its centre, size and angle: steady when still, quick when moving.

A still photo is one frame of the same chain (:func:`still_faces`, :func:`align_still`); a face
the detector finds but the mesh rejects keeps the detector keypoints' crop, and says so.
:class:`PerFrameDetector`
is the baseline: a fresh detection per frame, as a photo is handled, no tracking, no smoothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from faces.alignment import Alignment
from faces.detection import Face, FaceDetector, box_iou
from faces.mesh import MIN_PRESENCE, FaceMesh, Region, region_from_face, region_from_landmarks

# One Euro filter constants per alignment parameter: (min_cutoff Hz, beta). Speeds are taken in
# face sizes per second (centre), log-size per second and radians per second, so one face's
# constants fit every resolution. Tuned on the still and moving astronaut clips (docs/faces.md):
# min_cutoff for jitter, then beta for lag (the centre's 30: the moving clips' mean lag a quarter
# less than at 20, the still clips' jitter the same within 0.003 px).
SMOOTHING = {"centre": (0.5, 30.0), "size": (0.5, 20.0), "angle": (0.5, 20.0)}
# A new face is meshed 3 times: on the detection's square, then on the square of the mesh before.
# The second pass halves the landmark error (docs/faces.md); the third runs on the region the track
# then holds, so the first frame's crop is measured as the next frames' are (with two, on a still
# face the first crop was 1.4-1.9% smaller than the rest: a step the filter spread over ~10 frames).
MESH_PASSES = 3
# Hz, for the speed estimate: Casiez et al. use 1; 2 halves the lag when a still face starts moving.
DERIVATIVE_CUTOFF = 2.0
FALLBACK_DT = 1 / 30  # a frame whose timestamp does not advance counts as one at 30 frames/s
# The mesh's next region stays where it is until the face leaves it by this much (a fraction of
# the side, a log-size change, degrees): on a still face the mesh then sees the same crop each
# frame, and its small errors do not feed back into the next crop and wander (MediaPipe's
# RoiTrackingCalculator keeps the previous region in the same way).
REGION_HOLD = {"shift": 0.03, "scale": 0.05, "degrees": 3.0}
# A detection is a face already followed when its box overlaps the track's landmark box this much.
MATCH_IOU = 0.3
# Two tracks that end up on one face: the younger is dropped.
DUPLICATE_IOU = 0.5
# A photo: every face the detector finds (a group photo), not the few a live view follows.
STILL_MAX_FACES = 100


class OneEuroFilter:
    """Casiez et al.'s One Euro filter for a vector: a low-pass whose cutoff rises with speed
    (min_cutoff + beta x |speed| / speed_scale), so slow jitter is removed and fast motion passes."""

    def __init__(self, min_cutoff: float, beta: float, derivative_cutoff: float = DERIVATIVE_CUTOFF):
        self.min_cutoff, self.beta, self.derivative_cutoff = min_cutoff, beta, derivative_cutoff
        self.value: np.ndarray | None = None
        self.speed = 0.0
        self.time = 0.0

    @staticmethod
    def _alpha(dt: float, cutoff: float) -> float:
        return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))

    def __call__(self, value: np.ndarray, time: float, speed_scale: float = 1.0) -> np.ndarray:
        value = np.asarray(value, np.float64)
        if self.value is None:
            self.value, self.time = value, time
            return value
        dt = time - self.time if time > self.time else FALLBACK_DT
        speed = float(np.linalg.norm(value - self.value)) / dt / speed_scale
        self.speed += self._alpha(dt, self.derivative_cutoff) * (speed - self.speed)
        alpha = self._alpha(dt, self.min_cutoff + self.beta * self.speed)
        self.value, self.time = self.value + alpha * (value - self.value), time
        return self.value


class AlignmentFilter:
    """One Euro filters on an alignment's centre, log-size and angle."""

    def __init__(self, constants: dict[str, tuple[float, float]] = SMOOTHING):
        self.centre, self.size, self.angle = (OneEuroFilter(*constants[key]) for key in ("centre", "size", "angle"))

    def __call__(self, alignment: Alignment, time: float) -> Alignment:
        side = alignment.side
        centre = self.centre(alignment.centre, time, speed_scale=side)
        log_side = self.size(np.log(side), time)
        angle = alignment.angle
        if self.angle.value is not None:  # unwrap next to the previous angle
            angle = float(self.angle.value) + (angle - float(self.angle.value) + math.pi) % (2 * math.pi) - math.pi
        angle = self.angle(angle, time)
        return Alignment.from_params(centre, float(np.exp(log_side)), float(angle), alignment.size)


@dataclass(frozen=True)
class TrackedFace:
    track_id: int  # stable while the face is followed
    alignment: Alignment  # the model's SxS crop of this face, smoothed
    landmarks: np.ndarray | None  # 468 x 2 mesh points in frame pixels, as measured (None: detector only)
    confidence: float  # the mesh's face flag (or detection score)


class _Track:
    """One followed face: its last mesh, the region the next frame's mesh runs on, its filter."""

    def __init__(self, track_id: int, image_size: int, smoothing: bool):
        self.track_id, self.image_size = track_id, image_size
        self.filter = AlignmentFilter() if smoothing else None
        self.face: TrackedFace | None = None
        self.region: Region | None = None

    def follow(self, points: np.ndarray, presence: float, time: float) -> None:
        alignment = Alignment.from_mesh(points, self.image_size)
        if self.filter is not None:
            alignment = self.filter(alignment, time)
        self.face = TrackedFace(self.track_id, alignment, points[:, :2], presence)
        region = region_from_landmarks(points)
        if self.region is None or _moved(self.region, region):
            self.region = region

    def box(self) -> np.ndarray:
        points = self.face.landmarks
        return np.concatenate([points.min(0), points.max(0)])


def _moved(old: Region, new: Region) -> bool:
    """Whether the face has left the old region by more than REGION_HOLD allows."""
    shift = np.hypot(new.centre[0] - old.centre[0], new.centre[1] - old.centre[1]) / old.side
    turn = abs((new.angle - old.angle + math.pi) % (2 * math.pi) - math.pi)
    return (shift > REGION_HOLD["shift"] or abs(math.log(new.side / old.side)) > REGION_HOLD["scale"]
            or turn > math.radians(REGION_HOLD["degrees"]))


def _inside(region: Region, width: int, height: int) -> bool:
    x, y = region.centre
    return 0 <= x < width and 0 <= y < height


class FaceTracker:
    """Detect once, then follow each face frame to frame (mesh on the region predicted from the
    previous frame); detect again when a track's confidence drops, or every `detect_every` frames
    to pick up new faces; smooth each track's alignment (One Euro filter)."""

    def __init__(self, image_size: int, *, threads: int | None = 1, detect_every: int = 30,
                 max_faces: int = 4, smoothing: bool = True):
        if detect_every < 1 or max_faces < 1:
            raise ValueError(f"detect_every and max_faces must be at least 1, got {detect_every} and {max_faces}")
        self.image_size, self.detect_every = image_size, detect_every
        self.max_faces, self.smoothing = max_faces, smoothing
        self.detector, self.mesh = FaceDetector(threads), FaceMesh(threads)
        self.reset()

    def reset(self) -> None:
        self.tracks: list[_Track] = []
        self.frame_index = -1
        self.next_id = 0
        self.rejected: list[Face] = []  # the last update's detections the mesh found no face in

    def update(self, frame: np.ndarray, timestamp_s: float) -> list[TrackedFace]:
        """The faces in this frame (H x W x 3 uint8 RGB), oldest track first."""
        self.frame_index += 1
        self.rejected = []
        lost = [track for track in self.tracks if not self._follow(track, frame, timestamp_s)]
        self.tracks = self._without_duplicates([track for track in self.tracks if track not in lost])
        due = self.frame_index % self.detect_every == 0 and len(self.tracks) < self.max_faces
        if lost or not self.tracks or due:
            self._detect(frame, timestamp_s, lost)
        return [track.face for track in self.tracks]

    def _follow(self, track: _Track, frame: np.ndarray, time: float) -> bool:
        """Mesh the track's predicted region; False when the face is gone from it."""
        if not _inside(track.region, frame.shape[1], frame.shape[0]):
            return False
        points, presence = self.mesh(frame, track.region)
        if presence < MIN_PRESENCE:
            return False
        track.follow(points, presence, time)
        return True

    def _without_duplicates(self, tracks: list[_Track]) -> list[_Track]:
        kept: list[_Track] = []
        for track in tracks:  # oldest first, so the younger of two on one face goes
            if not kept or box_iou(track.box(), np.array([k.box() for k in kept])).max() <= DUPLICATE_IOU:
                kept.append(track)
        return kept

    def _detect(self, frame: np.ndarray, time: float, lost: list[_Track]) -> None:
        """Start tracks on detections no track covers; a lost track's face found again keeps its id."""
        for face in self.detector(Image.fromarray(frame)):
            if len(self.tracks) >= self.max_faces:
                return
            box = np.array(face.box)
            if self.tracks and box_iou(box, np.array([t.box() for t in self.tracks])).max() > MATCH_IOU:
                continue
            points, presence, region = self._first_mesh(frame, face)
            if presence < MIN_PRESENCE:
                self.rejected.append(face)
                continue
            track = self._track_for(box, lost)
            track.region = region
            track.follow(points, presence, time)
            self.tracks.append(track)

    def _first_mesh(self, frame: np.ndarray, face: Face) -> tuple[np.ndarray, float, Region]:
        """A new face's mesh: on the detection's square, then MESH_PASSES - 1 times on the square of
        the mesh before. (points, presence, the region of the last pass)."""
        region = region_from_face(face)
        points, presence = self.mesh(frame, region)
        for _ in range(MESH_PASSES - 1):
            if presence < MIN_PRESENCE:
                break
            region = region_from_landmarks(points)
            points, presence = self.mesh(frame, region)
        return points, presence, region

    def _track_for(self, box: np.ndarray, lost: list[_Track]) -> _Track:
        """The lost track this detection finds again (same id, fresh filter), or a new one."""
        for old in lost:
            if box_iou(box, old.box()[None])[0] > MATCH_IOU:
                lost.remove(old)
                return _Track(old.track_id, self.image_size, self.smoothing)
        self.next_id += 1
        return _Track(self.next_id - 1, self.image_size, self.smoothing)


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


def still_faces(image: np.ndarray | Image.Image, image_size: int,
                tracker: FaceTracker | None = None) -> list[StillFace]:
    """A still photo: one frame through the video's code (detect, mesh MESH_PASSES times, align from the mesh),
    unsmoothed; faces the mesh rejects follow, aligned from the detector's keypoints. ``tracker``:
    an unsmoothed FaceTracker to reuse across photos (reset here)."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    tracker = tracker or FaceTracker(image_size, threads=None, smoothing=False, max_faces=STILL_MAX_FACES)
    tracker.reset()
    meshed = [StillFace(face.alignment, "mesh") for face in tracker.update(np.ascontiguousarray(image), 0.0)]
    return meshed + [StillFace(Alignment.from_face(face, image_size), "detector") for face in tracker.rejected]


def align_still(image: np.ndarray | Image.Image, image_size: int) -> list[Alignment]:
    """The crops of a still photo's faces (:func:`still_faces`)."""
    return [face.alignment for face in still_faces(image, image_size)]
