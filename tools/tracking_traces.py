"""Recorded runs of the face tracker's step (faces.tracking_step): observations in, decisions out.

Each trace is one JSON file: the tracker's settings, and per frame its size, time, the faces of a
search that answered (or null), every request the step made with the answer it was given (the
mesh's points and face flag, the detector's faces), and what the step gave (the faces' crops and
ids, the rejected detections, the search asked for, and the frame's detected/around/merged flags).
pytest (tests/faces/test_tracking_traces.py) and ``node --test`` (web/test/tracking.test.mjs) replay
every trace through their language's step and fail at the first request or outcome that differs.

Usage:
    python -m tools.tracking_traces                 # re-record every trace into tests/traces/tracking/
    python -m tools.tracking_traces --out DIR

Recorded from real runs (the detector and the mesh on the astronaut clips of tests/faces/test_tracking.py)
and from hand-made worlds (scripted faces a mesh answer is placed on: a lost face, a returned
one, two faces and a duplicate detection, a stale search), whose answers are fixed numbers so the
edge cases hold whatever the networks do. The answers are rounded as they are stored, and the step
is fed the rounded ones, so a replay sees exactly what the recording saw.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faces.detection import Face
from faces.mesh import Region
from faces.tracking_step import PARAMS, Frame, Outcome, TrackerState, run_step

TRACES = Path(__file__).resolve().parents[1] / "tests" / "traces" / "tracking"
IMAGE_SIZE = 256  # the crops' pixel size: the traces compare their centre, side and angle, which do not depend on it
TOLERANCE = 1e-6  # pixels, radians: far below any decision's effect, far above the two languages' rounding
POINT_DECIMALS = 2  # a mesh point to 0.01 px


class TraceMismatch(AssertionError):
    """A replayed step asked for or gave something else than the trace records."""


def face_json(face: Face) -> dict:
    return {"box": [round(v, 4) for v in face.box], "score": round(float(face.score), 4),
            **{key: [round(v, 4) for v in getattr(face, key)] for key in ("left_eye", "right_eye", "nose", "mouth")}}


def face_from_json(data: dict) -> Face:
    return Face(tuple(data["box"]), data["score"], *(tuple(data[key]) for key in ("left_eye", "right_eye", "nose",
                                                                                    "mouth")))


def request_json(request: dict) -> dict:
    if request["run"] == "mesh":
        region = request["region"]
        return {"run": "mesh", "region": {"centre": [float(v) for v in region.centre], "side": float(region.side),
                                          "angle": float(region.angle)}}
    return {key: value for key, value in request.items()}


def answer_json(request: dict, answer) -> dict | list:
    if request["run"] == "mesh":
        points, presence = answer
        return {"points": np.round(np.asarray(points)[:, :2], POINT_DECIMALS).tolist(), "presence": round(presence, 6)}
    return [face_json(face) for face in answer]


def answer_from_json(request: dict, data):
    if request["run"] == "mesh":
        return np.asarray(data["points"], np.float64), data["presence"]
    return [face_from_json(face) for face in data]


def outcome_json(outcome: Outcome) -> dict:
    faces = [{"track_id": face.track_id, "centre": [float(v) for v in face.alignment.centre],
              "side": face.alignment.side, "angle": face.alignment.angle, "confidence": face.confidence}
             for face in outcome.faces]
    return {"faces": faces, "rejected": [list(face.box) for face in outcome.rejected], "search": outcome.search,
            "detected": outcome.detected, "around": outcome.around, "merged": outcome.merged}


def new_state(settings: dict) -> TrackerState:
    return TrackerState(IMAGE_SIZE, settings["detect_every"], settings["max_faces"], settings["smoothing"])


def frame_of(data: dict, settings: dict) -> Frame:
    found = None if data["found"] is None else [face_from_json(face) for face in data["found"]]
    return Frame(data["width"], data["height"], data["time"], found, settings["aside"])


def differences(got, want, where: str = "") -> list[str]:
    """Where two JSON values differ (numbers by more than TOLERANCE)."""
    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            return [f"{where}: keys {sorted(got)} against {sorted(want)}"]
        return [line for key in want for line in differences(got[key], want[key], f"{where}.{key}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{where}: {len(got)} items against {len(want)}"]
        return [line for k, (item, wanted) in enumerate(zip(got, want, strict=True))
                for line in differences(item, wanted, f"{where}[{k}]")]
    if _is_number(want) and _is_number(got):
        return [] if math.isclose(got, want, rel_tol=0, abs_tol=TOLERANCE) else [f"{where}: {got!r} against {want!r}"]
    return [] if got == want else [f"{where}: {got!r} against {want!r}"]


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def replay(trace: dict, params: dict = PARAMS) -> None:
    """Every frame of the trace through the step; TraceMismatch at the first request or outcome that differs."""
    state = new_state(trace["settings"])
    for index, frame in enumerate(trace["frames"]):
        calls = iter(enumerate(frame["calls"]))

        def answer(request: dict, index=index, calls=calls, frame=frame):
            number, call = next(calls, (len(frame["calls"]), None))
            if call is None:
                raise TraceMismatch(f"frame {index}: the step asked for {request_json(request)} after the trace's "
                                    f"{len(frame['calls'])} calls")
            wrong = differences(request_json(request), call["request"], "request")
            if wrong:
                raise TraceMismatch(f"frame {index}, call {number}: {'; '.join(wrong[:3])}")
            return answer_from_json(request, call["answer"])

        outcome = run_step(params, state, frame_of(frame, trace["settings"]), answer)
        left = sum(1 for _ in calls)
        wrong = [f"the step made {left} calls fewer than the trace"] if left else []
        wrong += differences(outcome_json(outcome), frame["out"], "out")
        if wrong:
            raise TraceMismatch(f"frame {index}: {'; '.join(wrong[:3])}")
        state = outcome.state


Answer = Callable[[int, dict], object]  # (frame index, request) -> the detector's or the mesh's answer


def record(about: str, settings: dict, sizes: list[tuple[int, int]], answer: Answer,
           search: Callable[[int], list[Face]] | None = None, times: list[float] | None = None) -> dict:
    """A trace of the step on frames of these (width, height) at ``times`` (default: 30 frames/s), each request
    answered by ``answer``; ``search(k)``: a search's faces on frame k, given to frame k + 1 (a worker one
    frame late)."""
    state, frames, found = new_state(settings), [], None
    for index, (width, height) in enumerate(sizes):
        calls = []

        def answered(request: dict, index=index, calls=calls):
            stored = answer_json(request, answer(index, request))
            calls.append({"request": request_json(request), "answer": stored})
            return answer_from_json(request, stored)

        found_json = None if found is None else [face_json(face) for face in found]
        time = round(index / 30, 6) if times is None else times[index]
        frame = {"width": width, "height": height, "time": time, "found": found_json}
        outcome = run_step(PARAMS, state, frame_of(frame, settings), answered)
        state = outcome.state
        frames.append({**frame, "calls": calls, "out": outcome_json(outcome)})
        found = search(index) if outcome.search is not None else None
    return {"about": about, "settings": settings, "frames": frames}


WORLD_SIZE = (640, 360)


@dataclass
class World:
    """Hand-made faces: per frame, the faces there as (centre x, centre y, size: their landmark box's side).
    The mesh finds a face whose centre lies within 0.2 of the square's side from the square's centre and
    whose size is 1/3.5 to the whole of the side; the detector finds every face centred in the 640 x 360
    frame, its box 0.8 of the size."""

    faces: list[list[tuple[float, float, float]]]
    canonical: np.ndarray  # 468 x 2: a real mesh moved to its box's centre and scaled to a box of side 1

    def mesh(self, index: int, region: Region) -> tuple[np.ndarray, float]:
        for x, y, size in self.faces[index]:
            near = math.hypot(x - region.centre[0], y - region.centre[1]) < 0.2 * region.side
            if near and size <= region.side <= 3.5 * size:
                wobble = 0.2 * np.sin(np.arange(936).reshape(468, 2) + index)  # sensor noise, of a kind
                return self.canonical * size + (x, y) + wobble, 0.97
        return self.canonical * region.side / 1.5 + region.centre, 0.02

    def detect(self, index: int) -> list[Face]:
        faces = []
        for x, y, size in self.faces[index]:
            if not (0 <= x < WORLD_SIZE[0] and 0 <= y < WORLD_SIZE[1]):
                continue
            points = self.canonical * size + (x, y)
            eyes_nose_mouth = (tuple(map(float, points[list(indices)].mean(0))) for indices in ((33, 133), (362, 263),
                                                                                             (1,), (13, 14)))
            faces.append(Face((x - 0.4 * size, y - 0.4 * size, x + 0.4 * size, y + 0.4 * size), 0.9, *eyes_nose_mouth))
        return faces

    def answer(self, index: int, request: dict):
        if request["run"] == "mesh":
            return self.mesh(index, request["region"])
        if request["run"] == "detect":
            return self.detect(index)
        # detect_around: the faces within reach x box side of each old box's centre
        reach = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, request["reach"] * max(b[2] - b[0], b[3] - b[1]) / 2)
                 for b in request["boxes"]]
        return [face for face in self.detect(index)
                if any(abs((face.box[0] + face.box[2]) / 2 - x) < r and abs((face.box[1] + face.box[3]) / 2 - y) < r
                       for x, y, r in reach)]


def canonical_mesh(points: np.ndarray) -> np.ndarray:
    low, high = points[:, :2].min(0), points[:, :2].max(0)
    return (points[:, :2] - (low + high) / 2) / (high - low).max()


def real_traces() -> dict[str, dict]:
    """The detector and the mesh on the astronaut clips (tests/faces/test_tracking.py's), in the frame (apply's way)."""
    from PIL import Image
    from skimage import data

    from faces.detection import FaceDetector
    from faces.mesh import FaceMesh
    from tools.tracking_metrics import paste_along_paths

    head = data.astronaut()[20:240, 120:340]
    detector, mesh = FaceDetector(1), FaceMesh(1)
    time = np.arange(12) / 30
    clips = {
        "moving": ("A face moving up to 240 px/s (real detector and mesh).", {},
                   [np.stack([150 + 240 * time, 60 + 40 * np.sin(np.pi * time)], axis=1)], 3),
        "leave_and_return": ("A face that leaves the frame for 3 frames and comes back elsewhere (real).", {},
                             [np.array([[210, 70]] * 4 + [[700, 70]] * 3 + [[330, 90]] * 5)], 5),
        "two_faces": ("Two faces, the detector every 5 frames (real).", {"detect_every": 5},
                      [np.stack([20 + 30 * time, 40 + 0 * time], 1), np.stack([400 - 30 * time, 100 + 0 * time], 1)],
                      6),
    }
    traces = {}
    for name, (about, settings, paths, seed) in clips.items():
        frames = paste_along_paths(head, paths, noise_std=3, seed=seed)

        def answer(index: int, request: dict, frames=frames):
            if request["run"] == "mesh":
                return mesh(frames[index], request["region"])
            return detector(Image.fromarray(frames[index]))

        settings = {"detect_every": PARAMS["detect_every"], "max_faces": PARAMS["max_faces"], "smoothing": True,
                    "aside": False, **settings}
        traces[name] = record(about, settings, [(640, 360)] * len(frames), answer)
    return traces


def world_traces(canonical: np.ndarray) -> dict[str, dict]:
    """Hand-made edge cases (World): the decisions a real clip rarely reaches, with fixed answers."""
    still, moved = (200.0, 150.0, 100.0), (235.0, 150.0, 100.0)
    worlds = {
        "lost_and_returned": (
            "A face whose mesh misses (it jumped) found by the detector in the same frame: the same id, a fresh "
            "filter; then gone for two frames and back: a new id. Frame 5's time is frame 4's (a timestamp that "
            "does not advance).",
            {}, [[still]] * 3 + [[moved]] * 3 + [[]] * 2 + [[still]] * 2),
        "out_of_frame": ("A face sliding out of the frame: once its next square's centre is outside, no mesh runs "
                         "there and the track is lost.", {}, [[(x, 150.0, 100.0)] for x in range(120, -60, -20)]),
        "two_faces_duplicate_cap": (
            "Two faces, a duplicate detection of the first, a third over max_faces 2 left out; the second slides "
            "onto the first and the younger track goes; the third is then picked up.",
            {"max_faces": 2, "detect_every": 2},
            [[still, (200.0, 150.0, 96.0), (330.0, 150.0, 100.0), (500.0, 80.0, 60.0)]]
            + [[still, (x, 150.0, 100.0), (500.0, 80.0, 60.0)] for x in (305.0, 280.0, 255.0, 230.0, 205.0, 205.0)]
            + [[still, (500.0, 80.0, 60.0)]] * 2),
        "stale_search": (
            "The detector aside (a worker one frame late): a face moving on while the search runs (its first mesh "
            "misses, the wider square finds it); a track's mesh that misses and finds it on the wider square; a "
            "search's face matched to the track on its own frame; a face that jumps farther than the frame's "
            "look around it reaches, is found by the search, moves on again, is missed on the detection's square "
            "and the wider one, and is found around where the search saw it.",
            {"aside": True, "detect_every": 3},
            [[still], [(230.0, 150.0, 100.0)], [(235.0, 150.0, 100.0)], [(240.0, 152.0, 100.0)],
             [(295.0, 150.0, 100.0)], [(300.0, 150.0, 100.0)], [(615.0, 200.0, 100.0)],
             [(525.0, 200.0, 100.0)], [(527.0, 200.0, 100.0)], [(527.0, 200.0, 100.0)]]),
        "far_between_frames": (
            "The detector aside, frames far apart (a loaded machine): a face 0.17 of its square off the square "
            "its mesh ran on, meshed once more on its landmarks' square (catch_up); one that jumped past the "
            "wider square, found in the frame around where it was (its id kept), no search; one gone, looked for "
            "around and then by a search with the tiles, found where it comes back (a new id: far from where it "
            "went).",
            {"aside": True},
            [[still], [still], [(226.0, 150.0, 100.0)], [(306.0, 150.0, 100.0)], [(310.0, 150.0, 100.0)], [],
             [(450.0, 200.0, 100.0)], [(450.0, 200.0, 100.0)]]),
    }
    traces = {}
    for name, (about, settings, faces) in worlds.items():
        world = World(faces, canonical)
        settings = {"detect_every": PARAMS["detect_every"], "max_faces": PARAMS["max_faces"], "smoothing": True,
                    "aside": False, **settings}
        search = (lambda index, world=world: world.detect(index)) if settings["aside"] else None
        times = [round(index / 30, 6) for index in range(len(faces))]
        if name == "lost_and_returned":
            times[5] = times[4]
        traces[name] = record(about, settings, [WORLD_SIZE] * len(faces), world.answer, search, times)
    return traces


def write(traces: dict[str, dict], out: Path) -> list[Path]:
    from models.atomic import write_text

    out.mkdir(parents=True, exist_ok=True)
    return [write_text(out / f"{name}.json", json.dumps(trace, separators=(",", ":")) + "\n")
            for name, trace in traces.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.tracking_traces", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=TRACES, help="folder of the traces (default: %(default)s)")
    args = parser.parse_args(argv)
    real = real_traces()
    first_mesh = next(call for call in real["moving"]["frames"][0]["calls"] if call["request"]["run"] == "mesh")
    traces = {**real, **world_traces(canonical_mesh(np.asarray(first_mesh["answer"]["points"])))}
    for path in write(traces, args.out):
        print(f"{path} ({path.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
