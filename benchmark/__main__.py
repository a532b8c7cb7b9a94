"""Benchmark every exported artifact: quality against truth and PyTorch, and CPU latency.

Usage:
    python -m benchmark                          # artifacts/manifest.json -> bench/
    python -m benchmark --artifacts DIR --out DIR [--threads 1 2] [--min-psnr 34] [--max-drop 0.5]

Before anything is scored, every artifact is checked against the manifest's sha256, and the
checkpoint at the manifest's path against the sha256 it was exported from: an altered file or
a set exported from another checkpoint (retrained, not re-exported) stops with exit 2 and says
to re-export.

Quality on the checkpoint's recorded splits: the held-out **test** split is the headline
(nothing tunes on it: not the schedule, not the best checkpoint, not the export gate), the
validation split beside it, and on the built-in data the real-photo test split (test-real: one
person's portraits, never trained on; train/builtin.py). PSNR is the mean of per-image PSNR (the
paper's convention), the pooled figure (one MSE over all pixels) beside it; SSIM; each artifact's
PSNR against the PyTorch output; the no-makeup baseline (input vs target). The browser rows run the web page in
headless Chromium on the shipped ONNX (onnxruntime-web) and .tflite (LiteRT.js), both wasm
(benchmark/browser.py).
Latency per runtime at batch 1 and each thread count: median, p90, images/s, and the share of
this machine's measured fp32 matmul peak. A format that cannot run here (Core ML off macOS) shows
its stand-in check's figures, marked, and no latency.

Writes OUT/report.json (machine, versions, every figure), OUT/report.md (the table),
OUT/latency_size.png (latency and size per format) and OUT/samples.png (outputs side by side).
Exits 1 when a quality gate fails on the headline split: an artifact more than --max-drop dB
below the PyTorch reference on ground truth, or any model under --min-psnr (default on the
built-in data: the quality bar of models/gates.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.cli import finite_float, non_negative_float, output_folder, positive_int
from models.gates import MAX_PSNR_DROP_DB, QUALITY_BAR_DB


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                        help="folder with manifest.json (default: %(default)s)")
    parser.add_argument("--out", type=output_folder, default="bench", help="report folder (default: %(default)s)")
    parser.add_argument("--data",
                        help="where the checkpoint's data lives now, if it moved (default: the recorded folder)")
    parser.add_argument("--images", type=positive_int, default=None,
                        help="score on N pairs of each split, spread evenly (default: every pair)")
    parser.add_argument("--threads", type=positive_int, nargs="+", default=None,
                        help="thread counts for latency (default: 1 and every core this process may use)")
    parser.add_argument("--min-runs", type=positive_int, default=30,
                        help="latency runs per measurement, at least (default: %(default)s)")
    parser.add_argument("--min-seconds", type=non_negative_float, default=2.0,
                        help="latency seconds per measurement, at least (default: %(default)s)")
    parser.add_argument("--no-browser", action="store_true",
                        help="leave out the browser row (the page in headless Chromium, ~10-60 s)")
    parser.add_argument("--no-live", action="store_true",
                        help="leave out the live section (a 720p video through apply, tracking; ~40-60 s)")
    parser.add_argument("--max-drop", type=finite_float, default=MAX_PSNR_DROP_DB,
                        help="gate: largest dB below PyTorch on truth (default: %(default)s)")
    parser.add_argument("--min-psnr", type=finite_float, default=None,
                        help=f"gate: lowest PSNR vs truth, dB (default: {QUALITY_BAR_DB} on the built-in data, "
                             "none otherwise)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # torch, the runtimes and the data come in with the work (benchmark/suite.py): --help and
    # argument errors answer at once.
    from benchmark.suite import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
