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
    """python -m faces.metrics: jitter and path error of tracking vs per-frame detection."""
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
    """python -m faces.metrics --sweep: the unsmoothed tracker's crops on the clips, replayed
    through One Euro filters of other (derivative cutoff, min_cutoff, beta)."""
    from faces.tracking import AlignmentFilter, FaceTracker

    clips = astronaut_clips()
    reference = _first_alignments(FaceTracker(256, smoothing=False), clips["reference"][0])[0].centre
    truth = clips["moving"][1] + reference - clips["reference"][1][0]
    raw = {name: _first_alignments(FaceTracker(256, smoothing=False), clips[name][0]) for name in ("still", "moving")}
    print("| d_cutoff | min_cutoff | beta | still: centre px | scale % | angle deg | moving: mean px | max px |")
    for derivative, min_cutoff, beta in grid:
        smoothed = {}
        for name, alignments in raw.items():
            smoother = AlignmentFilter({key: (min_cutoff, beta) for key in ("centre", "size", "angle")})
            for one in (smoother.centre, smoother.size, smoother.angle):
                one.derivative_cutoff = derivative
            smoothed[name] = [smoother(a, i / CLIP_FPS) for i, a in enumerate(alignments)]
        jitter, error = alignment_jitter(smoothed["still"][SETTLE_FRAMES:]), path_error(smoothed["moving"], truth)
        print(f"| {derivative} | {min_cutoff} | {beta} | {jitter['centre_px']:.3f} | {jitter['scale_pct']:.3f} "
              f"| {jitter['angle_deg']:.3f} | {error['mean_px']:.2f} | {error['max_px']:.2f} |")


def contract_difference(size: int = 256) -> str:
    """How far the mesh's crop of the full astronaut portrait is from the detector keypoints' crop."""
    from PIL import Image
    from skimage import data

    from faces.detection import FaceDetector
    from faces.tracking import align_still

    photo = data.astronaut()
    (mesh,) = align_still(photo, size)
    detector = Alignment.from_face(FaceDetector(1)(Image.fromarray(photo))[0], size)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]])
    moved = np.abs(mesh.to_crop(detector.to_image(corners)) - corners).max()
    return (f"astronaut, mesh vs detector crop: centre {np.hypot(*(mesh.centre - detector.centre)):.2f} px "
            f"({np.hypot(*(mesh.centre - detector.centre)) / detector.side * 100:.1f}% of the side), "
            f"side {(mesh.side / detector.side - 1) * 100:+.1f}%, "
            f"angle {np.degrees(mesh.angle - detector.angle):+.2f} deg, "
            f"crop corners up to {moved:.1f} px apart at {size} px")


if __name__ == "__main__":
    import sys

    raise SystemExit(filter_sweep() if "--sweep" in sys.argv[1:] else main())
