"""The export itself, run by ``python -m export`` once its command line is parsed (export/__main__.py
says what it does): the checkpoint loaded, calibrated, exported to every format, each file checked,
the set put in place.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from export.common import (
    LOOKS_INPUT_NAME,
    REGIONS_INPUT_NAME,
    ExportInputs,
    ExportMeta,
    fresh_staging_dir,
    git_commit,
    parity,
)
from export.formats import BY_NAME, ExportFormat
from export.manifest import LOOKS_FILE, MANIFEST
from export.runtime import RuntimeUnavailable, run_in_batches_of_one, silence_known_noise
from models.atomic import (
    OutputFolderError,
    check_output_folder,
    replace_directory,
    sha256_file,
    sha256_tree,
    tree_bytes,
    write_text,
)
from models.checkpoint import CheckpointError, catalogue, checkpoint_split, load_checkpoint
from models.data import DataError, PairCache, faces_as_tensors, load_split
from models.gates import BLEND_MIN_PSNR_VS_PYTORCH_DB
from models.int8 import trained_activation_ranges
from models.metrics import psnr_db
from models.rescale import equalize_skips
from models.tinybeauty import TinyBeauty

log = logging.getLogger("export")
BLEND_FACES = 4  # check faces a blend of looks is run on


def region_maps_of(cache: PairCache, record: dict, data_override: str | None,
                   names: tuple[str, ...]) -> torch.Tensor | None:
    """The region maps ``names`` of ``cache``'s faces (N x K x S x S in [0, 1]), as training drew them: from the
    face mesh on the decoded faces, the shapes cached in the split's data folder (``data_override`` where it
    moved), so after training this reads the cache. None for a network that reads none."""
    if not names:
        return None
    from train.region_maps import region_maps, region_tensor  # the face mesh: only region-input networks need it

    return region_tensor(region_maps(cache, Path(data_override or record["data"]), names))


def look_part(record: dict, data_override: str | None, n_calibration: int, n_val: int,
              names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """(calibration faces, check faces, their truth, the calibration faces' maps, the check faces' maps) of one
    split record; the maps None for a network that reads none."""
    calibration_cache = load_split(record, "train", data_override, limit=n_calibration)
    val_cache = load_split(record, "val", data_override, limit=n_val)
    calibration, _ = faces_as_tensors(calibration_cache)
    return (calibration, *faces_as_tensors(val_cache), region_maps_of(calibration_cache, record, data_override, names),
            region_maps_of(val_cache, record, data_override, names))


def prepare_inputs(split: dict, data_override: str | None, n_calibration: int, n_val: int,
                   region_inputs: tuple[str, ...] = ()) -> ExportInputs:
    """Calibration faces from the recorded training split, check faces from the recorded
    validation split (each spread evenly over its split). Several looks: each look's own split
    (``data_override`` then is the parent of folders named by look), ``n_val`` check faces per look and
    the calibration faces shared out between the looks, each face with its look's one-hot weights. A network
    that reads ``region_inputs`` gets each face's own maps (:func:`region_maps_of`); the example input is the
    first check face with its maps."""
    if "looks" not in split:
        calibration, val_source, val_target, calibration_regions, val_regions = look_part(
            split, data_override, n_calibration, n_val, region_inputs)
        return ExportInputs(val_source[:1].clone(), calibration, val_source, val_target,
                            **region_fields(calibration_regions, val_regions))
    records = list(split["looks"].items())
    parts = [look_part(record, str(Path(data_override) / name) if data_override else None,
                       max(1, n_calibration // len(records)), n_val, region_inputs) for name, record in records]
    one_hot = lambda tensors: torch.cat([torch.nn.functional.one_hot(torch.full((len(t),), look), len(records))  # noqa: E731
                                         for look, t in enumerate(tensors)]).float()
    calibration, val_source, val_target = (torch.cat(tensors) for tensors in list(zip(*parts, strict=True))[:3])
    maps = [None if not region_inputs else torch.cat([part[k] for part in parts]) for k in (3, 4)]
    return ExportInputs(val_source[:1].clone(), calibration, val_source, val_target,
                        example_looks=torch.full((1, len(records)), 1 / len(records)),
                        calibration_looks=one_hot([part[0] for part in parts]),
                        val_looks=one_hot([part[1] for part in parts]), **region_fields(*maps))


def region_fields(calibration_regions: torch.Tensor | None, val_regions: torch.Tensor | None) -> dict:
    """ExportInputs' region maps: the calibration and check faces' own, the example's the first check face's."""
    if val_regions is None:
        return {}
    return {"example_regions": val_regions[:1].clone(), "calibration_regions": calibration_regions,
            "val_regions": val_regions}


def artifact_outputs(fmt: ExportFormat, path: Path, model: TinyBeauty, inputs: ExportInputs,
                     record: dict) -> np.ndarray | None:
    """The file's outputs on the check faces (each with its look and its own region maps): its real runtime,
    else the format's stand-in check; None, with the problem recorded, where neither can run here."""
    looks, regions = (None if tensor is None else tensor.numpy() for tensor in (inputs.val_looks, inputs.val_regions))
    try:
        outputs = run_in_batches_of_one(fmt.load(path), inputs.val_source.numpy(), looks, regions)
        record["checks_run"].append(f"ran with {fmt.runtime} on {len(inputs.val_source)} validation faces")
        return outputs
    except RuntimeUnavailable as why:
        record["checks_skipped"].append(f"prediction with {fmt.runtime}: {why}")
        if fmt.stand_in is None:
            record["problems"].append(f"no runtime and no stand-in check: {why}")
            return None
        outputs, checks = fmt.stand_in(path, model, inputs.val_source, inputs.val_looks, inputs.val_regions)
        record["checks_run"] += checks
        return outputs


