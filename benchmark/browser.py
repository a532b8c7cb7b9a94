"""The browser rows: the web page in headless Chromium running each file it can run, the shipped int8
ONNX in onnxruntime-web and the shipped int8 .tflite in LiteRT.js (both WebAssembly).

Every face goes through the page's own file input (decode, face box, model, residual), written
first as the PNG its pixels came from, so the page sees exactly the benchmark's input. A file of
several looks: each face with its own look chosen on the page (its swatch's, by name), so the row
has each look's quality as the other rows do; its latency with every look live (an even blend). Latency
is the page's batch-1 model time (performance.now() around ``session.run``, in a normal
headless run, not virtual time), one fresh page per thread count: both runtimes fix their
thread count when their wasm module starts.

The camera figures (in the row of the page's default model, web/server.py): the page's camera
mode on Chromium's fake camera playing a 1280x720 clip of a moving face (tools/camera_clip.py) at
30 frames/s, then at 60 to show the headroom: frames made up per second (the camera's rate is
the ceiling), the camera's frames the page never made up (dropped), several fresh pages, best
and median, with the page's own ms per stage.
``python -m benchmark.browser --camera --artifacts DIR [--fps 30 60]`` prints them alone.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmark.latency import summarize
from tools.browser import BrowserPage, BrowserUnavailable, PageError, write_face_png
from tools.camera_clip import Clip, write_clip
from web.server import DEFAULT_MODEL, PAGE_MODELS

log = logging.getLogger(__name__)

CAMERA_MODEL = DEFAULT_MODEL  # the page's default: what a camera user gets
CAMERA_CLIP = Clip(1280, 720, fps=30, frames=120)  # a webcam's size and rate; 4 s, 166 MB, looped
CAMERA_FPS = (30, 60)   # the webcam's rate, then twice it: the headroom (the same 120 frames, 2 s)
CAMERA_RUNS = 3         # fresh pages: the machine is shared, so best and median
CAMERA_SECONDS = 5.0    # counted per run, after its first face and WARM_FRAMES frames (wasm warm-up)
WARM_FRAMES = 30
MODEL_STAGES = {"auto": None, "worker": {"modelWorker": "1"}, "page": {"modelWorker": "0"}}  # the page's URL parameter
FACE_FOLLOWED = "tinybeauty.state.camera?.faces.length > 0"


def page_row_name(fmt: str) -> str:
    """The report's row for the page running a format's file (web/server.py PAGE_MODELS): "browser"
    for the ONNX, "browser-tflite" for the .tflite."""
    return "browser" if fmt == "onnx" else f"browser-{fmt}"


def _camera(artifacts: Path, model_file: str, min_seconds: float) -> tuple[dict | None, str]:
    """The camera's figures and their note: measured once, with the page's default model."""
    if model_file != CAMERA_MODEL:
        return None, f"camera: measured with the page's default, {CAMERA_MODEL}"
    if min_seconds <= 0:  # a smoke run (the tests'): the camera's half minute is left out
        return None, "camera: not measured (--min-seconds 0: a smoke run)"
    return measure_camera(artifacts)


def browser_row(artifacts: Path, manifest: dict, faces: dict[str, tuple[torch.Tensor, torch.Tensor]],
                threads: list[int], min_runs: int, min_seconds: float, fmt: str = "onnx",
                looks: dict[str, torch.Tensor] | None = None,
                names: tuple[str, ...] = ()) -> tuple[dict, dict[str, np.ndarray]]:
    """(row without quality, outputs per split) of the page running PAGE_MODELS[fmt]; the row says
    'not run' where no browser is installed (or the set has no such file). ``looks`` (several looks):
    each split's one-hot look per face, in the order of ``names``."""
    model_file, name = PAGE_MODELS[fmt], page_row_name(fmt)
    entry = next((e for e in manifest["artifacts"] if e["file"] == model_file), {})
    runtime = "LiteRT.js" if model_file.endswith(".tflite") else "onnxruntime-web"
    row = {"name": f"{entry.get('format', name)} in Chromium ({runtime} wasm)", "format": name,
           "file": str(artifacts / model_file), "shipped": True, "bytes": entry.get("bytes"),
           "runtime": f"{runtime} (wasm) in Chromium", "latency": {}, "quality": {}, "notes": []}
    if not entry:
        row["notes"] += [f"not run: {model_file} is not in this export", "latency: not measured"]
        return row, {}
    outputs: dict[str, np.ndarray] = {}
    live = even_blend(names) if looks else None  # the look the latency is measured with
    try:
        with tempfile.TemporaryDirectory(prefix="tinybeauty_browser_") as folder:
            photos = {part: [write_face_png(face.numpy(), Path(folder) / f"{part}_{i:04d}.png")
                             for i, face in enumerate(source)] for part, (source, _) in faces.items()}
            example = next(iter(photos.values()))[0]

            def time_page(page: BrowserPage) -> None:
                if live:
                    page.set_look(live)
                page.open(example)
                figures = summarize(page.time_model(min_runs, min_seconds))
                row["latency"][str(page.model_info["threads"])] = figures | {"session_ms": page.model_info["loadMs"]}

            # The runtime's default thread count: quality and its latency
            with BrowserPage(artifacts, model_file) as page:
                page.set_mode("whole")  # aligned face crops, as `apply --aligned`
                info = page.model_info
                check_page_looks(page, names if looks else ())
                for part, files in photos.items():
                    log.info("browser: %d %s faces through the page", len(files), part)
                    outputs[part] = make_up_faces(page, files, face_looks(looks.get(part) if looks else None, names))
                version = page.browser_version
                time_page(page)
            for count in sorted(set(threads) - {info["threads"]}):  # the report's other thread counts
                with BrowserPage(artifacts, model_file, threads=count) as page:
                    page.set_mode("whole")
                    time_page(page)
    except (BrowserUnavailable, PageError) as why:
        row["notes"] += [f"not run: {why}", "latency: not measured"]
        return row, {}
    row["camera"], camera_text = _camera(artifacts, model_file, min_seconds)
    row["runtime"] = f"{info['runtime']} {info['runtimeVersion']} (wasm) in Chromium {version}"
    default = row["latency"][str(info["threads"])]["median_ms"]
    row["notes"] += [f"ran in {row['runtime']}, headless, through the page's file input"
                     + (f", each face with its look chosen on the page ({', '.join(names)}); latency with an even "
                        "blend" if looks else ""),
                     f"{info['runtime']}'s default: {info['threads']} thread(s), {default:.2f} ms; "
                     f"cross-origin isolated: {info['isolated']}",
                     f"session creation {info['loadMs']:.0f} ms",
                     camera_text]
    return row, outputs


