"""The benchmark itself, run by ``python -m benchmark`` once its command line is parsed
(benchmark/__main__.py says what it measures): every artifact scored and timed, the reports written.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import platform
from pathlib import Path

import numpy as np
import torch

from benchmark.browser import browser_row, page_row_name
from benchmark.latency import available_cores, measure_latency, peak_gflops
from benchmark.live import live_section
from benchmark.mobile import shipped_onnx_usability
from benchmark.report import write_reports
from export.formats import BY_NAME
from export.manifest import ManifestError, check_source_checkpoint, read_manifest
from export.runtime import (
    RuntimeUnavailable,
    pytorch_runner,
    run_in_batches_of_one,
    silence_known_noise,
)
from models.checkpoint import CheckpointError, checkpoint_split, load_checkpoint
from models.data import REAL_TEST_SPLIT, DataError, PairCache, faces_as_tensors, load_split
from models.gates import QUALITY_BAR_DB
from models.metrics import db_of_mse, mse_per_image, ssim_per_image
from models.tinybeauty import count_macs, count_parameters
from web.server import PAGE_MODELS

log = logging.getLogger("benchmark")

RUNTIME_PACKAGES = ("torch", "onnxruntime", "playwright", "onnx", "coremltools", "executorch", "ai-edge-litert",
                    "litert-torch", "numpy")
SPLIT_LABELS = {"test": "test (held out)", "val": "validation", REAL_TEST_SPLIT: "real-photo test (held-out person)"}
REFERENCE_FORMAT = "pytorch"  # the row every artifact's drop is measured from
SAMPLE_FACES = 4  # faces per model in samples.png


def scores(outputs: np.ndarray, target: torch.Tensor, reference: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Each image's figures, computed once and summed up per split and per look by :func:`quality`: MSE and
    SSIM against the target, MSE against PyTorch's output (``reference``)."""
    made_up = torch.from_numpy(np.asarray(outputs, np.float32))
    figures = {"mse": mse_per_image(made_up, target), "ssim": ssim_per_image(made_up, target)}
    if reference is not None:
        figures["mse_vs_pytorch"] = mse_per_image(made_up, reference)
    return figures


def quality(figures: dict[str, torch.Tensor], rows: torch.Tensor | None = None) -> dict:
    """A split's (or, with ``rows``, a look's) quality from its images' :func:`scores`: the mean of per-image
    PSNR (the paper's), the pooled PSNR (one MSE over every pixel), the mean SSIM, the pooled PSNR against
    PyTorch (per-image PSNR of near-identical images hits the cap)."""
    picked = {name: values if rows is None else values[rows] for name, values in figures.items()}
    mse = picked["mse"]
    row = {"psnr_db": mean_db(mse), "psnr_pooled_db": db_of_mse(mse.mean().item()),
           "ssim": picked["ssim"].mean().item(), "pairs": len(mse)}
    if "mse_vs_pytorch" in picked:
        row["psnr_vs_pytorch_db"] = db_of_mse(picked["mse_vs_pytorch"].mean().item())
    if "pytorch_mse" in picked:  # a row scored on part of the faces: PyTorch on the same ones, for its gates
        row["pytorch_psnr_db"] = mean_db(picked["pytorch_mse"])
    return row


def mean_db(mse: torch.Tensor) -> float:
    """The mean of per-image PSNR from each image's MSE."""
    return float(np.mean([db_of_mse(value) for value in mse.tolist()]))


def latency_by_threads(make_runner, example: tuple[np.ndarray, ...], threads: list[int],
                       args: argparse.Namespace) -> dict:
    """Batch-1 latency of a fresh runner at each thread count (a runtime fixes threads when built);
    ``example``: (face,) or, for several looks, (face, look weights); for a model that reads region maps,
    (face, look weights or None, maps)."""
    figures = {}
    for count in threads:
        runner = make_runner(count)
        figures[str(count)] = measure_latency(lambda: runner(*example),  # noqa: B023 (called at once)
                                              min_runs=args.min_runs, min_seconds=args.min_seconds)
    return figures


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info(thread_counts: list[int]) -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(), "cpu": cpu, "cores": available_cores(), "python": platform.python_version(),
        "versions": {name: package_version(name) for name in RUNTIME_PACKAGES},
        "peak_fp32_gflops": {str(t): peak_gflops(t) for t in thread_counts},
    }


