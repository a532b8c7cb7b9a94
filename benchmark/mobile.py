"""How an ONNX file will run on phones: onnxruntime's mobile usability checker, and where its CPU time goes.

:func:`mobile_usability` is ``python -m onnxruntime.tools.check_onnx_model_mobile_usability FILE``
run in-process, its verdict as figures: for NNAPI (Android) and Core ML (iOS), how many partitions
the graph splits into, how many nodes the accelerator takes, how many it refuses for a dynamic
input shape, and the checker's "should perform well" (YES / MAYBE / NO). More than one partition
means copies between the accelerator and the CPU at every border, which the checker counts as NO.
:func:`op_profile` is onnxruntime's own profile, ms per op type per run.

Usage: ``python -m benchmark.mobile artifacts/tinybeauty.onnx [--threads 1] [--runs 300]``, or with
``--against OLD.onnx ...`` the latency of the files interleaved in one process instead.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from export.common import LOOKS_INPUT_NAME

# The checker's op tables for each accelerator (files shipped in onnxruntime/tools/mobile_helpers/).
COREML_OPS = {"coreml_mlprogram": "coreml_supported_mlprogram_ops.md",
              "coreml_neuralnetwork": "coreml_supported_neuralnetwork_ops.md"}
PROFILE_WARMUP_RUNS = 20


def _verdict(info) -> dict:
    return {"partitions": info.num_partitions, "supported_nodes": info.num_supported_nodes, "nodes": info.num_nodes,
            "dynamic_shape_nodes": info.nodes_unsupported_due_to_dynamic_input,
            "unsupported_ops": sorted(info.unsupported_ops), "should_perform_well": info.suitability().name}


def mobile_usability(path: Path) -> dict:
    """The checker's figures for ``path``: ``{"dynamic_values", "nnapi", "coreml_mlprogram",
    "coreml_neuralnetwork"}``, each accelerator's a dict of :func:`_verdict`. Like the command, it
    first optimizes the graph at onnxruntime's BASIC level (what an ORT-format conversion does)."""
    from onnxruntime.tools.mobile_helpers import usability_checker as checker
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / Path(path).name
        optimize_model(Path(path), optimized, use_external_initializers=True)
        model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
    logging.getLogger("usability_checker").setLevel(logging.ERROR)  # check_shapes warns through it
    _, dynamic_values = checker.check_shapes(model.graph)
    figures = {"dynamic_values": dynamic_values, "nnapi": _verdict(checker.check_nnapi_partitions(model, True))}
    for name, table in COREML_OPS.items():
        figures[name] = _verdict(checker.check_coreml_partitions(model, True, table))
    return figures


def shipped_onnx_usability(artifacts: Path) -> dict | None:
    """The report's phone section: the checker's figures for the shipped int8 ONNX of ``artifacts``
    (None for a set exported without it)."""
    from export.formats import BY_NAME

    path = Path(artifacts) / BY_NAME["onnx"].filename
    return {"file": str(path), **mobile_usability(path)} if path.is_file() else None


def markdown_lines(mobile: dict | None) -> list[str]:
    """One line per accelerator for report.md; nothing for a report without the section."""
    if not mobile:
        return []
    lines = ["", f"Phones: onnxruntime's mobile checker on {Path(mobile['file']).name} "
                 "(after its BASIC-level optimization; "
             f"{mobile['dynamic_values']} values of dynamic shape):"]
    for name, label in (("nnapi", "NNAPI (Android)"), ("coreml_mlprogram", "Core ML ML Program (iOS)")):
        v = mobile[name]
        refused = f"; unsupported ops {', '.join(v['unsupported_ops'])}" if v["unsupported_ops"] else ""
        lines.append(f"- {label}: {v['partitions']} partition(s), {v['supported_nodes']}/{v['nodes']} nodes, "
                     f"{v['dynamic_shape_nodes']} refused for a dynamic shape{refused}; should perform well: "
                     f"{v['should_perform_well']}" + (" (iOS apps ship the Core ML files)" if name != "nnapi" else ""))
    return lines


