"""Benchmark every exported artifact: quality against truth and PyTorch, and CPU latency.

Usage:
    python -m benchmark                          # artifacts/manifest.json -> bench/
    python -m benchmark --artifacts DIR --out DIR [--threads 1 2] [--min-psnr 34] [--max-drop 0.5]

Quality on the validation split (same data and seed as training): PSNR and SSIM against the
ground truth for each artifact, the PyTorch fp32 reference and the no-makeup baseline (input
vs target), plus each artifact's PSNR against the PyTorch output. Latency per runtime at batch
1 and each thread count: median, p90, images/s, and the share of this machine's measured fp32
matmul peak. Core ML cannot run off macOS: its row says which stand-in checks ran and shows no
latency it did not measure.

Writes OUT/report.json (machine, versions, every figure), OUT/report.md (the table),
OUT/latency_size.png (latency and size per format) and OUT/samples.png (outputs side by side).
Exits 1 when a quality gate fails: an artifact more than --max-drop dB below the PyTorch
reference on ground truth, or any model under --min-psnr (default 34 dB on the built-in data).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from benchmark.latency import measure_latency, peak_gflops
from benchmark.report import write_reports
from benchmark.runtimes import pytorch_runner
from export.common import RuntimeUnavailable, run_in_batches_of_one
from export.formats import BY_NAME
from models.checkpoint import CheckpointError, load_checkpoint
from models.metrics import psnr_db, ssim
from models.tinybeauty import count_macs, count_parameters
from train.data import DataError, faces_as_tensors, load_training_split

log = logging.getLogger("benchmark")

EMBEDDED_MIN_PSNR_DB = 34.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="folder with manifest.json (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="report folder (default: %(default)s)")
    parser.add_argument("--data", help="pairs to score on (default: the data the checkpoint was trained on)")
    parser.add_argument("--val-images", type=int, default=None, help="score on the first N validation pairs (default: all)")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="thread counts for latency (default: 1 and all cores)")
    parser.add_argument("--min-runs", type=int, default=30, help="latency runs per measurement, at least (default: %(default)s)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="latency seconds per measurement, at least (default: %(default)s)")
    parser.add_argument("--max-drop", type=float, default=0.5, help="gate: largest dB below PyTorch on truth (default: %(default)s)")
    parser.add_argument("--min-psnr", type=float, default=None,
                        help=f"gate: lowest PSNR vs truth, dB (default: {EMBEDDED_MIN_PSNR_DB} on the built-in data, none otherwise)")
    return parser.parse_args(argv)


def quality(outputs: np.ndarray, source: torch.Tensor, target: torch.Tensor, reference: torch.Tensor | None) -> dict:
    made_up = torch.from_numpy(np.asarray(outputs, np.float32))
    row = {"psnr_vs_truth_db": psnr_db(made_up, target), "ssim_vs_truth": ssim(made_up, target)}
    if reference is not None:
        row["psnr_vs_pytorch_db"] = psnr_db(made_up, reference)
    return row


def latency_by_threads(make_runner, example: np.ndarray, threads: list[int], args: argparse.Namespace) -> dict:
    """Batch-1 latency of a fresh runner at each thread count (a runtime fixes threads when built)."""
    figures = {}
    for count in threads:
        runner = make_runner(count)
        figures[str(count)] = measure_latency(lambda: runner(example), min_runs=args.min_runs, min_seconds=args.min_seconds)  # noqa: B023
    return figures


def machine_info(thread_counts: list[int]) -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import coremltools
    import onnx
    import onnxruntime

    return {
        "platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
                     "coremltools": coremltools.__version__, "numpy": np.__version__},
        "peak_fp32_gflops": {str(t): peak_gflops(t) for t in thread_counts},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    manifest_path = args.artifacts / "manifest.json"
    if not manifest_path.is_file():
        log.error("%s not found; run `make export` (or python -m export --out %s) first", manifest_path, args.artifacts)
        return 2
    manifest = json.loads(manifest_path.read_text())
    try:
        model, checkpoint = load_checkpoint(Path(manifest["checkpoint"]))
        train_config = checkpoint.get("train_config", {})
        cache, _, val_idx = load_training_split(train_config, args.data, manifest["image_size"])
    except (CheckpointError, DataError) as error:
        log.error("%s", error)
        return 2
    source, target = faces_as_tensors(cache, val_idx[: args.val_images])
    embedded = not train_config.get("data") and not args.data
    min_psnr = args.min_psnr if args.min_psnr is not None else (EMBEDDED_MIN_PSNR_DB if embedded else None)
    threads = args.threads or sorted({1, os.cpu_count() or 1})
    log.info("scoring on %d validation pairs; latency at %s thread(s)", len(source), threads)

    with torch.no_grad():
        reference = model(source)
    example = source[:1].numpy()
    rows = [{"name": "no makeup (input)", "format": "baseline", "bytes": None,
             **quality(source.numpy(), source, target, None), "latency": {}, "notes": ["untouched input vs target"]}]
    rows.append({"name": "PyTorch fp32 (reference)", "format": "pytorch", "file": manifest["checkpoint"],
                 "bytes": count_parameters(model) * 4, "runtime": "PyTorch eager fp32",
                 **quality(reference.numpy(), source, target, reference),
                 "latency": latency_by_threads(lambda t: pytorch_runner(model, t), example, threads, args),
                 "notes": ["bytes: parameters x 4 (fp32 weights)"]})
    samples = {"input": source[:4], "target": target[:4], "PyTorch fp32": reference[:4]}
    for entry in manifest["artifacts"]:
        fmt, path = BY_NAME[entry["format"]], args.artifacts / entry["file"]
        log.info("%s: %s", fmt.name, path)
        row = {"name": f"{fmt.name} ({fmt.precision})", "format": fmt.name, "file": str(path), "shipped": fmt.shipped,
               "bytes": path.stat().st_size, "runtime": fmt.runtime, "latency": {}, "notes": []}
        try:
            outputs = run_in_batches_of_one(fmt.load(path), source.numpy())
            row["notes"].append(f"ran with {fmt.runtime}")
            row["latency"] = latency_by_threads(lambda t, fmt=fmt, path=path: fmt.load(path, t), example, threads, args)
        except RuntimeUnavailable as why:
            outputs, checks = fmt.stand_in(path, model, source)
            row["notes"] += [f"not run: {why}", "quality from the stand-in: " + checks[-1], "latency: not measured"]
            row["stand_in"] = True
        row |= quality(outputs, source, target, reference)
        samples[fmt.name] = torch.from_numpy(outputs[:4])
        rows.append(row)

    macs = count_macs(model, source.shape[-2], source.shape[-1])
    info = machine_info(threads)
    for row in rows:
        for t, figures in row["latency"].items():
            achieved = 2 * macs / (figures["median_ms"] / 1000) / 1e9
            figures["gflops"] = achieved
            figures["share_of_fp32_peak"] = achieved / info["peak_fp32_gflops"][t]

    reference_truth = rows[1]["psnr_vs_truth_db"]
    failures = []
    for row in rows[1:]:
        drop = reference_truth - row["psnr_vs_truth_db"]
        if drop > args.max_drop:
            failures.append(f"{row['name']}: {drop:.2f} dB below PyTorch on truth (limit {args.max_drop} dB)")
        if min_psnr is not None and row["psnr_vs_truth_db"] < min_psnr:
            failures.append(f"{row['name']}: {row['psnr_vs_truth_db']:.2f} dB vs truth, under the {min_psnr} dB bar")
    report = {"machine": info, "manifest": str(manifest_path), "checkpoint": manifest["checkpoint"],
              "val_pairs": len(source), "image_size": int(source.shape[-1]), "macs": macs,
              "parameters": count_parameters(model), "threads": threads,
              "gates": {"max_drop_db": args.max_drop, "min_psnr_db": min_psnr, "failures": failures}, "rows": rows}
    paths = write_reports(report, samples, args.out)
    print("\n" + paths["markdown_table"] + "\n")
    log.info("wrote %s", ", ".join(str(p) for k, p in paths.items() if k != "markdown_table"))
    if failures:
        for failure in failures:
            log.error("gate failed: %s", failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