def even_blend(names: tuple[str, ...]) -> str:
    """Every look at an even share, as a choice the page takes (models/look_choice.py's NAME=W,...)."""
    return ",".join(f"{name}={1 / len(names):.6f}" for name in names)


def face_looks(one_hot: torch.Tensor | None, names: tuple[str, ...]) -> list[str | None]:
    """Each face's look by name, from its one-hot row; [] for a one-look set (no look to choose)."""
    return [] if one_hot is None else [names[int(index)] for index in one_hot.argmax(dim=1)]


def check_page_looks(page: BrowserPage, names: tuple[str, ...]) -> None:
    """The page's looks (its looks.json, checked against the file) are the checkpoint's, in the same order."""
    if page.looks != list(names):
        raise PageError(f"the page's looks ({', '.join(page.looks) or 'one'}) are not the checkpoint's "
                        f"({', '.join(names) or 'one'}): the set's looks.json is from another export")


def make_up_faces(page: BrowserPage, files: list[Path], looks: list[str | None]) -> np.ndarray:
    """The page's raw outputs for these faces in order, each made up with its look (where ``looks`` names one:
    chosen on the page only when it changes)."""
    outputs, chosen = [], None
    for path, look in itertools.zip_longest(files, looks):
        if look is not None and look != chosen:
            page.set_look(look)
            chosen = look
        outputs.append(page.make_up(path)["output"])
    return np.concatenate(outputs)


