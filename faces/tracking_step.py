"""The face tracker's decisions, one pure step a frame, with the detector and the mesh outside it.

MediaPipe's face graph (``face_landmark_front_cpu.pbtxt``) as one chain: BlazeFace finds a face;
the face mesh runs on a square around it, then, frame after frame, on the square its own
previous landmarks give (:func:`faces.mesh.region_from_landmarks`); the detector runs again only
when a track's face flag drops, when there is no track, or every ``detect_every`` frames to pick
up new faces (matched to the tracks by box overlap). Each track's crop is the FFHQ alignment of
its mesh (:meth:`Alignment.from_mesh`), smoothed by a One Euro filter (Casiez, Roussel and Vogel,
"1 Euro Filter", CHI 2012) on its centre, size and angle: steady when still, quick when moving.

:func:`step` is ``(params, state, frame) -> (state, requests)``: a generator that yields what
to run (``{"run": "mesh", "region"}``, ``{"run": "detect"}``, ``{"run": "detect_around",
"boxes", "reach"}``), is sent each answer (the mesh's ``(points, presence)``, the detector's
faces), and returns an :class:`Outcome` (the new state, the faces, and the search to start, if
any). It copies the state it is given and calls nothing expensive; :func:`run_step` drives it.
``web/static/tracking_step.mjs`` is the same step in JavaScript, both read their numbers from
``faces/tracking.json``, and the traces under ``tests/traces/tracking/`` are replayed by both.

Where the detector runs aside (``frame.aside``: the page's Web Worker) its faces come in a
frame or more late, as ``frame.found``; four decisions only apply then: a mesh that misses
looks once more on a wider square (``stale_widen``), a face lost even there is looked for in
the frame around where it was (``detect_around``, one detector pass a face: waiting for the
search left a loaded machine's frames bare for seconds), a search's face is matched to the
tracks as they were on the search's own frame (``state.seen``), and faces found with none
followed are looked for around where they were. With the detector in the frame (``apply``), the
faces are the frame's own: the widening and the look around would only repeat what the detector
does in the same frame, and the search's frame is this frame, so ``seen`` is the tracks' boxes.
In both, a followed face's mesh whose landmarks sit far off its crop runs once more on their
square (``catch_up``): the face moved far since the frame before.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faces.alignment import Alignment
from faces.detection import Face, box_iou
from faces.mesh import MIN_PRESENCE, Region, region_from_face, region_from_landmarks
from faces.shared_json import read_shared_json

PARAMS_FILE = Path(__file__).with_name("tracking.json")
PARAM_KEYS = ("smoothing", "derivative_cutoff", "fallback_fps", "mesh_passes", "region_hold", "match_iou",
              "duplicate_iou", "detect_every", "max_faces", "still_max_faces", "stale_widen", "around_reach",
              "catch_up")


def load_params(path: Path = PARAMS_FILE) -> dict:
    """The tracker's numbers (tracking.json, also the page's), checked for every key the step reads."""
    return read_shared_json(path, PARAM_KEYS, "the face tracker's parameters")


PARAMS = load_params()
SMOOTHING = {key: tuple(value) for key, value in PARAMS["smoothing"].items()}
DERIVATIVE_CUTOFF = PARAMS["derivative_cutoff"]
FALLBACK_DT = 1 / PARAMS["fallback_fps"]
MESH_PASSES = PARAMS["mesh_passes"]
REGION_HOLD = PARAMS["region_hold"]
MATCH_IOU, DUPLICATE_IOU = PARAMS["match_iou"], PARAMS["duplicate_iou"]
DETECT_EVERY, MAX_FACES, STILL_MAX_FACES = PARAMS["detect_every"], PARAMS["max_faces"], PARAMS["still_max_faces"]


class OneEuroFilter:
    """Casiez et al.'s One Euro filter for a vector: a low-pass whose cutoff rises with speed
    (min_cutoff + beta x |speed| / speed_scale), so slow jitter is removed and fast motion passes."""

    def __init__(self, min_cutoff: float, beta: float, derivative_cutoff: float = DERIVATIVE_CUTOFF,
                 fallback_dt: float = FALLBACK_DT):
        self.min_cutoff, self.beta, self.derivative_cutoff = min_cutoff, beta, derivative_cutoff
        self.fallback_dt = fallback_dt
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
        dt = time - self.time if time > self.time else self.fallback_dt
        speed = float(np.linalg.norm(value - self.value)) / dt / speed_scale
        self.speed += self._alpha(dt, self.derivative_cutoff) * (speed - self.speed)
        alpha = self._alpha(dt, self.min_cutoff + self.beta * self.speed)
        self.value, self.time = self.value + alpha * (value - self.value), time
        return self.value


class AlignmentFilter:
    """One Euro filters on an alignment's centre, log-size and angle."""

    def __init__(self, params: dict = PARAMS):
        self.centre, self.size, self.angle = (
            OneEuroFilter(*params["smoothing"][key], params["derivative_cutoff"], 1 / params["fallback_fps"])
            for key in ("centre", "size", "angle"))

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


