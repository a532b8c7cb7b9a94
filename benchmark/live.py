"""Live: a 720p video through apply end to end, and how steady and how right the tracked crop is.

Part of ``python -m benchmark`` (``--no-live`` leaves it out, ~40 s on 2 cores); alone:
    python -m benchmark.live --model artifacts/tinybeauty.onnx --out bench/

Two clips made here, 1280x720 at 30 frames/s, H.264 (CRF 18) with an AAC tone: the public-domain
astronaut portrait (skimage.data.astronaut(), NASA) pasted on a flat frame with sensor noise
(tools.tracking_metrics.paste_along_paths), **moving** along a known figure of eight (up to 15 px a frame)
or standing **still** (only the noise changes).

- End to end: apply/video.py on the moving clip with the model at 1 thread: frames/s and ms per
  frame in each stage (decode, track, model, composite, encode: they overlap in threads, so they
  add up to more than the wall time per frame), best and median of ``runs`` runs; and once with
  a fresh detection on every frame (faces.tracking.PerFrameDetector) instead of tracking.
- Jitter on the still clip (tools.tracking_metrics.alignment_jitter): the crop's centre (px), scale (%)
  and angle (degrees), tracking beside per-frame detection.
- Tracking error on the moving clip (tools.tracking_metrics.path_error): each crop's centre against the
  path, i.e. the method's own mean centre on the still clip moved along the path.
- Start-up, as a user meets it: ``python -m apply`` in a fresh process (its model at the threads
  it picks), the median wall time of ``runs`` runs: ``--help``; a one-frame cut of the moving clip
  (imports, model and face networks loaded, one frame made up and written: the wait before the
  first frame); and the whole moving clip, whose frames/s end to end stand beside the steady rate.

A model that reads the face's region maps gets each face's maps in each frame, drawn from the mesh the
tracker found there (apply/video.py), so the model stage includes them; per-frame detection has no mesh, so
its faces read empty maps (the log counts them) and only its timing stands beside tracking's.

Writes OUT/live.png; returns the figures (report.json's "live", report.md's live section).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from apply.video import STAGES, apply_to_video
from export.loading import load_model
from faces import DetectorUnavailable
from faces.tracking import FaceTracker, PerFrameDetector
from models.atomic import save_figure
from tools.tracking_metrics import alignment_jitter, paste_along_paths, path_error

log = logging.getLogger("benchmark")

FRAME_SIZE, RATE = (1280, 720), 30
MOVING_FRAMES, STILL_FRAMES = 90, 60
STILL_AT = (384, 104)  # the portrait's top-left corner on the still clip (centred in the frame)
RUNS = 3
TRACKERS = {"tracking": FaceTracker, "per-frame detection": PerFrameDetector}


def figure_eight(frames: int = MOVING_FRAMES) -> np.ndarray:
    """The portrait's top-left corner per frame: one figure of eight across the frame."""
    phase = np.arange(frames) / frames * 2 * np.pi
    return np.stack([STILL_AT[0] + 200 * np.sin(phase), STILL_AT[1] + 70 * np.sin(2 * phase)], axis=1)


def portrait() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def write_clip(path: Path, frames: list[np.ndarray]) -> Path:
    """H.264 at CRF 18 with a quiet 440 Hz tone, as a camera or a phone would hand it over."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=RATE, options={"crf": "18", "preset": "veryfast"})
        video.width, video.height = FRAME_SIZE
        video.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=44100)
        sound.layout = "mono"
        for frame in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(video.encode())
        samples = 44100 * len(frames) // RATE
        tone = av.AudioFrame.from_ndarray((0.1 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 44100))
                                          .astype(np.float32)[None], format="fltp", layout="mono")
        tone.sample_rate, tone.pts = 44100, 0
        out.mux(sound.encode(tone))
        out.mux(sound.encode())
    return path


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as clip:
        return [frame.to_ndarray(format="rgb24") for frame in clip.decode(video=0)]


def end_to_end(model, clip: Path, out: Path, tracker, runs: int) -> dict:
    """apply's video path ``runs`` times: frames/s (best, median, each) and the median ms per stage. A file of
    several looks runs with every look live (an even blend), as the benchmark times it; one that reads region
    maps, with each face's maps drawn per frame from the tracked mesh."""
    runner = model.runner_for(model.even_blend())
    results = [apply_to_video(runner, tracker, clip, out, 1.0, progress=False, region_names=model.region_inputs)
               for _ in range(runs)]
    stages = {stage: statistics.median(r.stage_ms()[stage] for r in results) for stage in results[0].stage_seconds}
    rates = [r.frames_per_s for r in results]
    return {"frames": results[0].frames, "frames_per_s_best": max(rates),
            "frames_per_s_median": statistics.median(rates), "frames_per_s_runs": rates, "stage_ms_median": stages}