def op_profile(path: Path, threads: int = 1, runs: int = 300) -> dict[str, dict]:
    """onnxruntime's profile of ``path`` on a random face: per op type, ``{"ms", "min_ms", "nodes"}``,
    the median over runs (and the least) of that type's summed kernel time in one run. A median
    per op, not a mean: on a shared machine a run that loses the CPU charges it to one op only."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        options.enable_profiling, options.profile_file_prefix = True, os.path.join(tmp, "profile")
        session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        feed = random_feed(session)
        for _ in range(PROFILE_WARMUP_RUNS + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    return _per_op(events, PROFILE_WARMUP_RUNS)


def random_feed(session) -> dict[str, np.ndarray]:
    """Values in [0, 1] for every input of an onnxruntime session: the face, and a region-input or several-look file's
    maps and look weights (an even blend), so every file runs as an app runs it."""
    generator = np.random.default_rng(0)
    return {given.name: np.full(given.shape, 1 / given.shape[-1], np.float32) if given.name == LOOKS_INPUT_NAME
            else generator.random(given.shape, dtype=np.float32) for given in session.get_inputs()}


def interleaved_latency(paths: list[Path], threads: int = 1, rounds: int = 2000) -> list[dict]:
    """Batch-1 latency of several .onnx files in one process, one run of each in turn (the order
    reversed every other round), so that a shared machine's load falls on all alike. Per file
    ``{"median_ms", "p10_ms", "min_ms", "paired_median_ms"}``, the last the median of its run minus
    the first file's run of the same round."""
    import time

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    sessions = [ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"]) for path in paths]
    feeds = [random_feed(s) for s in sessions]
    for session, feed in zip(sessions, feeds, strict=True):
        for _ in range(PROFILE_WARMUP_RUNS):
            session.run(None, feed)
    ms = np.zeros((rounds, len(sessions)))
    for r in range(rounds):
        for k in range(len(sessions)) if r % 2 == 0 else reversed(range(len(sessions))):
            start = time.perf_counter()
            sessions[k].run(None, feeds[k])
            ms[r, k] = (time.perf_counter() - start) * 1000
    return [{"file": str(path), "median_ms": float(np.median(ms[:, k])), "p10_ms": float(np.percentile(ms[:, k], 10)),
             "min_ms": float(ms[:, k].min()), "paired_median_ms": float(np.median(ms[:, k] - ms[:, 0]))}
            for k, path in enumerate(paths)]


def _per_op(events: list[dict], skip_runs: int) -> dict[str, dict]:
    starts = np.array([e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run"])
    times: dict[str, np.ndarray] = collections.defaultdict(lambda: np.zeros(len(starts)))
    nodes: dict[str, set] = collections.defaultdict(set)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            times[op][np.searchsorted(starts, event["ts"], side="right") - 1] += event["dur"] / 1000
            nodes[op].add(event["name"])
    table = {op: {"ms": float(np.median(ms[skip_runs:])), "min_ms": float(ms[skip_runs:].min()),
                  "nodes": len(nodes[op])} for op, ms in times.items()}
    return dict(sorted(table.items(), key=lambda item: -item[1]["ms"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.mobile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="an .onnx file")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the profile (default: 1)")
    parser.add_argument("--runs", type=int, default=300, help="profiled runs (default: %(default)s)")
    parser.add_argument("--against", type=Path, nargs="+", default=[],
                        help="other .onnx files: latency of MODEL and these, interleaved in one process")
    args = parser.parse_args(argv)
    for path in [args.model, *args.against]:
        if not path.is_file():
            parser.error(f"{path} not found: pass an exported .onnx file (make export writes artifacts/)")
    if args.against:
        for row in interleaved_latency([*args.against, args.model], args.threads):
            print(f"{row['file']}: median {row['median_ms']:.2f} ms, p10 {row['p10_ms']:.2f}, least "
                  f"{row['min_ms']:.2f}; paired median vs the first {row['paired_median_ms']:+.3f} ms")
        return 0
    for accelerator, verdict in mobile_usability(args.model).items():
        print(f"{accelerator}: {verdict}")
    profile = op_profile(args.model, args.threads, args.runs)
    print(f"\nonnxruntime profile, {args.threads} thread(s), ms per run (median over {args.runs} runs; least):")
    for op, row in profile.items():
        print(f"  {op:18s} {row['ms']:6.3f}  ({row['min_ms']:.3f})  {row['nodes']} node(s)")
    print(f"  {'sum':18s} {sum(row['ms'] for row in profile.values()):6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
