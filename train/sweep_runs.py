"""The seed sweep's work, run by ``python -m train.sweep`` once its command line is parsed (train/sweep.py
says what it does): each seed trained and scored in turn, and the report of the seeds done so far
rewritten after each.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from models.atomic import write_text
from models.checkpoint import checkpoint_split, load_checkpoint, read_checkpoint
from models.data import DataError, decode_pairs, faces_as_tensors
from models.metrics import mean_psnr_db
from train import sweep_looks, trainer
from train.__main__ import main as train_main
from train.numerics import flush_denormals
from train.pipeline import run_command
from train.region_maps import region_maps, region_tensor

log = logging.getLogger("train.sweep")

REAL_COLUMNS = {"test-real_psnr_db": "real-photo test PSNR", "test-real_baseline_db": "no makeup (real-photo test)"}
AT_BASELINE_DB = 0.1  # an epoch "at the baseline": validation PSNR at most this far above it


def epochs_at_baseline(metrics_path: Path) -> int:
    rows = trainer.read_metrics(metrics_path)
    return sum(float(r["val_psnr"]) <= float(r["baseline_psnr"]) + AT_BASELINE_DB for r in rows)


TEST_DATA_BATCH = 16  # faces per forward pass on --test-data: a folder of any size fits in memory


def score_test_data(path: Path, faces: tuple[torch.Tensor, torch.Tensor], regions: torch.Tensor | None = None) -> dict:
    """PSNR of a checkpoint on the --test-data faces, and their no-makeup baseline; ``regions``: the faces'
    region maps, for a network that reads them (the default network)."""
    model, _ = load_checkpoint(path)
    source, target = faces
    maps = [None] * len(source.split(TEST_DATA_BATCH)) if regions is None else regions.split(TEST_DATA_BATCH)
    with torch.no_grad():
        made_up = torch.cat([model(batch, regions=batch_maps)
                             for batch, batch_maps in zip(source.split(TEST_DATA_BATCH), maps, strict=True)])
    return {"test_data_psnr_db": mean_psnr_db(made_up, target), "test_data_baseline_db": mean_psnr_db(source, target)}


def load_test_data(args: argparse.Namespace
                   ) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor | None] | None:
    """The --test-data faces at the recipe's image size, decoded once for every seed, their hashes, and with
    region inputs (the default) their region maps (placed by the face mesh, cached in the --test-data folder)."""
    if args.test_data is None:
        return None
    cache, _ = decode_pairs(args.test_pairs, args.recipe.image_size, origin="--test-data")
    log.info("--test-data: %d pairs from %s", len(cache.pairs), args.test_data)
    regions = region_tensor(region_maps(cache, args.test_data)) if args.recipe.region_inputs else None
    return (*faces_as_tensors(cache), cache.hashes, regions)


def trained_on_test_data(checkpoint: Path, hashes: list[str]) -> int:
    """How many --test-data pairs the seed's training also read (identical files)."""
    trained = {entry["sha256"] for entry in checkpoint_split(read_checkpoint(checkpoint), checkpoint)["train"]}
    return sum(digest in trained for digest in hashes)


class SweepError(RuntimeError):
    """A seed's training, export or benchmark failed: the sweep stops with this message, not a traceback."""


def exported_report(checkpoint: Path, run: Path, formats: list[str] | None) -> dict:
    """Export (``formats``; None: all) and benchmark one run (own processes): its benchmark report."""
    artifacts, bench = run / "artifacts", run / "bench"
    steps = ([sys.executable, "-m", "export", "--checkpoint", str(checkpoint), "--out", str(artifacts),
              *(["--formats", *formats] if formats else [])],
             [sys.executable, "-m", "benchmark", "--artifacts", str(artifacts), "--out", str(bench), "--no-browser",
              "--no-live", "--threads", "1", "--min-runs", "3", "--min-seconds", "0.1"])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode not in (0, 1):  # 1: a gate failed, which the table shows
            raise SweepError(f"{' '.join(step[1:3])} failed for {checkpoint}:\n{done.stderr[-2000:]}")
    return json.loads((bench / "report.json").read_text())