def quality(outputs: np.ndarray, reference: torch.Tensor, target: torch.Tensor, max_drop: float) -> tuple[dict, list]:
    """Parity of ``outputs`` with PyTorch and with the truth, and the problems it shows."""
    figures = parity(outputs, reference, target)
    figures["pytorch_psnr_vs_truth_db"] = psnr_db(reference, target)
    figures["psnr_drop_db"] = figures["pytorch_psnr_vs_truth_db"] - figures["psnr_vs_truth_db"]
    problems = ["output has NaN or infinity"] if not np.isfinite(outputs).all() else []
    if figures["psnr_drop_db"] > max_drop:
        problems.append(f"loses {figures['psnr_drop_db']:.2f} dB of ground-truth PSNR vs PyTorch "
                        f"({figures['psnr_vs_truth_db']:.2f} vs {figures['pytorch_psnr_vs_truth_db']:.2f}), "
                        f"over the {max_drop} dB limit")
    return figures, problems


def check_looks(fmt: ExportFormat, path: Path, outputs: np.ndarray, model: TinyBeauty, inputs: ExportInputs,
                reference: torch.Tensor, meta: ExportMeta, max_drop: float, record: dict) -> None:
    """Several looks: the gates per look (each look's check faces through its one-hot input), and a
    blend (every look at an even share) against PyTorch's blend on the first faces."""
    record["looks"] = {}
    for index, look in enumerate(meta.looks):
        rows = inputs.val_looks[:, index] == 1
        figures, problems = quality(outputs[rows.numpy()], reference[rows], inputs.val_target[rows], max_drop)
        record["looks"][look["name"]] = figures
        record["problems"] += [f"{look['name']}: {problem}" for problem in problems]
        record["checks_run"].append(f"look {look['name']}: {figures['psnr_vs_pytorch_db']:.2f} dB vs PyTorch, "
                                    f"{figures['psnr_vs_truth_db']:.2f} dB vs truth on {int(rows.sum())} faces")
    faces = inputs.val_source[:BLEND_FACES]
    regions = None if inputs.val_regions is None else inputs.val_regions[:BLEND_FACES]
    blend = inputs.example_looks.expand(len(faces), -1).contiguous()
    with torch.no_grad():
        blend_reference = model(faces, blend, regions=regions)
    if fmt.stand_in is not None and any("prediction with" in skipped for skipped in record["checks_skipped"]):
        blended, _ = fmt.stand_in(path, model, faces, blend, regions)
    else:
        blended = run_in_batches_of_one(fmt.load(path), faces.numpy(), blend.numpy(),
                                        None if regions is None else regions.numpy())
    record["blend_psnr_vs_pytorch_db"] = psnr_db(torch.as_tensor(blended), blend_reference)
    record["checks_run"].append(f"an even blend of the {len(meta.looks)} looks: "
                                f"{record['blend_psnr_vs_pytorch_db']:.2f} dB vs PyTorch's blend")
    if record["blend_psnr_vs_pytorch_db"] < BLEND_MIN_PSNR_VS_PYTORCH_DB:
        record["problems"].append(f"a blend of looks is {record['blend_psnr_vs_pytorch_db']:.2f} dB from PyTorch's, "
                                  f"under the {BLEND_MIN_PSNR_VS_PYTORCH_DB} dB floor")