@dataclass(eq=False)  # tracks are told apart by identity, as the page's are
class Track:
    """One followed face: its last mesh, the region the next frame's mesh runs on, its filter."""

    track_id: int
    filter: AlignmentFilter | None
    face: TrackedFace | None = None
    region: Region | None = None

    def box(self) -> np.ndarray:
        return landmark_box(self.face.landmarks)


@dataclass
class TrackerState:
    """Everything the step carries from frame to frame. ``lost``: tracks lost since the last detection
    (found again, they keep their ids); ``searches``: searches asked for; ``searching``: one is running;
    ``seen``: the tracks' boxes on its frame."""

    image_size: int
    detect_every: int
    max_faces: int
    smoothing: bool = True
    tracks: list[Track] = field(default_factory=list)
    frame_index: int = -1
    next_id: int = 0
    lost: list[Track] = field(default_factory=list)
    searches: int = 0
    searching: bool = False
    seen: dict[int, np.ndarray] | None = None


@dataclass(frozen=True)
class Frame:
    """This frame's observations besides the answers: its size, time (s), the faces of the search that
    answered since the last frame (None: none did), and whether the detector runs aside (its faces come as
    ``found``; the page's worker, until it fails) or in the frame."""

    width: int
    height: int
    time: float
    found: list[Face] | None = None
    aside: bool = False


@dataclass
class Outcome:
    """What a step gives: the new state, the faces (oldest track first), the detections the mesh found no
    face in, the search to start ({"tiles": bool} or None), and whether the frame ran the whole frame's
    detector itself (``detected``), ran it only around faces lost or found stale (``around``: one pass
    a face), or took in a search's faces (``merged``), for the page's timing line."""

    state: TrackerState
    faces: list[TrackedFace]
    rejected: list[Face]
    search: dict | None
    detected: bool
    around: bool
    merged: bool


Request = dict
Steps = Generator[Request, object, Outcome]


def landmark_box(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points[:, :2].min(0), points[:, :2].max(0)])


def max_iou(box: np.ndarray, boxes: list[np.ndarray]) -> float:
    return float(box_iou(np.asarray(box, np.float64), np.array(boxes)).max()) if boxes else 0.0


def _shift(old: Region, new: Region) -> float:
    """How far the new region's centre is from the old one's, in the old one's sides."""
    return float(np.hypot(new.centre[0] - old.centre[0], new.centre[1] - old.centre[1]) / old.side)


def moved(params: dict, old: Region, new: Region) -> bool:
    """Whether the face has left the old region by more than region_hold allows."""
    hold = params["region_hold"]
    shift = _shift(old, new)
    turn = abs((new.angle - old.angle + math.pi) % (2 * math.pi) - math.pi)
    return (shift > hold["shift"] or abs(math.log(new.side / old.side)) > hold["scale"]
            or turn > math.radians(hold["degrees"]))


def step(params: dict, state: TrackerState, frame: Frame) -> Steps:
    """One frame's decisions (see the module's docstring for the protocol)."""
    state = copy.deepcopy(state)
    state.frame_index += 1
    rejected: list[Face] = []
    lost = []
    for track in state.tracks:
        if not (yield from _follow(params, state, track, frame)):
            lost.append(track)
    state.tracks = _without_duplicates(params, [track for track in state.tracks if track not in lost])
    state.lost += lost
    missing = len(lost)
    looked = [track for track in lost if _in_frame(track.region, frame)] if frame.aside else []
    around = bool(looked)
    if around:
        # Lost even on the wider square (a loaded machine's frames far apart), and the search would answer
        # frames later, the frames bare till then: this frame looks itself around where each face was. A face
        # found there is the lost track's whose square holds it (its id kept); the others stay lost.
        faces = yield {"run": "detect_around", "boxes": [list(track.box()) for track in looked],
                       "reach": params["around_reach"]}
        state.lost = yield from _detect(params, state, faces, frame.time, rejected, reach=params["around_reach"])
        missing = sum(track in state.lost for track in lost)
    due = state.frame_index % state.detect_every == 0 and len(state.tracks) < state.max_faces
    detected = bool(missing or not state.tracks or due) and not frame.aside
    if detected:
        faces = yield {"run": "detect"}
        yield from _detect(params, state, faces, frame.time, rejected)
    merged, search = False, None
    if frame.aside:
        stale, merged, search = yield from _search_aside(params, state, frame, bool(missing or due), bool(missing),
                                                         rejected)
        around = around or stale
    return Outcome(state, [track.face for track in state.tracks], rejected, search, detected, around, merged)