def region_tensors(model, cache: PairCache, root: Path) -> torch.Tensor | None:
    """The region maps of ``cache``'s faces for a model that reads them (None for one that reads none): each
    face's own, drawn from the face mesh on its decoded image as training draws them (train/region_maps.py;
    the shapes cached in ``root``, the data folder; empty maps where no face is found)."""
    names = tuple(model.config.region_inputs)
    if not names:
        return None
    from train.region_maps import region_maps, region_tensor

    return region_tensor(region_maps(cache, root, names))


def load_inputs(args: argparse.Namespace):
    """The verified manifest, the checkpoint it came from, the recorded test/val faces per split,
    for several looks, each face's look (one-hot rows, per split; each look's own recorded split, --images
    faces of each) and, for a model that reads region maps, each face's maps (N x K x S x S, per split)."""
    manifest = read_manifest(args.artifacts)
    checkpoint_path = check_source_checkpoint(manifest)
    model, checkpoint = load_checkpoint(checkpoint_path)
    split = checkpoint_split(checkpoint, checkpoint_path)
    if "looks" not in split:
        caches = {part: load_split(split, part, args.data, limit=args.images)
                  for part in SPLIT_LABELS if split.get(part)}
        root = Path(args.data or split["data"])
        regions = {part: region_tensors(model, cache, root) for part, cache in caches.items()}
        faces = {part: faces_as_tensors(cache) for part, cache in caches.items()}
        return manifest, model, checkpoint, faces, {}, {k: v for k, v in regions.items() if v is not None}
    records = list(split["looks"].items())
    faces, looks, regions = {}, {}, {}
    for part in SPLIT_LABELS:
        parts = []
        for index, (name, record) in enumerate(records):
            if record.get(part):
                root = Path(args.data) / name if args.data else Path(record["data"])
                cache = load_split(record, part, root if args.data else None, limit=args.images)
                parts.append((index, faces_as_tensors(cache), region_tensors(model, cache, root)))
        if parts:
            faces[part] = tuple(torch.cat(tensors) for tensors in zip(*(pair for _, pair, _ in parts), strict=True))
            looks[part] = torch.cat([torch.nn.functional.one_hot(torch.full((len(pair[0]),), index), len(records))
                                     for index, pair, _ in parts]).float()
            if model.config.region_inputs:
                regions[part] = torch.cat([maps for _, _, maps in parts])
    return manifest, model, checkpoint, faces, looks, regions


def by_look(figures: dict[str, dict[str, torch.Tensor]], looks: dict, names: list[str]) -> dict[str, dict[str, dict]]:
    """Each look's quality per split: its own faces (through its one-hot input), from the split's per-image
    ``figures`` (:func:`scores`)."""
    result = {}
    for index, name in enumerate(names):
        result[name] = {}
        for part, split_figures in figures.items():
            rows = looks[part][:, index] == 1
            if rows.any():
                result[name][part] = quality(split_figures, rows)
    return result


def score_rows(row: dict, outputs: dict[str, np.ndarray], faces: dict, references: dict | None, looks: dict,
               names: list[str], same_faces: bool = False) -> None:
    """Fill ``row``'s quality per split and, with several looks, per look, from ``outputs`` per split. With
    ``same_faces`` (a row scored on part of the faces), each figure also holds PyTorch's PSNR on those faces
    (``pytorch_psnr_db``), which the gates read in place of PyTorch's on the whole split."""
    figures = {part: scores(made_up, faces[part][1], None if references is None else references[part])
               for part, made_up in outputs.items()}
    if same_faces:
        for part, split_figures in figures.items():
            split_figures["pytorch_mse"] = mse_per_image(references[part], faces[part][1])
    for part, split_figures in figures.items():
        row["quality"][part] = quality(split_figures)
    if looks and figures:
        row["looks"] = by_look(figures, looks, names)