def command_seconds(args: list[str], runs: int) -> list[float]:
    """Wall seconds of ``python -m apply ARGS`` in a fresh process, each of ``runs`` runs."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "apply", *args], capture_output=True, text=True)
        seconds.append(time.perf_counter() - started)
        if done.returncode:
            raise RuntimeError(f"python -m apply {' '.join(args)} failed (exit {done.returncode}): "
                               + done.stderr.strip()[-2000:])
    return seconds


def start_up(model_path: Path, clips: dict[str, Path], frames: int, out: Path, runs: int) -> dict:
    """apply as a user runs it: --help, a one-frame clip (the wait for the first frame) and the
    whole moving clip (``frames`` frames), median seconds of ``runs`` fresh processes each."""
    timed = {"help": command_seconds(["--help"], runs)}
    for name in ("first_frame", "moving"):
        timed[name] = command_seconds(["--model", str(model_path), str(clips[name]), "--out", str(out / name),
                                       "--overwrite"], runs)
    median = {name: statistics.median(seconds) for name, seconds in timed.items()}
    return {"help_s": median["help"], "first_frame_s": median["first_frame"], "clip_s": median["moving"],
            "clip_frames": frames, "clip_frames_per_s": frames / median["moving"], "runs": runs,
            "seconds_runs": timed}


def follow(tracker, frames: list[np.ndarray]) -> tuple[list, float]:
    """The first face's crop in each frame (None where none was found), and ms per frame."""
    tracker.reset()
    crops, started = [], time.perf_counter()
    for index, frame in enumerate(frames):
        faces = tracker.update(frame, index / RATE)
        crops.append(faces[0].alignment if faces else None)
    return crops, 1000 * (time.perf_counter() - started) / len(frames)


def steadiness(tracker, still: list[np.ndarray], moving: list[np.ndarray], path: np.ndarray) -> dict:
    """Jitter on the still clip, error along the path on the moving one, misses and ms per frame."""
    still_crops, still_ms = follow(tracker, still)
    moving_crops, moving_ms = follow(tracker, moving)
    found_still = [crop for crop in still_crops if crop is not None]
    own_centre = np.mean([crop.centre for crop in found_still], axis=0) - STILL_AT  # the method's own still centre
    found = [i for i, crop in enumerate(moving_crops) if crop is not None]
    return {"jitter": alignment_jitter(found_still),
            "path_error": path_error([moving_crops[i] for i in found], path[found] + own_centre),
            "missed_frames": (len(still) - len(found_still)) + (len(moving) - len(found)),
            "ms_per_frame": (still_ms * len(still) + moving_ms * len(moving)) / (len(still) + len(moving)),
            "centres": np.array([crop.centre if crop is not None else (np.nan, np.nan) for crop in moving_crops]),
            "expected_centres": path + own_centre}