def _follow(params: dict, state: TrackerState, track: Track, frame: Frame) -> Generator[Request, object, bool]:
    """Mesh the track's predicted region; False when the face is gone from it."""
    if not _in_frame(track.region, frame):
        return False
    points, presence = yield {"run": "mesh", "region": track.region}
    if presence < MIN_PRESENCE and frame.aside:
        # Lost between two frames (a fast face, a frame skipped), and the detector's answer would come frames
        # later: the mesh looks once more now, on a wider square around where the face was.
        widened = Region(track.region.centre, params["stale_widen"] * track.region.side, track.region.angle)
        points, presence = yield {"run": "mesh", "region": widened}
    if presence < MIN_PRESENCE:
        return False
    points = np.asarray(points, np.float64)
    caught = region_from_landmarks(points)
    if _shift(track.region, caught) > params["catch_up"]:
        # The face moved far since the frame before (a loaded machine's frames far apart): the mesh on a crop
        # it half left puts its landmarks between the two. Once more, on the square they give.
        again, presence_again = yield {"run": "mesh", "region": caught}
        if presence_again >= MIN_PRESENCE:
            points, presence, track.region = np.asarray(again, np.float64), presence_again, caught
    _take_mesh(params, state, track, points, presence, frame.time)
    return True


def _in_frame(region: Region, frame: Frame) -> bool:
    x, y = region.centre
    return 0 <= x < frame.width and 0 <= y < frame.height


def _take_mesh(params: dict, state: TrackerState, track: Track, points: np.ndarray, presence: float,
               time: float) -> None:
    """The track's face from this mesh (smoothed), and its next region unless the face is still inside it."""
    alignment = Alignment.from_mesh(points, state.image_size)
    if track.filter is not None:
        alignment = track.filter(alignment, time)
    track.face = TrackedFace(track.track_id, alignment, points[:, :2], float(presence))
    region = region_from_landmarks(points)
    if track.region is None or moved(params, track.region, region):
        track.region = region


def _without_duplicates(params: dict, tracks: list[Track]) -> list[Track]:
    kept: list[Track] = []
    for track in tracks:  # oldest first, so the younger of two on one face goes
        if max_iou(track.box(), [k.box() for k in kept]) <= params["duplicate_iou"]:
            kept.append(track)
    return kept


def _detect(params: dict, state: TrackerState, faces: list[Face], time: float, rejected: list[Face],
            stale: bool = False, seen: dict[int, np.ndarray] | None = None,
            reach: float | None = None) -> Generator[Request, object, list[Track]]:
    """New tracks from detected faces no track has; a lost track's face found again keeps its id. ``stale``:
    the faces are a search's, a few frames old, so a face a track has moved on to is known by its mesh, not
    by the old box; ``seen``: the tracks' boxes on the frame the faces were found on (by track id); ``reach``:
    the faces are a look around lost tracks' boxes (see :func:`_track_for`). Returns the lost tracks no face
    found again (``state.lost`` is emptied)."""
    lost, state.lost = state.lost, []
    for face in faces:
        if len(state.tracks) >= state.max_faces:
            return lost
        box = np.asarray(face.box, np.float64)
        if max_iou(box, [track.box() for track in state.tracks]) > params["match_iou"]:
            continue
        # A search's face is matched to the tracks as they were on its own frame: a followed face has moved
        # off its old box since, and a new face's mesh passes would only find the track's.
        if seen and max_iou(box, [seen[t.track_id] for t in state.tracks if t.track_id in seen]) > params["match_iou"]:
            continue
        points, presence, region = yield from _first_mesh(params, face, stale)
        if presence < MIN_PRESENCE:
            rejected.append(face)
            continue
        if stale and max_iou(landmark_box(points), [t.box() for t in state.tracks]) > params["duplicate_iou"]:
            continue
        track = _track_for(params, state, box, lost, reach)
        track.region = region
        _take_mesh(params, state, track, points, presence, time)
        state.tracks.append(track)
    return lost