def page_share(faces: dict, references: dict, looks: dict, names: list[str]) -> tuple[dict, dict, dict, str | None]:
    """The faces the page scores: every face for one look; for L looks, the first 1/L of each look's faces in
    each split (its time stays that of one look: each face costs the page ~0.25 s of detection, mesh, maps and
    model; the page draws each face's region maps itself). (faces, references, looks, note) of that share; note
    None where it is every face."""
    if not looks:
        return faces, references, looks, None
    keep = {}
    for part, one_hot in looks.items():
        rank = torch.cumsum(one_hot, dim=0)[torch.arange(len(one_hot)), one_hot.argmax(dim=1)] - 1
        counts = one_hot.sum(dim=0)[one_hot.argmax(dim=1)]
        keep[part] = rank < torch.ceil(counts / len(names))
    pick = lambda split: {part: value[keep[part]] for part, value in split.items()}  # noqa: E731
    shared = {part: tuple(tensor[keep[part]] for tensor in pair) for part, pair in faces.items()}
    counts = ", ".join(f"{int(keep[part].sum())} of {len(keep[part])} {part}" for part in faces)
    note = (f"the page scored the first 1/{len(names)} of each look's faces per split ({counts}); its gates read "
            "PyTorch on the same faces")
    return shared, pick(references), pick(looks), note


def score_artifact(entry: dict, args: argparse.Namespace, model, faces: dict, references: dict, looks: dict,
                   regions: dict, threads: list[int], example: tuple[np.ndarray, ...]) -> tuple[dict, dict]:
    """One artifact's row: quality per split (and per look) in its own runtime (or its stand-in), and latency;
    ``regions``: each split's region maps for a model that reads them ({} for one that does not)."""
    fmt, path = BY_NAME[entry["format"]], args.artifacts / entry["file"]
    row = {"name": f"{fmt.name} ({fmt.precision})", "format": fmt.name, "file": str(path), "shipped": fmt.shipped,
           "bytes": entry["bytes"], "runtime": fmt.runtime, "latency": {}, "quality": {}, "notes": []}
    outputs = {}
    try:
        runner = fmt.load(path)
        outputs = {part: run_in_batches_of_one(runner, source.numpy(), looks[part].numpy() if looks else None,
                                               regions[part].numpy() if regions else None)
                   for part, (source, _) in faces.items()}
        row["notes"].append(f"ran with {fmt.runtime}")
        row["latency"] = latency_by_threads(lambda t: fmt.load(path, t), example, threads, args)
    except RuntimeUnavailable as why:
        row["notes"].append(f"not run: {why}")
        if fmt.stand_in is None:
            row["notes"].append("no stand-in check: quality not measured")
        else:
            for part, (source, _) in faces.items():
                maps = {"regions": regions[part]} if regions else {}  # the maps, for a model that reads them
                outputs[part], checks = fmt.stand_in(path, model, source, looks.get(part), **maps)
            row["notes"] += ["quality from the stand-in: " + checks[-1], "latency: not measured"]
            row["stand_in"] = True
    score_rows(row, outputs, faces, references, looks, model.config.looks)
    curve = fmt.read_metadata(path).get("tinybeauty.size_quality")
    if curve:  # the export's size/quality search (the .mlpackage's bit widths), kept in the file
        row["size_quality"] = json.loads(curve)
    return row, outputs


def headline_split(faces: dict) -> str:
    """The split the gates and the table's first columns are on: the held-out test split, or the
    validation split for a checkpoint trained without one (--test-fraction 0)."""
    return "test" if "test" in faces else "val"


def reference_rows(model, faces: dict, references: dict, looks: dict, manifest: dict, threads: list[int],
                   example: tuple[np.ndarray, ...], args: argparse.Namespace) -> list[dict]:
    """The two rows every artifact is read against: the untouched input, and PyTorch fp32."""
    baseline = {"name": "no makeup (input)", "format": "baseline", "bytes": None, "latency": {}, "quality": {},
                "notes": ["untouched input vs target"]}
    score_rows(baseline, {part: source.numpy() for part, (source, _) in faces.items()}, faces, None, looks,
               model.config.looks)
    pytorch = {"name": "PyTorch fp32 (reference)", "format": REFERENCE_FORMAT, "file": manifest["checkpoint"],
               "bytes": count_parameters(model) * 4, "runtime": "PyTorch eager fp32", "quality": {},
               "latency": latency_by_threads(lambda t: pytorch_runner(model, t), example, threads, args),
               "notes": ["bytes: parameters x 4 (fp32 weights)"]}
    score_rows(pytorch, {part: ref.numpy() for part, ref in references.items()}, faces, references, looks,
               model.config.looks)
    return [baseline, pytorch]