def plot(live: dict, traces: dict, path: Path) -> Path:
    """The crop's centre along the moving clip, the still clip's jitter, and ms per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_path, ax_jitter, ax_stages) = plt.subplots(1, 3, figsize=(15, 4))
    expected = next(iter(traces.values()))["expected_centres"]
    ax_path.plot(expected[:, 0], expected[:, 1], "k--", lw=1, label="known path")
    for name, trace in traces.items():
        ax_path.plot(trace["centres"][:, 0], trace["centres"][:, 1], ".-", ms=3, lw=0.8, label=name)
    ax_path.set(xlabel="crop centre x, px", ylabel="y, px", title="moving clip: crop centre per frame")
    ax_path.invert_yaxis()
    ax_path.legend(fontsize=8)
    keys = [("centre_px", "centre, px"), ("scale_pct", "scale, %"), ("angle_deg", "angle, deg")]
    width = 0.8 / len(traces)
    for i, name in enumerate(traces):
        ax_jitter.bar(np.arange(len(keys)) + i * width, [live["steadiness"][name]["jitter"][k] for k, _ in keys],
                      width, label=name)
    ax_jitter.set_xticks(np.arange(len(keys)) + width * (len(traces) - 1) / 2, [label for _, label in keys])
    ax_jitter.set(ylabel="std over the still clip", title="still clip: jitter of the crop")
    ax_jitter.legend(fontsize=8)
    rows = live["end_to_end"]
    stages = list(next(iter(rows.values()))["stage_ms_median"])
    for i, (name, row) in enumerate(rows.items()):
        ax_stages.bar(np.arange(len(stages)) + i * width, [row["stage_ms_median"][s] for s in stages], width,
                      label=f"{name}: {row['frames_per_s_median']:.1f} frames/s")
    ax_stages.set_xticks(np.arange(len(stages)) + width * (len(rows) - 1) / 2, stages)
    ax_stages.set(ylabel="ms per frame (median run)", title="1280x720 through apply (stages overlap)")
    ax_stages.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def live_section(model_path: Path, out: Path, runs: int = RUNS) -> dict:
    """Every live figure, and OUT/live.png; {"not_run": why} without the face models."""
    try:
        return measure_live(model_path, out, runs)
    except DetectorUnavailable as why:
        log.error("live section not run: %s", why)
        return {"not_run": str(why)}


def measure_live(model_path: Path, out: Path, runs: int) -> dict:
    """The clips are made in a temp folder and deleted."""
    model = load_model(model_path, threads=1)
    path = figure_eight()
    moving_frames = paste_along_paths(portrait(), [path], canvas_size=FRAME_SIZE, seed=0)
    still_frames = paste_along_paths(portrait(), [np.tile(STILL_AT, (STILL_FRAMES, 1))], canvas_size=FRAME_SIZE, seed=1)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="live-") as folder:
        clips = {name: write_clip(Path(folder) / f"{name}.mp4", frames)
                 for name, frames in (("moving", moving_frames), ("still", still_frames),
                                      ("first_frame", moving_frames[:1]))}
        frames = {name: decoded(clips[name]) for name in ("moving", "still")}
        trackers = {name: make(model.image_size, threads=1) for name, make in TRACKERS.items()}
        traces = {name: steadiness(tracker, frames["still"], frames["moving"], path)
                  for name, tracker in trackers.items()}
        end = {name: end_to_end(model, clips["moving"], Path(folder) / "out", tracker,
                                runs if name == "tracking" else 1)
               for name, tracker in trackers.items()}
        started = start_up(model_path, clips, MOVING_FRAMES, Path(folder) / "command", runs)
    live = {"model": str(model_path), "runtime": f"{model.runtime}, 1 thread",
            "region_inputs": list(model.region_inputs), "clip": {
                "size": list(FRAME_SIZE), "frames_per_s": RATE, "moving_frames": MOVING_FRAMES,
                "still_frames": STILL_FRAMES, "codec": "H.264 CRF 18 + AAC", "portrait": "skimage.data.astronaut()"},
            "load_average": {"before": list(load_before), "after": list(os.getloadavg())}, "cores": os.cpu_count(),
            "end_to_end": end, "start_up": started,
            "steadiness": {name: {k: v for k, v in trace.items() if k not in ("centres", "expected_centres")}
                           for name, trace in traces.items()}}
    live["plot"] = str(plot(live, traces, Path(out) / "live.png"))
    return live


def markdown_lines(live: dict | None) -> list[str]:
    """The live section of report.md; nothing for a report without it (--no-live)."""
    if not live:
        return []
    if "not_run" in live:
        return ["", f"Live (benchmark/live.py): not run: {live['not_run']}"]
    clip, load = live["clip"], live["load_average"]
    lines = ["", f"Live (benchmark/live.py): a {clip['size'][0]}x{clip['size'][1]} {clip['codec']} clip at "
             f"{clip['frames_per_s']} frames/s through apply ({live['runtime']}); {live['cores']} cores, load average "
             f"{load['before'][0]:.1f} before and {load['after'][0]:.1f} after (a shared machine). Stages overlap "
             "in threads: their ms add up to more than the time per frame."
             + (f" The model reads region maps ({', '.join(live['region_inputs'])}), drawn each frame from the "
                "tracked mesh (empty under per-frame detection, which has none)." if live.get("region_inputs") else ""),
             "",
             "| faces by | frames/s best / median (runs) | " + " | ".join(f"{s} ms" for s in STAGES)
             + " | jitter centre px / scale % / angle deg (still) | error along the path mean / max px | missed |",
             "|" + "---|" * (len(STAGES) + 5)]
    for name, row in live["end_to_end"].items():
        steady = live["steadiness"][name]
        jitter, error = steady["jitter"], steady["path_error"]
        lines.append(f"| {name} | {row['frames_per_s_best']:.1f} / {row['frames_per_s_median']:.1f} "
                     f"({len(row['frames_per_s_runs'])}) | "
                     + " | ".join(f"{row['stage_ms_median'][s]:.1f}" for s in STAGES)
                     + f" | {jitter['centre_px']:.2f} / {jitter['scale_pct']:.2f} / {jitter['angle_deg']:.2f} | "
                     f"{error['mean_px']:.2f} / {error['max_px']:.2f} | {steady['missed_frames']} |")
    return lines + start_up_lines(live.get("start_up"), live["end_to_end"]["tracking"])


def start_up_lines(started: dict | None, steady: dict) -> list[str]:
    """Start-up beside the steady rate; nothing for a report made before it was measured."""
    if not started:
        return []
    return ["", f"Start-up (`python -m apply` in a fresh process, median of {started['runs']}): `--help` "
            f"{started['help_s']:.2f} s; a one-frame clip {started['first_frame_s']:.2f} s (imports, model and face "
            f"networks loaded, the frame made up and written); the {started['clip_frames']}-frame clip "
            f"{started['clip_s']:.2f} s, {started['clip_frames_per_s']:.1f} frames/s end to end beside the steady "
            f"{steady['frames_per_s_median']:.1f} above (1 model thread there; the command picks its own)."]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.live", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("artifacts/tinybeauty.onnx"), help="default: %(default)s")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="folder for live.png (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=RUNS, help="end-to-end runs with tracking (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    import json

    live = live_section(args.model, args.out, args.runs)
    print(json.dumps(live, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