def _first_mesh(params: dict, face: Face, stale: bool) -> Generator[Request, object, tuple]:
    """A new face's mesh: on the detection's square (a wider one where a stale detection's misses), then
    mesh_passes - 1 times on the square of the mesh before. (points, presence, the region of the last pass)."""
    region = region_from_face(face)
    points, presence = yield {"run": "mesh", "region": region}
    if stale and presence < MIN_PRESENCE:
        region = Region(region.centre, params["stale_widen"] * region.side, region.angle)
        points, presence = yield {"run": "mesh", "region": region}
    for _ in range(params["mesh_passes"] - 1):
        if presence < MIN_PRESENCE:
            break
        region = region_from_landmarks(np.asarray(points, np.float64))
        points, presence = yield {"run": "mesh", "region": region}
    return np.asarray(points, np.float64), presence, region


def _track_for(params: dict, state: TrackerState, box: np.ndarray, lost: list[Track],
               reach: float | None = None) -> Track:
    """The lost track this detection finds again (same id, fresh filter), or a new one: the first whose box
    the detection's overlaps by more than match_iou, or, for a look around lost tracks (``reach``), the nearest
    whose looked-at square (``reach`` times its box's side) holds the detection's centre."""
    if reach is None:
        old = next((old for old in lost if max_iou(box, [old.box()]) > params["match_iou"]), None)
    else:
        old = _nearest_within(box, lost, reach)
    if old is not None:
        lost.remove(old)
        track_id = old.track_id
    else:
        track_id, state.next_id = state.next_id, state.next_id + 1
    return Track(track_id, AlignmentFilter(params) if state.smoothing else None)


def _nearest_within(box: np.ndarray, tracks: list[Track], reach: float) -> Track | None:
    """The track whose box centre is nearest the box's centre, among those whose square of ``reach`` times
    their box's side about that centre holds it (detect_around's square)."""
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    best, distance = None, math.inf
    for track in tracks:
        x0, y0, x1, y1 = (float(v) for v in track.box())
        half, dx, dy = reach * max(x1 - x0, y1 - y0) / 2, x - (x0 + x1) / 2, y - (y0 + y1) / 2
        apart = math.hypot(dx, dy)
        if abs(dx) < half and abs(dy) < half and apart < distance:
            best, distance = track, apart
    return best


def _search_aside(params: dict, state: TrackerState, frame: Frame, due: bool, lost_now: bool,
                  rejected: list[Face]) -> Generator[Request, object, tuple]:
    """Takes in the faces of the search that has answered, then asks for the next one if wanted (one at a
    time): the frame never waits for the detector. A search while every face is followed (the periodic one,
    for new faces) is the whole frame's pass alone (``tiles`` False): the tiles' three more passes, on a core
    the frame loop shares, doubled the model's time for the ~4 frames it ran; faces that small (a tenth of
    the frame) are looked for when none is followed or a track is lost. (around, merged, search)."""
    around, found = False, frame.found
    if found is not None:
        seen, state.seen, state.searching = state.seen, None, False
        yield from _detect(params, state, found, frame.time, rejected, stale=True, seen=seen)
        if found and not state.tracks:
            # Faces found, none followed: they moved on while the search ran, and an old box would miss them
            # again. This frame looks itself, around where they were; what it misses, the next search finds.
            around = True
            faces = yield {"run": "detect_around", "boxes": [list(face.box) for face in found],
                           "reach": params["around_reach"]}
            yield from _detect(params, state, faces, frame.time, rejected)
    search = None
    if (due or not state.tracks) and not state.searching:
        state.searches += 1
        search = {"tiles": bool(lost_now or state.lost or not state.tracks)}
        state.searching = True
        state.seen = {track.track_id: track.box() for track in state.tracks}
    return around, found is not None, search


def run_step(params: dict, state: TrackerState, frame: Frame, answer: Callable[[Request], object]) -> Outcome:
    """One step, each request answered by ``answer`` (the detector's or the mesh's call) as it comes."""
    steps = step(params, state, frame)
    try:
        request = next(steps)
        while True:
            request = steps.send(answer(request))
    except StopIteration as done:
        return done.value