def look_grid_faces(artifacts: Path, manifest: dict, model, faces: dict, names: list[str], regions: dict | None = None
                    ) -> dict[str, torch.Tensor]:
    """The looks side by side on the same faces (the first test face and the first real-photo one):
    ``{"input": [F,3,H,W], look: [F,3,H,W] made up ...}``, through the shipped int8 ONNX (PyTorch where
    the set has none). The built-in looks are drawn on the same faces, so any look's source is the face.
    ``regions``: each split's region maps, for a model that reads them."""
    shown = [part for part in ("test", REAL_TEST_SPLIT, "val") if part in faces][:2]
    picks = torch.stack([faces[part][0][0] for part in shown])
    maps = torch.stack([regions[part][0] for part in shown]).numpy() if regions else None
    entry = next((e for e in manifest["artifacts"] if e["format"] == "onnx"), None)
    runner = BY_NAME["onnx"].load(artifacts / entry["file"]) if entry else pytorch_runner(model)
    grid = {"input": picks}
    for index, name in enumerate(names):
        one_hot = np.zeros((len(picks), len(names)), np.float32)
        one_hot[:, index] = 1
        grid[name] = torch.from_numpy(run_in_batches_of_one(runner, picks.numpy(), one_hot, maps))
    return grid


def as_samples(outputs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(outputs[:SAMPLE_FACES], np.float32))


def score_exports(manifest: dict, args: argparse.Namespace, model, faces: dict, references: dict, looks: dict,
                  regions: dict, threads: list[int], example: tuple[np.ndarray, ...], headline: str
                  ) -> tuple[list[dict], dict]:
    """A row per artifact, then the browser row; and the headline split's first outputs of each."""
    rows, samples = [], {}
    for entry in manifest["artifacts"]:
        log.info("%s: %s", entry["format"], args.artifacts / entry["file"])
        row, outputs = score_artifact(entry, args, model, faces, references, looks, regions, threads, example)
        if headline in outputs:
            samples[row["format"]] = as_samples(outputs[headline])
        rows.append(row)
    page_faces, page_references, page_looks, page_note = page_share(faces, references, looks, model.config.looks)
    for fmt in () if args.no_browser else PAGE_MODELS:
        log.info("%s: the web page in headless Chromium, %s", page_row_name(fmt), PAGE_MODELS[fmt])
        browser, outputs = browser_row(args.artifacts, manifest, page_faces, threads, args.min_runs, args.min_seconds,
                                       fmt, page_looks, model.config.looks)
        score_rows(browser, outputs, page_faces, page_references, page_looks, model.config.looks,
                   same_faces=page_note is not None)
        if page_note and outputs:
            browser["notes"].append(page_note)
        if regions and outputs:
            browser["notes"].append("region maps: the page draws each face's from its own face mesh run in the "
                                    "browser, as an app's page does (the other rows: Python's mesh)")
        if headline in outputs:
            samples[browser["format"]] = as_samples(outputs[headline])
        rows.append(browser)
    return rows, samples


def region_counts(regions: dict[str, torch.Tensor]) -> dict[str, dict[str, int]]:
    """Per split, how many faces' region maps were drawn and how many are empty (no face found by the mesh)."""
    return {part: {"faces": len(maps), "empty": int((maps.flatten(1).amax(1) == 0).sum())}
            for part, maps in regions.items()}


def add_compute_share(rows: list[dict], macs: int, info: dict) -> None:
    """Each latency figure's achieved GFLOP/s and its share of the measured fp32 peak."""
    for row in rows:
        for t, figures in row["latency"].items():
            if t not in info["peak_fp32_gflops"]:  # a runtime's own default thread count, beside the report's
                continue
            achieved = 2 * macs / (figures["median_ms"] / 1000) / 1e9
            figures["gflops"] = achieved
            figures["share_of_fp32_peak"] = achieved / info["peak_fp32_gflops"][t]


