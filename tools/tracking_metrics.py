"""How steady and how right a sequence of face crops is: what the live benchmark and the tests report.

Jitter is measured on a clip of a still face (every frame should give the same crop); error on a
clip whose face moves along a known path (the crop's centre should move with it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faces.alignment import Alignment


def alignment_jitter(alignments: Sequence[Alignment]) -> dict[str, float]:
    """Spread of the crop over the frames: centre (RMS distance from the mean centre, image
    pixels), scale (std of the side, % of its mean) and angle (std, degrees)."""
    if len(alignments) < 2:
        raise ValueError(f"jitter needs at least 2 alignments, got {len(alignments)}")
    centres = np.array([a.centre for a in alignments])
    sides = np.array([a.side for a in alignments])
    angles = np.unwrap([a.angle for a in alignments])
    return {"centre_px": float(np.sqrt(centres.var(0).sum())),
            "scale_pct": float(sides.std() / sides.mean() * 100),
            "angle_deg": float(np.degrees(angles.std()))}


def path_error(alignments: Sequence[Alignment], expected_centres: np.ndarray) -> dict[str, float]:
    """Distance of each crop's centre from where it should be (N x 2 image pixels): mean and max."""
    centres = np.array([a.centre for a in alignments])
    expected = np.asarray(expected_centres, np.float64)
    if centres.shape != expected.shape:
        raise ValueError(f"{len(alignments)} alignments but expected centres of shape {expected.shape}")
    distance = np.linalg.norm(centres - expected, axis=1)
    return {"mean_px": float(distance.mean()), "max_px": float(distance.max())}


