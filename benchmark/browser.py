"""The browser row: the shipped ONNX run by the web page in headless Chromium (onnxruntime-web, wasm).

Every face goes through the page's own file input (decode, face box, model, residual), written
first as the PNG its pixels came from, so the page sees exactly the benchmark's input. Latency
is the page's batch-1 model time (performance.now() around ``session.run``, in a normal
headless run, not virtual time), one fresh page per thread count: onnxruntime-web fixes its
thread count when its wasm module starts.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmark.latency import summarize
from web.browser import BrowserPage, BrowserUnavailable, PageError, write_face_png

log = logging.getLogger(__name__)

MODEL_FILE = "tinybeauty.onnx"


def browser_row(artifacts: Path, manifest: dict, faces: dict[str, tuple[torch.Tensor, torch.Tensor]],
                threads: list[int], min_runs: int, min_seconds: float) -> tuple[dict, dict[str, np.ndarray]]:
    """(row without quality, outputs per split); the row says 'not run' where no browser is installed."""
    entry = next((e for e in manifest["artifacts"] if e["file"] == MODEL_FILE), {})
    row = {"name": "onnx in Chromium (onnxruntime-web wasm)", "format": "browser", "file": str(artifacts / MODEL_FILE),
           "shipped": True, "bytes": entry.get("bytes"), "runtime": "onnxruntime-web (wasm) in Chromium",
           "latency": {}, "quality": {}, "notes": []}
    outputs: dict[str, np.ndarray] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="tinybeauty_browser_") as folder:
            photos = {part: [write_face_png(face.numpy(), Path(folder) / f"{part}_{i:04d}.png")
                             for i, face in enumerate(source)] for part, (source, _) in faces.items()}
            example = next(iter(photos.values()))[0]

            def time_page(page: BrowserPage) -> None:
                page.open(example)
                figures = summarize(page.time_model(min_runs, min_seconds))
                row["latency"][str(page.model_info["threads"])] = figures | {"session_ms": page.model_info["loadMs"]}

            # onnxruntime-web's default thread count (about half the cores): quality and its latency
            with BrowserPage(artifacts, MODEL_FILE) as page:
                page.set_mode("whole")  # aligned face crops, as `apply --aligned`
                info = page.model_info
                for part, files in photos.items():
                    log.info("browser: %d %s faces through the page", len(files), part)
                    outputs[part] = np.concatenate([page.make_up(path)["output"] for path in files])
                version = page.browser_version
                time_page(page)
            for count in sorted(set(threads) - {info["threads"]}):  # the report's other thread counts
                with BrowserPage(artifacts, MODEL_FILE, threads=count) as page:
                    page.set_mode("whole")
                    time_page(page)
    except (BrowserUnavailable, PageError) as why:
        row["notes"] += [f"not run: {why}", "latency: not measured"]
        return row, {}
    row["runtime"] = f"onnxruntime-web {info['ortVersion']} (wasm) in Chromium {version}"
    default = row["latency"][str(info["threads"])]["median_ms"]
    row["notes"] += [f"ran in {row['runtime']}, headless, through the page's file input",
                     f"onnxruntime-web's default: {info['threads']} thread(s), {default:.2f} ms; "
                     f"cross-origin isolated: {info['isolated']}",
                     f"session creation {info['loadMs']:.0f} ms"]
    return row, outputs