def check_artifact(fmt: ExportFormat, path: Path, model: TinyBeauty, inputs: ExportInputs, meta: ExportMeta,
                   reference: torch.Tensor, budget: int, max_drop: float) -> dict:
    """Size, then the real runtime (or the format's stand-in), then parity (per look). Returns the record."""
    size_bytes = tree_bytes(path)
    record = {"format": fmt.name, "file": fmt.filename, "shipped": fmt.shipped, "precision": fmt.precision,
              "runtime": fmt.runtime, "bytes": size_bytes, "budget_bytes": budget if fmt.shipped else None,
              "sha256": sha256_tree(path), "checks_run": [], "checks_skipped": [], "problems": []}
    if fmt.shipped:
        record["checks_run"].append(f"size: {size_bytes:,} bytes of a {budget:,}-byte budget")
        if size_bytes > budget:
            record["problems"].append(f"{size_bytes:,} bytes is over the {budget:,}-byte budget")
    outputs = artifact_outputs(fmt, path, model, inputs, record)
    if outputs is not None:
        figures, problems = quality(outputs, reference, inputs.val_target, max_drop)
        record |= figures
        record["checks_run"].append(f"parity on {len(inputs.val_source)} validation faces: "
                                    f"{record['psnr_vs_pytorch_db']:.2f} dB vs PyTorch, "
                                    f"{record['psnr_vs_truth_db']:.2f} dB vs truth")
        if meta.looks_input:
            check_looks(fmt, path, outputs, model, inputs, reference, meta, max_drop, record)
        else:
            record["problems"] += problems
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