def camera_figures(artifacts: Path, runs: int = CAMERA_RUNS, seconds: float = CAMERA_SECONDS,
                   clip: Clip = CAMERA_CLIP, query: dict | None = None, model: str = CAMERA_MODEL,
                   threads: int | None = None) -> dict:
    """The page's camera mode on the fake camera, counted from its first followed face (the
    detector's worker starts with the camera): frames/s and frames dropped of each run, best and
    median, and the median run's ms per stage (tools.browser's camera_rate), p90 frame and p90 of the
    page's own work per frame (main), and the seconds from "Use the webcam" to the first face.
    ``query``: the page's URL parameters (MODEL_STAGES: where the model runs); ``model``, ``threads``:
    the file the page runs (default: its own default) and its runtime's threads (None: the default)."""
    with tempfile.TemporaryDirectory(prefix="tinybeauty_camera_") as folder:
        path = write_clip(Path(folder) / "camera.y4m", clip)
        measured = []
        for _ in range(runs):
            with BrowserPage(artifacts, model, threads=threads, camera_clip=path, query=query) as page:
                info = page.model_info
                runtime = f"{info['runtime']} {info['runtimeVersion']}, {info['threads']} thread(s)"
                started = time.monotonic()
                page.start_camera(frames=1)
                page.page.wait_for_function(FACE_FOLLOWED, timeout=120_000)
                first_face_s = time.monotonic() - started
                page.page.wait_for_function(f"tinybeauty.state.frames >= {WARM_FRAMES}")
                measured.append(page.camera_rate(seconds) | {"first_face_s": first_face_s})
    rates = [run["fps"] or 0.0 for run in measured]
    median_run = sorted(measured, key=lambda run: run["fps"] or 0.0)[len(measured) // 2]
    return {"size": f"{clip.width}x{clip.height}", "camera_fps": clip.fps, "model": model, "runs": measured,
            "runtime": runtime,
            "best_fps": max(rates), "median_fps": statistics.median(rates), "median_run_ms": median_run["median_ms"],
            "median_run_p90_frame_ms": median_run["p90_frame_ms"],
            "median_run_p90_main_ms": median_run.get("p90_main_ms"),
            "median_run_detection_frame_ms": median_run["detection_frame_ms"],
            "median_run_dropped_share": dropped_share(median_run), "model_stage": median_run.get("where"),
            "median_run_with_face": median_run.get("with_face"), "drawn_by": median_run.get("drawn_by"),
            "median_first_face_s": statistics.median(run["first_face_s"] for run in measured)}


def dropped_share(run: dict) -> float | None:
    """The camera's frames the page never made up, as a share of all it delivered."""
    if run.get("dropped") is None or not run["frames"]:
        return None
    return run["dropped"] / (run["dropped"] + run["frames"])


def measure_camera(artifacts: Path, rates: tuple[int, ...] = CAMERA_FPS) -> tuple[list[dict] | None, str]:
    """(figures per camera rate or None, the row's note on them)."""
    try:
        cameras = [camera_figures(artifacts, clip=replace(CAMERA_CLIP, fps=fps)) for fps in rates]
    except (BrowserUnavailable, PageError) as why:
        return None, f"camera: not run ({why})"
    return cameras, "; ".join(camera_note(camera) for camera in cameras)


def camera_note(camera: dict) -> str:
    stages = ", ".join(f"{stage} {ms:.1f}" for stage, ms in camera["median_run_ms"].items() if ms is not None)
    share = camera.get("median_run_dropped_share")
    detector = (f"a frame that runs the detector {camera['median_run_detection_frame_ms']:.0f} ms"
                if camera["median_run_detection_frame_ms"] else "the detector in a worker")
    return (f"camera {camera['size']} at {camera['camera_fps']} frames/s (fake camera, a moving face; "
            f"{camera.get('model', CAMERA_MODEL)} in {camera.get('runtime', 'the page')}): "
            f"{camera['median_fps']:.1f} frames/s made up (median of {len(camera['runs'])} pages, best "
            f"{camera['best_fps']:.1f}), frames dropped {'not counted' if share is None else f'{100 * share:.0f}%'}; "
            f"model stage in the {camera.get('model_stage') or 'page'}; frames onto the page by "
            f"{camera.get('drawn_by') or 'drawImage'}; median ms per frame: {stages}; p90 frame "
            f"{camera['median_run_p90_frame_ms'] or 0:.1f} ms, p90 of the page's own work "
            f"{camera.get('median_run_p90_main_ms') or 0:.1f} ms; {detector}; a face on "
            f"{100 * (camera.get('median_run_with_face') or 0):.0f}% of the frames, the first "
            f"{camera['median_first_face_s']:.1f} s after the camera started")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.browser", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="exported set (default: %(default)s)")
    parser.add_argument("--camera", action="store_true", help="the camera figure only (the rest runs in `make bench`)")
    parser.add_argument("--runs", type=int, default=CAMERA_RUNS, help="fresh pages (default: %(default)s)")
    parser.add_argument("--fps", type=int, nargs="+", default=list(CAMERA_FPS),
                        help="the fake camera's frame rates (default: %(default)s)")
    parser.add_argument("--model", default=CAMERA_MODEL, help="the file of --artifacts the page runs (default: the "
                        "page's own default, %(default)s; tinybeauty.onnx runs in onnxruntime-web)")
    parser.add_argument("--threads", type=int, default=None, help="its runtime's wasm threads (default: the page's)")
    parser.add_argument("--model-stage", choices=sorted(MODEL_STAGES), default="auto",
                        help="where the page runs the camera's model: its own choice by the cores (auto), its "
                             "worker or the frame loop (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.camera:
        parser.error("only --camera runs alone; the browser row runs in `python -m benchmark`")
    for fps in args.fps:
        try:
            camera = camera_figures(args.artifacts, args.runs, clip=replace(CAMERA_CLIP, fps=fps),
                                    query=MODEL_STAGES[args.model_stage], model=args.model, threads=args.threads)
        except (BrowserUnavailable, PageError) as why:
            print(f"not run: {why}", file=sys.stderr)
            return 2
        print(json.dumps(camera, indent=1))
        print(camera_note(camera))
    return 0


if __name__ == "__main__":
    sys.exit(main())