def paste_along_paths(portrait: np.ndarray, paths: Sequence[np.ndarray], canvas_size: tuple[int, int] = (640, 360),
                      noise_std: float = 2.0, seed: int = 0) -> list[np.ndarray]:
    """Synthetic video frames: ``portrait`` (H x W x 3 uint8) pasted with its top-left corner at
    each path's integer (x, y) per frame (one path per face; parts off the canvas are cut), on a
    flat background, plus Gaussian sensor noise so that no two frames are identical."""
    width, height = canvas_size
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(len(paths[0])):
        canvas = np.empty((height, width, 3), np.float32)
        canvas[:] = (96, 104, 112)
        for path in paths:
            x, y = (int(round(v)) for v in path[index])
            x0, y0 = max(x, 0), max(y, 0)
            x1, y1 = min(x + portrait.shape[1], width), min(y + portrait.shape[0], height)
            if x0 < x1 and y0 < y1:
                canvas[y0:y1, x0:x1] = portrait[y0 - y:y1 - y, x0 - x:x1 - x]
        canvas += rng.normal(0, noise_std, canvas.shape).astype(np.float32)
        frames.append(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
    return frames


# Frames a new track takes to settle (its filter starts on the first, two-pass mesh): jitter is
# measured after them, as a viewer watches a face that has been followed for a moment.
SETTLE_FRAMES = 10
CLIP_FPS = 30


def astronaut_clips(frames: int = 40, noise_std: float = 5.0) -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """The measurement clips (640x360, 30 frames/s): the public-domain astronaut portrait's head
    still, and moving along a known ellipse (up to 380 px/s, about 2 face widths a second).
    Returns {name: (frames, top-left offsets of the pasted head, N x 2)}; needs scikit-image."""
    from skimage import data

    head = data.astronaut()[20:240, 120:340]
    time = np.arange(frames) / CLIP_FPS
    still = np.tile([[210.0, 70.0]], (frames, 1))
    moving = np.stack([210 + 120 * np.sin(np.pi * time), 70 + 30 * np.cos(np.pi * time)], axis=1)
    return {"still": (paste_along_paths(head, [still], noise_std=noise_std, seed=1), still),
            "moving": (paste_along_paths(head, [moving], noise_std=noise_std, seed=2), moving),
            "reference": ([paste_along_paths(head, [still[:1]], noise_std=0.0)[0]], still[:1])}


def _first_alignments(follower, frames: list[np.ndarray]) -> list[Alignment | None]:
    found = [follower.update(frame, index / CLIP_FPS) for index, frame in enumerate(frames)]
    return [faces[0].alignment if faces else None for faces in found]


def main() -> int:
    """python -m tools.tracking_metrics: jitter and path error of tracking vs per-frame detection."""
    import time

    from faces.tracking import FaceTracker, PerFrameDetector

    clips = astronaut_clips()
    followers = {"per-frame detection": lambda: PerFrameDetector(256),
                 "tracking, no smoothing": lambda: FaceTracker(256, smoothing=False),
                 "tracking": lambda: FaceTracker(256)}
    print("| method | still: centre px | scale % | angle deg | moving: mean px | max px | ms/frame |")
    print("|---|---|---|---|---|---|---|")
    for name, make in followers.items():
        # Where the crop should be: the method's own crop of the noise-free still frame, moved with the head.
        reference = _first_alignments(make(), clips["reference"][0])[0].centre - clips["reference"][1][0]
        start = time.perf_counter()
        still = _first_alignments(make(), clips["still"][0])
        moving = _first_alignments(make(), clips["moving"][0])
        ms = (time.perf_counter() - start) * 1000 / (len(still) + len(moving))
        if None in still or None in moving:
            print(f"| {name} | lost the face in {still.count(None)} + {moving.count(None)} frames |")
            continue
        jitter = alignment_jitter(still[SETTLE_FRAMES:])
        error = path_error(moving, clips["moving"][1] + reference)
        print(f"| {name} | {jitter['centre_px']:.3f} | {jitter['scale_pct']:.3f} | {jitter['angle_deg']:.3f} "
              f"| {error['mean_px']:.2f} | {error['max_px']:.2f} | {ms:.1f} |")
    print(contract_difference())
    return 0


def filter_sweep(grid=((1.0, 0.5, 0.0), (1.0, 0.5, 10.0), (1.0, 0.5, 20.0), (2.0, 0.5, 20.0), (4.0, 0.5, 20.0),
                         (1.0, 1.0, 20.0))) -> None:
    """python -m tools.tracking_metrics --sweep: the unsmoothed tracker's crops on the clips, replayed
    through One Euro filters of other (derivative cutoff, min_cutoff, beta)."""
    from faces.tracking import FaceTracker
    from faces.tracking_step import PARAMS, AlignmentFilter

    clips = astronaut_clips()
    reference = _first_alignments(FaceTracker(256, smoothing=False), clips["reference"][0])[0].centre
    truth = clips["moving"][1] + reference - clips["reference"][1][0]
    raw = {name: _first_alignments(FaceTracker(256, smoothing=False), clips[name][0]) for name in ("still", "moving")}
    print("| d_cutoff | min_cutoff | beta | still: centre px | scale % | angle deg | moving: mean px | max px |")
    for derivative, min_cutoff, beta in grid:
        smoothed = {}
        for name, alignments in raw.items():
            smoothing = {key: (min_cutoff, beta) for key in ("centre", "size", "angle")}
            smoother = AlignmentFilter({**PARAMS, "smoothing": smoothing, "derivative_cutoff": derivative})
            smoothed[name] = [smoother(a, i / CLIP_FPS) for i, a in enumerate(alignments)]
        jitter, error = alignment_jitter(smoothed["still"][SETTLE_FRAMES:]), path_error(smoothed["moving"], truth)
        print(f"| {derivative} | {min_cutoff} | {beta} | {jitter['centre_px']:.3f} | {jitter['scale_pct']:.3f} "
              f"| {jitter['angle_deg']:.3f} | {error['mean_px']:.2f} | {error['max_px']:.2f} |")


# The views the mesh template is fitted on and measured with: each portrait resized, turned
# (PIL, counterclockwise on screen) and pasted on a flat frame, so the detector sees it afresh.
VIEW_SCALES = (0.6, 0.8, 1.0, 1.25, 1.5)
VIEW_DEGREES = (-20, -10, 0, 10, 20)
VIEW_MARGIN = (150, 40)  # where the turned portrait goes on a frame 200 x 120 px larger


def real_portraits() -> dict[str, np.ndarray]:
    """The real face photos at hand: skimage's astronaut (NASA, public domain; the tests use it),
    matplotlib's Grace Hopper (US Navy, public domain) and skimage's cameraman (a small face turned
    three-quarters: measured, not fitted on)."""
    from matplotlib import cbook
    from PIL import Image
    from skimage import data

    with cbook.get_sample_data("grace_hopper.jpg") as file:
        hopper = np.asarray(Image.open(file).convert("RGB"))
    return {"astronaut": data.astronaut(), "grace_hopper": hopper, "cameraman": np.stack([data.camera()] * 3, -1)}


def portrait_view(photo: np.ndarray, scale: float, degrees: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame, linear, offset): the photo resized by ``scale``, turned by ``degrees`` and pasted
    at VIEW_MARGIN; a photo point p lands at linear @ p + offset in the frame."""
    from PIL import Image

    image = Image.fromarray(photo)
    width, height = round(image.width * scale), round(image.height * scale)
    turned = image.resize((width, height), Image.LANCZOS).rotate(degrees, Image.BICUBIC, expand=True,
                                                                  fillcolor=(90, 100, 110))
    frame = Image.new("RGB", (turned.width + 200, turned.height + 120), (90, 100, 110))
    frame.paste(turned, VIEW_MARGIN)
    cos, sin = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    rotation = np.array([[cos, sin], [-sin, cos]])
    linear = rotation @ np.diag([width / image.width, height / image.height])
    offset = np.array([turned.width / 2, turned.height / 2]) - rotation @ [width / 2, height / 2] + VIEW_MARGIN
    return np.asarray(frame), linear, offset


def _in_photo(alignment: Alignment, linear: np.ndarray, offset: np.ndarray) -> Alignment:
    """A view's alignment mapped back onto the photo it was made from."""
    inverse = np.linalg.inv(linear)
    return Alignment(inverse @ (alignment.origin - offset), inverse @ alignment.x_axis, inverse @ alignment.y_axis,
                     alignment.size)


def mean_alignment(alignments: Sequence[Alignment]) -> Alignment:
    centre = np.mean([a.centre for a in alignments], 0)
    side = float(np.exp(np.mean([np.log(a.side) for a in alignments])))
    return Alignment.from_params(centre, side, float(np.mean(np.unwrap([a.angle for a in alignments]))),
                                 alignments[0].size)


def view_alignments(photo: np.ndarray, size: int = 256, scales: Sequence[float] = VIEW_SCALES,
                    turns: Sequence[float] = VIEW_DEGREES) -> list[tuple[Alignment, np.ndarray, Alignment]]:
    """Per view of the photo (each scale with each turn, degrees) where both find the face:
    (from_face crop, mesh points, from_mesh crop), all mapped back onto the photo."""
    from PIL import Image

    from faces.detection import FaceDetector
    from faces.tracking import FaceTracker

    detector, tracker = FaceDetector(1), FaceTracker(size, threads=1, smoothing=False)
    found = []
    for scale in scales:
        for degrees in turns:
            frame, linear, offset = portrait_view(photo, scale, degrees)
            faces = detector(Image.fromarray(frame))
            tracker.reset()
            tracked = tracker.update(frame, 0.0)
            if faces and tracked:
                points = (tracked[0].landmarks - offset) @ np.linalg.inv(linear).T
                found.append((_in_photo(Alignment.from_face(faces[0], size), linear, offset), points,
                              _in_photo(tracked[0].alignment, linear, offset)))
    return found


def fit_mesh_template(photos: Sequence[str] = ("astronaut", "grace_hopper")) -> dict[int, tuple[float, float]]:
    """python -m tools.tracking_metrics --fit: faces.alignment.MESH_TEMPLATE, refitted: each template point
    where it sits, on average over every view of each photo (photos weigh the same), in the crop
    from_face gives on that view."""
    from faces.alignment import MESH_TEMPLATE

    portraits = real_portraits()
    per_photo = []
    for name in photos:
        views = view_alignments(portraits[name])
        per_photo.append(np.mean([face.to_crop(points[list(MESH_TEMPLATE), :2]) / face.size
                                  for face, points, _ in views], 0))
    fitted = np.mean(per_photo, 0).round(4)
    return {index: (float(x), float(y)) for index, (x, y) in zip(MESH_TEMPLATE, fitted, strict=True)}


def contract_difference(size: int = 256) -> str:
    """How far the mesh's crop is from the detector keypoints' crop on each real portrait: over all
    its views (mean crop vs mean crop, mapped back onto the photo), the spread of each from view to
    view, and the single photo as it is."""
    from PIL import Image

    from faces.detection import FaceDetector
    from faces.tracking import align_still

    lines = ["| photo | views | mesh vs detector, mean over views: scale % / centre px (% side) / angle deg "
             "| the photo alone: scale % / centre px / angle deg | view-to-view std, detector: scale % / angle deg "
             "| mesh: scale % / angle deg |", "|---|---|---|---|---|---|"]
    for name, photo in real_portraits().items():
        views = view_alignments(photo, size)
        face, mesh = (mean_alignment([view[k] for view in views]) for k in (0, 2))
        alone_face = Alignment.from_face(FaceDetector(1)(Image.fromarray(photo))[0], size)
        alone_mesh = align_still(photo, size)[0]
        spread = {k: (np.std([np.log(v[k].side) for v in views]) * 100, np.degrees(np.std([v[k].angle for v in views])))
                  for k in (0, 2)}
        lines.append(f"| {name} | {len(views)} | {_difference(mesh, face, percent_side=True)} | "
                     f"{_difference(alone_mesh, alone_face)} | {spread[0][0]:.2f} / {spread[0][1]:.2f} | "
                     f"{spread[2][0]:.2f} / {spread[2][1]:.2f} |")
    return "\n".join(lines)


def _difference(mesh: Alignment, face: Alignment, percent_side: bool = False) -> str:
    offset = float(np.hypot(*(mesh.centre - face.centre)))
    share = f" ({offset / face.side * 100:.1f}%)" if percent_side else ""
    return (f"{(mesh.side / face.side - 1) * 100:+.2f} / {offset:.2f}{share} / "
            f"{np.degrees(mesh.angle - face.angle):+.2f}")


if __name__ == "__main__":
    import sys

    commands = {"--sweep": filter_sweep, "--fit": lambda: print(fit_mesh_template())}
    chosen = next((commands[flag] for flag in sys.argv[1:] if flag in commands), main)
    raise SystemExit(chosen() or 0)