def gate_failures(rows: list[dict], headline: str, max_drop: float, min_psnr: float | None,
                  names: list[str] | None = None) -> list[str]:
    """On the headline split: every model more than max_drop dB below PyTorch on truth, or under min_psnr;
    with several looks (``names``), each look on its own faces."""
    if names:
        return [f"{name}: {failure}" for name in names
                for failure in gate_failures([row | {"quality": row.get("looks", {}).get(name, {})} for row in rows],
                                             headline, max_drop, min_psnr)]
    reference = next(row for row in rows if row["format"] == REFERENCE_FORMAT)
    reference_truth = reference["quality"][headline]["psnr_db"]
    failures = []
    for row in rows:
        scored = row["quality"].get(headline)
        if row["format"] == "baseline" or scored is None:  # the untouched input is a yardstick, not a model
            continue
        drop = scored.get("pytorch_psnr_db", reference_truth) - scored["psnr_db"]
        if drop > max_drop:
            failures.append(f"{row['name']}: {drop:.2f} dB below PyTorch on truth (limit {max_drop} dB)")
        if min_psnr is not None and scored["psnr_db"] < min_psnr:
            failures.append(f"{row['name']}: {scored['psnr_db']:.2f} dB vs truth, under the {min_psnr} dB bar")
    return failures


def run(args: argparse.Namespace) -> int:
    """The benchmark ``python -m benchmark`` asks for (benchmark/__main__.py): 0 done, 1 a failed gate,
    2 bad input."""
    silence_known_noise()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        manifest, model, checkpoint, faces, looks, regions = load_inputs(args)
    except (ManifestError, CheckpointError, DataError) as error:
        log.error("%s", error)
        return 2
    headline = headline_split(faces)
    embedded = not checkpoint.get("train_config", {}).get("data")
    min_psnr = args.min_psnr if args.min_psnr is not None else (QUALITY_BAR_DB if embedded else None)
    threads = args.threads or sorted({1, available_cores()})
    log.info("scoring on %s; headline: %s; latency at %s thread(s)",
             ", ".join(f"{len(target)} {SPLIT_LABELS[part]} pairs" for part, (_, target) in faces.items()),
             SPLIT_LABELS[headline], threads)

    with torch.no_grad():
        references = {part: model(source, looks.get(part), regions=regions.get(part))
                      for part, (source, _) in faces.items()}
    source, target = faces[headline]
    names = list(model.config.looks) if looks else []
    # Latency of a several-look file with every look live (an even blend): its slowest input; of a model that
    # reads region maps, with the first face's own maps.
    blend = np.full((1, len(names)), 1 / len(names), np.float32) if looks else None
    example = (source[:1].numpy(),) + ((blend,) if looks else ())
    if regions:
        example = (source[:1].numpy(), blend, regions[headline][:1].numpy())
    rows = reference_rows(model, faces, references, looks, manifest, threads, example, args)
    samples = {"input": source[:SAMPLE_FACES], "target": target[:SAMPLE_FACES],
               "PyTorch fp32": references[headline][:SAMPLE_FACES]}
    exported, exported_samples = score_exports(manifest, args, model, faces, references, looks, regions, threads,
                                               example, headline)
    rows += exported
    samples |= exported_samples

    macs = count_macs(model, source.shape[-2], source.shape[-1])
    info = machine_info(threads)
    add_compute_share(rows, macs, info)
    failures = gate_failures(rows, headline, args.max_drop, min_psnr, names)
    report = {"machine": info, "manifest": str(args.artifacts / "manifest.json"), "checkpoint": manifest["checkpoint"],
              "checkpoint_sha256": manifest["checkpoint_sha256"], "headline_split": headline,
              "pairs": {part: len(target) for part, (_, target) in faces.items()},
              "looks": names, "region_inputs": list(model.config.region_inputs), "region_maps": region_counts(regions),
              "image_size": int(source.shape[-1]), "macs": macs, "parameters": count_parameters(model),
              "threads": threads, "gates": {"split": headline, "max_drop_db": args.max_drop, "min_psnr_db": min_psnr,
                                            "failures": failures}, "rows": rows,
              "mobile": shipped_onnx_usability(args.artifacts)}
    if not args.no_live:  # benchmark/live.py: a 720p clip through apply; tracking beside per-frame detection
        report["live"] = live_section(args.artifacts / BY_NAME["onnx"].filename, args.out)
    grid = look_grid_faces(args.artifacts, manifest, model, faces, names, regions) if looks else None
    paths = write_reports(report, samples, args.out, grid)
    print("\n" + paths["markdown_table"] + "\n")
    log.info("wrote %s", ", ".join(str(p) for k, p in paths.items() if k != "markdown_table"))
    for failure in failures:
        log.error("gate failed: %s", failure)
    return 1 if failures else 0