def int8_losses(report: dict) -> dict:
    """Each shipped file's PSNR below PyTorch on the test faces, from a benchmark report."""
    split = report["headline_split"]
    reference = next(r for r in report["rows"] if r["format"] == "pytorch")["quality"][split]["psnr_db"]
    return {row["format"]: reference - row["quality"][split]["psnr_db"] for row in report["rows"]
            if row.get("shipped") and split in row["quality"] and not row["format"].startswith("browser")}


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def summarize(rows: list[dict]) -> dict:
    keys = sorted({key for row in rows for key, value in row.items() if isinstance(value, (int, float))} - {"seed"})
    summary = {key: spread([row[key] for row in rows if key in row]) for key in keys}
    formats = sorted({name for row in rows for name in row.get("int8_loss_db", {})})
    summary |= {f"int8_loss_db.{name}": spread([row["int8_loss_db"][name] for row in rows
                                                if name in row.get("int8_loss_db", {})]) for name in formats}
    return summary


def recipe_line(train_args: list[str]) -> str:
    return f"Recipe: `python -m train {' '.join(train_args)}` (CPU preset unless options say otherwise)"


def markdown(rows: list[dict], summary: dict, train_args: list[str]) -> str:
    formats = sorted({name for row in rows for name in row.get("int8_loss_db", {})})
    shipped = any("shipped_test_psnr_db" in row for row in rows)
    new_faces = any("test_data_psnr_db" in row for row in rows)
    real = [key for key in REAL_COLUMNS if any(key in row for row in rows)]  # the built-in data's test-real
    head = ["seed", "test PSNR", *(["int8 ONNX test PSNR"] if shipped else []), "val PSNR", "no makeup (test)",
            *[REAL_COLUMNS[key] for key in real],
            *(["--test-data PSNR", "--test-data no makeup"] if new_faces else []),
            "epochs at baseline", "minutes", *[f"{name} loss" for name in formats]]
    lines = [recipe_line(train_args), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    db = lambda row, key: f"{row.get(key, float('nan')):.2f} dB"  # noqa: E731
    for row in rows:
        cells = [str(row["seed"]), db(row, "test_psnr_db"), *([db(row, "shipped_test_psnr_db")] if shipped else []),
                 db(row, "val_psnr_db"), db(row, "test_baseline_db"), *[db(row, key) for key in real],
                 *([db(row, "test_data_psnr_db"), db(row, "test_data_baseline_db")] if new_faces else []),
                 str(row["epochs_at_baseline"]),
                 f"{row['train_minutes']:.1f}", *[f"{row['int8_loss_db'][name]:.3f} dB" for name in formats]]
        lines.append("| " + " | ".join(cells) + " |")
    cell = lambda key, unit="dB": (f"{summary[key]['mean']:.2f} ± {summary[key]['std']:.2f} {unit} "  # noqa: E731
                                   f"({summary[key]['min']:.2f}-{summary[key]['max']:.2f})") if key in summary else "-"
    cells = ["mean ± std (min-max)", cell("test_psnr_db"), *([cell("shipped_test_psnr_db")] if shipped else []),
             cell("val_psnr_db"), cell("test_baseline_db"), *[cell(key) for key in real],
             *([cell("test_data_psnr_db"), cell("test_data_baseline_db")] if new_faces else []),
             cell("epochs_at_baseline", ""), cell("train_minutes", ""),
             *[f"max {summary[f'int8_loss_db.{name}']['max']:.3f} dB" for name in formats]]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_seed(seed: int, args: argparse.Namespace, train_args: list[str], test_data) -> dict:
    run = args.out / f"seed_{seed}"
    argv = ["--seed", str(seed), "--out", str(run), *(["--overwrite"] if args.overwrite else []), *train_args]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    start = time.perf_counter()
    if train_main(argv) != 0:
        raise SweepError(f"training seed {seed} failed (its message is above); the sweep stops")
    row = {"seed": seed, "train_minutes": (time.perf_counter() - start) / 60,
           "epochs_at_baseline": epochs_at_baseline(run / trainer.METRICS_FILE)}
    best = run / trainer.CHECKPOINTS["best_psnr"]
    looks = catalogue_looks(args)
    scores = held_out_scores(run)
    if looks:  # a catalogue's figures per look, NAME.KEY
        row["looks"] = looks
        for name in looks:
            row |= sweep_looks.flat(name, sweep_looks.look_figures(scores, name))
    else:
        row |= scores
    if test_data is not None:
        row |= score_test_data(best, test_data[:2], test_data[3])
        row["test_data_pairs_in_training"] = trained_on_test_data(best, test_data[2])
        if row["test_data_pairs_in_training"]:
            log.warning("seed %d trained on %d of the --test-data pairs (identical files): its --test-data PSNR "
                        "overstates new faces", seed, row["test_data_pairs_in_training"])
    if args.export:
        report = exported_report(best, run, args.formats)
        row["int8_loss_db"] = int8_losses(report)
        if "onnx" in row["int8_loss_db"] and "test_psnr_db" in row:  # what ships: the int8 ONNX on the test faces
            row["shipped_test_psnr_db"] = row["test_psnr_db"] - row["int8_loss_db"]["onnx"]
        for name in looks:
            row |= sweep_looks.flat(name, sweep_looks.shipped_figures(report, name))
    if looks and args.alone:
        for name in looks:
            row |= alone_figures(seed, name, args, run / f"alone_{name}")
            row |= sweep_looks.versus_alone(row, name)
    return row


def held_out_scores(run: Path) -> dict:
    """The scores of a run's best checkpoint that its training wrote once at its end (trainer.score_checkpoint, in
    held_out.json): read, not scored again."""
    return json.loads((run / trainer.HELD_OUT_FILE).read_text())


def catalogue_looks(args: argparse.Namespace) -> list[str]:
    """The looks of a catalogue sweep; none for a sweep of one look."""
    looks = list(args.recipe.looks or ())
    return looks if len(looks) > 1 else []


def alone_figures(seed: int, name: str, args: argparse.Namespace, run: Path) -> dict:
    """Train the catalogue's look ``name`` alone into ``run`` (train/sweep_looks.py: alone_config) and score it as
    the catalogue's own look is scored: ``{NAME.alone_...}``."""
    config = replace(sweep_looks.alone_config(args.recipe, args.given, name, run), seed=seed, overwrite=args.overwrite,
                     threads=args.threads or args.recipe.threads)
    log.info("sweep: seed %d, the look %s alone", seed, name)
    start = time.perf_counter()
    if run_command(config, set()) != 0:
        raise SweepError(f"training the look {name} alone (seed {seed}) failed (its message is above); the sweep stops")
    best = run / trainer.CHECKPOINTS["best_psnr"]
    figures = {f"{name}.alone_train_minutes": (time.perf_counter() - start) / 60}
    figures |= sweep_looks.flat(name, sweep_looks.look_figures(held_out_scores(run), name), "alone_")
    if args.export:
        report = exported_report(best, run, args.formats)
        figures |= sweep_looks.flat(name, sweep_looks.shipped_figures(report, name), "alone_")
    return figures


def write_report(args: argparse.Namespace, train_args: list[str], rows: list[dict]) -> str:
    """sweep.json and sweep.md for the seeds done so far; returns the table."""
    summary = summarize(rows)
    test_data = {"test_data": str(args.test_data)} if args.test_data else {}
    write_text(args.out / "sweep.json", json.dumps({"train_args": train_args, **test_data, "seeds": rows,
                                                    "summary": summary}, indent=2) + "\n")
    looks = catalogue_looks(args)
    table = (sweep_looks.looks_markdown(looks, rows, summary, recipe_line(train_args)) if looks
             else markdown(rows, summary, train_args))
    write_text(args.out / "sweep.md", table)
    if looks and args.alone:
        sweep_looks.looks_figure(looks, rows, args.out / "versus_alone.png")
    return table


@flush_denormals()  # every seed's training and scoring (train/numerics.py)
def sweep(args: argparse.Namespace, train_args: list[str]) -> int:
    try:
        test_data = load_test_data(args)
    except DataError as error:
        log.error("--test-data: %s", error)
        return 2
    rows = []
    for index, seed in enumerate(args.seeds, start=1):
        log.info("sweep: seed %d (%d of %d)", seed, index, len(args.seeds))
        try:
            rows.append(run_seed(seed, args, train_args, test_data))
        except SweepError as error:
            log.error("%s%s", error, f"; {args.out / 'sweep.json'} holds the seeds before it" if rows else "")
            return 2
        table = write_report(args, train_args, rows)  # after every seed: a stopped sweep keeps what it measured
    print("\n" + table)
    return 0
