"""Export a TinyBeauty checkpoint to the files a mobile app ships, check each one, gate the size.

Usage:
    python -m export                                   # tinybeauty_model/tinybeauty_best_psnr.pt -> artifacts/
    python -m export --checkpoint PATH --out DIR [--formats onnx ptl] [--budget-bytes 100000]

Writes one file per format of export/formats.py (tinybeauty.onnx, .mlmodel, .mlpackage, .ptl,
.pte, .tflite), DIR/manifest.json, and the unshipped fp32 reference DIR/reference/tinybeauty_fp32.onnx
(a subfolder, so every file at the top of DIR is one an app ships).

Calibration faces come from the checkpoint's recorded training split and check faces from
its recorded validation split (names and content hashes in the checkpoint; a missing or
changed file is an error), never from the test split.

The whole set is built in .DIR.staging.PID beside DIR (PID: this run's process id, so two
exports into one DIR at once never touch each other's files): every file is exported there, loaded back
with its real runtime and run on validation faces (Core ML off macOS: spec and stored-weights
checks instead, and the report says so). Only when every file passes (shipped files under
--budget-bytes, ground-truth PSNR within --max-psnr-drop of PyTorch) does the staged folder,
manifest included, replace DIR as a whole; so a reader never sees files of two exports, and a
failed export (a failed check or an unexpected error) leaves the previous set untouched (and its
own rejected set for inspection, until the next export into DIR). Two exports into one DIR at once
each put their whole set in place; the last to finish stays. The set holds exactly the formats
exported this time. Exit code 1 on a failed check, 2 on bad input.

Refused before any work (exit 2): an --out that is a file, that cannot be written, or that is a
folder holding files but no manifest.json (not an artifact set: replacing it would delete them);
a checkpoint whose weights, or whose outputs on the check faces, hold NaN or infinity.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export.formats import BY_NAME, FORMATS
from models.cli import finite_float, output_folder, positive_int
from models.gates import MAX_PSNR_DROP_DB, SIZE_BUDGET_BYTES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("tinybeauty_model/tinybeauty_best_psnr.pt"),
                        help="checkpoint to export (default: %(default)s)")
    parser.add_argument("--out", type=output_folder, default="artifacts",
                        help="artifact folder, replaced as a whole (default: %(default)s)")
    parser.add_argument("--data",
                        help="where the checkpoint's data lives now, if it moved (default: the recorded folder)")
    parser.add_argument("--formats", nargs="+", choices=sorted(BY_NAME), default=[f.name for f in FORMATS],
                        help="formats to export (default: all)")
    parser.add_argument("--budget-bytes", type=positive_int, default=SIZE_BUDGET_BYTES,
                        help="size limit of every shipped file (default: %(default)s)")
    parser.add_argument("--max-psnr-drop", type=finite_float, default=MAX_PSNR_DROP_DB,
                        help="largest ground-truth PSNR loss vs PyTorch, dB (default: %(default)s)")
    parser.add_argument("--calibration-images", type=positive_int, default=64,
                        help="training faces for int8 calibration (default: %(default)s)")
    parser.add_argument("--val-images", type=positive_int, default=32,
                        help="validation faces for the checks (default: %(default)s)")
    parser.add_argument("--no-equalize", action="store_true",
                        help="export the weights as trained, without the float-exact skip rescaling that int8 "
                             "concatenation needs (models/rescale.py); for comparisons")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # torch, the converters and the data come in with the work (export/pipeline.py): --help and
    # argument errors answer at once.
    from export.pipeline import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