def checked(fmt: ExportFormat, staging: Path, model: TinyBeauty, inputs: ExportInputs, meta: ExportMeta,
            reference: torch.Tensor, args: argparse.Namespace) -> dict:
    """Export one format into the staging folder and check it. Any error, in the converter or
    in a check, becomes a failed record: it is reported, and the previous set stays in place."""
    path = staging / fmt.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dataclasses.replace(meta, layout=fmt.layout)
    start = time.perf_counter()
    try:
        fmt.export(model, inputs, path, meta)
        record = check_artifact(fmt, path, model, inputs, meta, reference, args.budget_bytes, args.max_psnr_drop)
    except Exception as error:  # every failure ends as a report, never a half-installed set
        log.exception("%s failed", fmt.name)
        return {"format": fmt.name, "file": fmt.filename, "bytes": tree_bytes(path) if path.exists() else 0,
                "passed": False, "checks_run": [], "checks_skipped": [],
                "problems": [f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"]}
    record["export_s"] = round(time.perf_counter() - start, 2)
    strings = meta.as_strings()
    record |= {"input": strings["tinybeauty.input"], "output": strings["tinybeauty.output"],
               **({"regions_input": strings["tinybeauty.regions_input"]} if meta.region_inputs else {}),
               "checkpoint": meta.checkpoint, "checkpoint_sha256": meta.checkpoint_sha256}
    return record


def check_replaceable(out: Path) -> None:
    """The set replaces --out as a whole, staged beside it: refuse a folder that is not an artifact
    set (replacing it would delete its files) and a parent the staging folder cannot be made in."""
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise OutputFolderError(f"{out} holds files but no {MANIFEST}, so it is not an artifact set; export replaces "
                                "its --out as a whole and would delete them: name a new or empty folder")
    check_output_folder(out.absolute().parent)


def finite_reference(model: TinyBeauty, inputs: ExportInputs, checkpoint: Path) -> torch.Tensor:
    """PyTorch's output on the check faces (each with its look and its own region maps), which every format is
    compared to; refused, naming the checkpoint, when it is not finite (no converter could be checked against it)."""
    with torch.no_grad():
        reference = model(inputs.val_source, inputs.val_looks, regions=inputs.val_regions)
    if not torch.isfinite(reference).all():
        raise CheckpointError(f"{checkpoint}: the model's output on the validation faces holds NaN or infinity; "
                              "use an earlier checkpoint or retrain, e.g. with a lower --lr")
    return reference


def export_meta(args: argparse.Namespace, model: TinyBeauty, checkpoint: dict, inputs: ExportInputs) -> ExportMeta:
    """The provenance every file carries, and its catalogue of looks."""
    return ExportMeta(checkpoint=str(args.checkpoint), checkpoint_sha256=sha256_file(args.checkpoint),
                      git_commit=git_commit(), val_psnr_db=float(checkpoint.get("val_psnr", float("nan"))),
                      image_size=inputs.image_size, extra={"epoch": checkpoint.get("epoch", "?")},
                      looks=catalogue(model, checkpoint), region_inputs=list(model.config.region_inputs))


def int8_weights(model: TinyBeauty, checkpoint: dict, inputs: ExportInputs,
                 no_equalize: bool) -> tuple[TinyBeauty, dict, ExportInputs]:
    """(the network the formats with int8 activations export, its skip factors, the inputs with the
    trained activation ranges where the checkpoint has them)."""
    # Formats with int8 activations get weights rescaled so each skip and its decoder partner share a
    # range (float-exact; ranges from the calibration faces). Parity is always against the model as trained.
    rescaled, factors = model, {}
    if not no_equalize:
        # A quantization-aware fine-tune trained with fixed factors: use them, so the int8 files
        # round the very tensors it trained (models/rescale.py, train/qat.py).
        rescaled, factors = equalize_skips(model, inputs.calibration, checkpoint.get("skip_factors"),
                                           inputs.calibration_regions)
        log.info("skip connections rescaled for int8 concatenation: %s",
                 ", ".join(f"{name} x{k:.3g}" for name, k in factors.items()))
        # ... and round each activation over the range it trained with (models/int8.py). The ranges
        # belong to the rescaled network: without the rescaling (--no-equalize) the formats calibrate.
        if checkpoint.get("skip_factors"):
            inputs = dataclasses.replace(inputs, activation_ranges=trained_activation_ranges(checkpoint))
    log.info("int8 activation ranges: %s", "as the quantization-aware phase trained them" if inputs.activation_ranges
             else f"calibrated on {len(inputs.calibration)} training faces")
    return rescaled, factors, inputs


def export_all(args: argparse.Namespace, staging: Path, model: TinyBeauty, rescaled: TinyBeauty,
               inputs: ExportInputs, meta: ExportMeta, reference: torch.Tensor) -> list[dict]:
    """Every format asked for, exported into the staging folder and checked: one record each."""
    records = []
    for index, name in enumerate(args.formats, start=1):
        fmt = BY_NAME[name]
        log.info("[%d/%d] %s -> %s", index, len(args.formats), fmt.name, fmt.filename)
        record = checked(fmt, staging, rescaled if fmt.int8_activations else model, inputs, meta, reference, args)
        for check in record["checks_run"]:
            log.info("    %s", check)
        for skipped in record["checks_skipped"]:
            log.info("    skipped %s", skipped)
        records.append(record)
    return records


def look_figures(inputs: ExportInputs, reference: torch.Tensor, meta: ExportMeta, records: list[dict]) -> list[dict]:
    """``looks.json``'s entries: each look's name, index and swatch, its PyTorch PSNR on its check faces
    beside their no-makeup baseline, and each file's PSNR on them (against the truth)."""
    entries = []
    for look in meta.looks:
        rows = (slice(None) if not meta.looks_input
                else (inputs.val_looks[:, look["index"]] == 1))
        per_file = {r["format"]: (r["looks"][look["name"]] if meta.looks_input else r).get("psnr_vs_truth_db")
                    for r in records}
        entries.append(look | {"val_faces": len(inputs.val_source[rows]),
                               "val_psnr_db": psnr_db(reference[rows], inputs.val_target[rows]),
                               "val_baseline_db": psnr_db(inputs.val_source[rows], inputs.val_target[rows]),
                               "val_psnr_db_by_format": per_file})
    return entries


def looks_document(meta: ExportMeta, entries: list[dict]) -> dict:
    """What an app or the page reads to offer the catalogue (``looks.json`` beside the files)."""
    return {"input": LOOKS_INPUT_NAME if meta.looks_input else None,
            "input_spec": meta.looks_spec() if meta.looks_input else "one look: the files take no look input",
            "image_size": meta.image_size, **region_entries(meta), "looks": entries}


def region_entries(meta: ExportMeta) -> dict:
    """What looks.json and the manifest say of the region maps the files read beside the face: their names in
    the order of the ``regions`` input (empty: the face alone) and where they come from."""
    if not meta.region_inputs:
        return {"region_inputs": [], "regions_input": "the files take the face alone, no region maps"}
    return {"region_inputs": list(meta.region_inputs),
            "regions_input": (f"{REGIONS_INPUT_NAME}: float32 [1,{len(meta.region_inputs)},"
                              f"{meta.image_size},{meta.image_size}] in [0,1] (NHWC [1,{meta.image_size},"
                              f"{meta.image_size},{len(meta.region_inputs)}] in the .tflite), one soft map per name "
                              "from the face mesh (faces/region_weights.py: region_masks); each file's "
                              "tinybeauty.regions_input says its own layout")}


def manifest_of(args: argparse.Namespace, checkpoint: dict, split: dict, model: TinyBeauty, meta: ExportMeta,
                inputs: ExportInputs, factors: dict, records: list[dict], looks: list[dict]) -> dict:
    return {"checkpoint": str(args.checkpoint), "checkpoint_sha256": meta.checkpoint_sha256,
            "checkpoint_epoch": checkpoint.get("epoch"), "val_psnr_db": meta.val_psnr_db,
            "model_config": model.config.to_dict(), "train_config": checkpoint.get("train_config", {}),
            "split": split_summary(split), "looks": looks, **region_entries(meta),
            "git_commit": meta.git_commit, "image_size": inputs.image_size, "budget_bytes": args.budget_bytes,
            "max_psnr_drop_db": args.max_psnr_drop, "val_images": len(inputs.val_source),
            "calibration_images": len(inputs.calibration), "skip_rescale": factors,
            "activation_ranges": inputs.activation_ranges or "calibrated", "artifacts": records}


def split_summary(split: dict) -> dict:
    """The split's settings and sizes (per look for several looks), without its file lists."""
    if "looks" in split:
        return {"looks": {name: split_summary(record) for name, record in split["looks"].items()}}
    return ({key: split[key] for key in ("data", "seed", "val_fraction", "test_fraction", "image_size")}
            | {f"{part}_pairs": len(split[part]) for part in ("train", "val", "test")})


def run(args: argparse.Namespace) -> int:
    """The export ``python -m export`` asks for (export/__main__.py): 0 done, 1 a failed check, 2 bad input."""
    silence_known_noise()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        check_replaceable(args.out)
        model, checkpoint = load_checkpoint(args.checkpoint)  # region maps: drawn below
        split = checkpoint_split(checkpoint, args.checkpoint)
        inputs = prepare_inputs(split, args.data, args.calibration_images, args.val_images,
                                model.config.region_inputs)
        reference = finite_reference(model, inputs, args.checkpoint)
    except (CheckpointError, DataError, OutputFolderError) as error:
        log.error("%s", error)
        return 2
    meta = export_meta(args, model, checkpoint, inputs)
    staging = fresh_staging_dir(args.out)
    rescaled, factors, inputs = int8_weights(model, checkpoint, inputs, args.no_equalize)
    records = export_all(args, staging, model, rescaled, inputs, meta, reference)
    print("\n" + format_table(records) + "\n")
    failed = [r for r in records if not r["passed"]]
    if failed:
        log.error("export failed for %s; nothing in %s was replaced (the rejected set stays in %s)",
                  ", ".join(r["format"] for r in failed), args.out, staging)
        return 1
    looks = look_figures(inputs, reference, meta, records)
    manifest = manifest_of(args, checkpoint, split, model, meta, inputs, factors, records, looks)
    write_text(staging / LOOKS_FILE, json.dumps(looks_document(meta, looks), indent=2) + "\n")
    write_text(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    replace_directory(staging, args.out)  # another export's set arriving meanwhile: the last to finish stays
    log.info("wrote %s, %s and %s (looks: %s)", ", ".join(r["file"] for r in records), args.out / LOOKS_FILE,
             args.out / MANIFEST, ", ".join(look["name"] for look in looks))
    return 0

