"""Export a TinyBeauty checkpoint to the files a mobile app ships, check each one, gate the size.

Usage:
    python -m export                                   # tinybeauty_model/tinybeauty_best_psnr.pt -> artifacts/
    python -m export --checkpoint PATH --out DIR [--formats onnx ptl] [--budget-bytes 100000]

Writes DIR/tinybeauty.onnx (int8), DIR/tinybeauty.mlmodel (8-bit weights), DIR/tinybeauty.ptl
(int8), DIR/manifest.json, and the unshipped fp32 reference DIR/reference/tinybeauty_fp32.onnx
(a subfolder, so every file at the top of DIR is one an app ships).

Every file is exported into DIR/.staging, loaded back with its real runtime and run on
validation faces (Core ML off macOS: spec and stored-weights checks instead, and the report
says so). Only when every file passes (shipped files under --budget-bytes, ground-truth PSNR
within --max-psnr-drop of PyTorch) are they renamed into DIR, so a failed export never
replaces the previous good artifacts. Exit code 1 on a failed check, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from export.common import (
    DEFAULT_BUDGET_BYTES,
    DEFAULT_MAX_PSNR_DROP_DB,
    ExportInputs,
    ExportMeta,
    RuntimeUnavailable,
    git_commit,
    parity,
    run_in_batches_of_one,
    sha256_file,
    staged_path,
)
from export.formats import BY_NAME, FORMATS, ExportFormat
from models.atomic import write_text
from models.checkpoint import CheckpointError, load_checkpoint
from models.metrics import psnr_db
from models.tinybeauty import TinyBeauty
from train.data import DataError, faces_as_tensors, load_training_split

log = logging.getLogger("export")

MANIFEST = "manifest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("tinybeauty_model/tinybeauty_best_psnr.pt"),
                        help="checkpoint to export (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("artifacts"), help="artifact folder (default: %(default)s)")
    parser.add_argument("--data", help="pairs for calibration and checks (default: the data the checkpoint was trained on)")
    parser.add_argument("--formats", nargs="+", choices=sorted(BY_NAME), default=[f.name for f in FORMATS],
                        help="formats to export (default: all)")
    parser.add_argument("--budget-bytes", type=int, default=DEFAULT_BUDGET_BYTES,
                        help="size limit of every shipped file (default: %(default)s)")
    parser.add_argument("--max-psnr-drop", type=float, default=DEFAULT_MAX_PSNR_DROP_DB,
                        help="largest ground-truth PSNR loss vs PyTorch, dB (default: %(default)s)")
    parser.add_argument("--calibration-images", type=int, default=64,
                        help="training faces for int8 calibration (default: %(default)s)")
    parser.add_argument("--val-images", type=int, default=32, help="validation faces for the checks (default: %(default)s)")
    return parser.parse_args(argv)


def prepare_inputs(checkpoint: dict, data_override: str | None, n_calibration: int, n_val: int) -> ExportInputs:
    """Calibration faces from the training split, check faces from the validation split (same seed)."""
    cache, train_idx, val_idx = load_training_split(checkpoint.get("train_config", {}), data_override)
    calibration, _ = faces_as_tensors(cache, train_idx[:n_calibration])
    val_source, val_target = faces_as_tensors(cache, val_idx[:n_val])
    return ExportInputs(val_source[:1].clone(), calibration, val_source, val_target)


def check_artifact(fmt: ExportFormat, path: Path, model: TinyBeauty, inputs: ExportInputs,
                   reference: torch.Tensor, budget: int, max_drop: float) -> dict:
    """Size, then the real runtime (or the format's stand-in), then parity. Returns the record."""
    size_bytes = path.stat().st_size
    record = {"format": fmt.name, "file": fmt.filename, "shipped": fmt.shipped, "precision": fmt.precision,
              "runtime": fmt.runtime, "bytes": size_bytes, "budget_bytes": budget if fmt.shipped else None,
              "sha256": sha256_file(path), "checks_run": [], "checks_skipped": [], "problems": []}
    if fmt.shipped:
        record["checks_run"].append(f"size: {size_bytes:,} bytes of a {budget:,}-byte budget")
        if size_bytes > budget:
            record["problems"].append(f"{size_bytes:,} bytes is over the {budget:,}-byte budget")
    n = len(inputs.val_source)
    try:
        outputs = run_in_batches_of_one(fmt.load(path), inputs.val_source.numpy())
        record["checks_run"].append(f"ran with {fmt.runtime} on {n} validation faces")
    except RuntimeUnavailable as why:
        record["checks_skipped"].append(f"prediction with {fmt.runtime}: {why}")
        if fmt.stand_in is None:
            record["problems"].append(f"no runtime and no stand-in check: {why}")
            outputs = None
        else:
            outputs, checks = fmt.stand_in(path, model, inputs.val_source)
            record["checks_run"] += checks
    if outputs is not None:
        record |= parity(outputs, reference, inputs.val_target)
        record["pytorch_psnr_vs_truth_db"] = psnr_db(reference, inputs.val_target)
        record["psnr_drop_db"] = record["pytorch_psnr_vs_truth_db"] - record["psnr_vs_truth_db"]
        record["checks_run"].append(f"parity on {n} validation faces: {record['psnr_vs_pytorch_db']:.2f} dB vs "
                                    f"PyTorch, {record['psnr_vs_truth_db']:.2f} dB vs truth")
        if not np.isfinite(outputs).all():
            record["problems"].append("output has NaN or infinity")
        if record["psnr_drop_db"] > max_drop:
            record["problems"].append(f"loses {record['psnr_drop_db']:.2f} dB of ground-truth PSNR vs PyTorch "
                                      f"({record['psnr_vs_truth_db']:.2f} vs {record['pytorch_psnr_vs_truth_db']:.2f}), "
                                      f"over the {max_drop} dB limit")
    record["passed"] = not record["problems"]
    return record


def format_table(records: list[dict]) -> str:
    lines = ["| format | file | bytes | % of budget | PSNR vs PyTorch | PSNR vs truth | status |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in records:
        pct = f"{100 * r['bytes'] / r['budget_bytes']:.1f}%" if r.get("budget_bytes") else "not shipped"
        vs_pt = f"{r['psnr_vs_pytorch_db']:.2f} dB" if "psnr_vs_pytorch_db" in r else "not measured"
        vs_gt = f"{r['psnr_vs_truth_db']:.2f} dB" if "psnr_vs_truth_db" in r else "not measured"
        note = "pass" if r["passed"] else "FAIL: " + "; ".join(r["problems"])
        if r["checks_skipped"] and r["passed"]:
            note += " (stand-in checks; " + "; ".join(r["checks_skipped"]) + ")"
        lines.append(f"| {r['format']} | {r['file']} | {r['bytes']:,} | {pct} | {vs_pt} | {vs_gt} | {note} |")
    return "\n".join(lines)


def install(records: list[dict], staging: Path, out: Path, manifest: dict) -> None:
    """Move every checked file into place, then the manifest (each rename is atomic)."""
    for record in records:
        (out / record["file"]).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / record["file"], out / record["file"])
    write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        model, checkpoint = load_checkpoint(args.checkpoint)
        inputs = prepare_inputs(checkpoint, args.data, args.calibration_images, args.val_images)
    except (CheckpointError, DataError) as error:
        log.error("%s", error)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    meta = ExportMeta(checkpoint=str(args.checkpoint), checkpoint_sha256=sha256_file(args.checkpoint),
                      git_commit=git_commit(), val_psnr_db=float(checkpoint.get("val_psnr", float("nan"))),
                      image_size=inputs.image_size, extra={"epoch": checkpoint.get("epoch", "?")})
    with torch.no_grad():
        reference = model(inputs.val_source)
    records = []
    for index, name in enumerate(args.formats, start=1):
        fmt = BY_NAME[name]
        log.info("[%d/%d] %s -> %s", index, len(args.formats), fmt.name, fmt.filename)
        path = staged_path(args.out, fmt.filename)
        start = time.perf_counter()
        try:
            fmt.export(model, inputs, path, meta)
        except Exception as error:  # a converter failure is reported, never a half-written artifact
            log.error("%s export failed: %s: %s", fmt.name, type(error).__name__, error)
            records.append({"format": fmt.name, "file": fmt.filename, "bytes": 0, "passed": False,
                            "checks_run": [], "checks_skipped": [], "problems": [f"export failed: {error}"]})
            continue
        record = check_artifact(fmt, path, model, inputs, reference, args.budget_bytes, args.max_psnr_drop)
        record["export_s"] = round(time.perf_counter() - start, 2)
        record |= {"input": meta.as_strings()["tinybeauty.input"], "output": meta.as_strings()["tinybeauty.output"],
                   "checkpoint": meta.checkpoint, "checkpoint_sha256": meta.checkpoint_sha256}
        for check in record["checks_run"]:
            log.info("    %s", check)
        for skipped in record["checks_skipped"]:
            log.info("    skipped %s", skipped)
        records.append(record)

    print("\n" + format_table(records) + "\n")
    failed = [r for r in records if not r["passed"]]
    if failed:
        log.error("export failed for %s; nothing in %s was replaced (rejected files stay in %s)",
                  ", ".join(r["format"] for r in failed), args.out, args.out / ".staging")
        return 1
    manifest = {"checkpoint": str(args.checkpoint), "checkpoint_sha256": meta.checkpoint_sha256,
                "checkpoint_epoch": checkpoint.get("epoch"), "val_psnr_db": meta.val_psnr_db,
                "model_config": checkpoint["model_config"], "train_config": checkpoint.get("train_config", {}),
                "git_commit": meta.git_commit, "image_size": inputs.image_size, "budget_bytes": args.budget_bytes,
                "max_psnr_drop_db": args.max_psnr_drop, "val_images": len(inputs.val_source),
                "calibration_images": len(inputs.calibration), "artifacts": records}
    install(records, args.out / ".staging", args.out, manifest)
    log.info("wrote %s and %s", ", ".join(r["file"] for r in records), args.out / MANIFEST)
    return 0


if __name__ == "__main__":
    sys.exit(main())
