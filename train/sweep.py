"""Train one recipe over several seeds and judge it by the mean and the spread, not one run.

Usage:
    python -m train.sweep --seeds 0,1,2 --out runs/sweep          # the CPU preset, three seeds
    python -m train.sweep --seeds 0,1,2,3,4 --out runs/b -- --lr 1e-3 --epochs 60   # any train options
    python -m train.sweep --seeds 0,1,2 --out runs/sweep --export  # also each seed's int8 loss per format

Each seed trains into OUT/seed_N (``python -m train`` with ``--seed N`` and the options after
``--``), in this process, one after the other, on the same data (the landmark cache is shared).
With ``--export`` each seed's best checkpoint is exported and benchmarked (``python -m export``
and ``python -m benchmark --no-browser`` as their own processes: training imports neither), and
the table gains each format's loss against PyTorch on the test faces.

Writes OUT/sweep.json and OUT/sweep.md: per seed the test and validation PSNR of the best
checkpoint (PyTorch), the no-makeup baseline, the epochs spent at the baseline (validation PSNR
within 0.1 dB of it), the training time, and with --export each int8 file's loss; then the mean
and the spread (sample standard deviation, min and max) over seeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from models.atomic import write_text
from models.checkpoint import checkpoint_split, load_checkpoint
from models.cli import output_folder, positive_int
from models.data import faces_as_tensors, load_split
from models.metrics import mean_psnr_db
from train import trainer
from train.__main__ import main as train_main
from train.numerics import flush_denormals

log = logging.getLogger("train.sweep")

AT_BASELINE_DB = 0.1  # an epoch "at the baseline": validation PSNR at most this far above it


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m train.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--out", type=output_folder, required=True, help="sweep folder: OUT/seed_N per seed")
    parser.add_argument("--export", action="store_true", help="also export and benchmark each seed (int8 loss)")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads for training")
    args = parser.parse_args(own)
    try:
        args.seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    if not args.seeds:
        parser.error("--seeds names no seed")
    forbidden = {"--seed", "--out", "--resume"} & set(train_args)
    if forbidden:
        parser.error(f"{', '.join(sorted(forbidden))} are set per seed by the sweep; leave them out after --")
    return args, train_args


def epochs_at_baseline(metrics_path: Path) -> int:
    rows = trainer.read_metrics(metrics_path)
    return sum(float(r["val_psnr"]) <= float(r["baseline_psnr"]) + AT_BASELINE_DB for r in rows)


def score_checkpoint(path: Path) -> dict:
    """Test and validation PSNR of a checkpoint in PyTorch, with the no-makeup baseline."""
    model, checkpoint = load_checkpoint(path)
    split = checkpoint_split(checkpoint, path)
    figures = {"epoch": int(checkpoint["epoch"])}
    for part in ("test", "val"):
        if not split[part]:
            continue
        source, target = faces_as_tensors(load_split(split, part))
        with torch.no_grad():
            figures[f"{part}_psnr_db"] = mean_psnr_db(model(source), target)
        figures[f"{part}_baseline_db"] = mean_psnr_db(source, target)
    return figures


def int8_losses(checkpoint: Path, run: Path) -> dict:
    """Export and benchmark one seed (own processes); each file's PSNR below PyTorch on the test faces."""
    artifacts, bench = run / "artifacts", run / "bench"
    steps = ([sys.executable, "-m", "export", "--checkpoint", str(checkpoint), "--out", str(artifacts)],
             [sys.executable, "-m", "benchmark", "--artifacts", str(artifacts), "--out", str(bench), "--no-browser",
              "--no-live", "--threads", "1", "--min-runs", "3", "--min-seconds", "0.1"])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode not in (0, 1):  # 1: a gate failed, which the table shows
            raise RuntimeError(f"{' '.join(step[1:3])} failed for {checkpoint}:\n{done.stderr[-2000:]}")
    report = json.loads((bench / "report.json").read_text())
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


def markdown(rows: list[dict], summary: dict, train_args: list[str]) -> str:
    formats = sorted({name for row in rows for name in row.get("int8_loss_db", {})})
    shipped = any("shipped_test_psnr_db" in row for row in rows)
    head = ["seed", "test PSNR", *(["int8 ONNX test PSNR"] if shipped else []), "val PSNR", "no makeup (test)",
            "epochs at baseline", "minutes", *[f"{name} loss" for name in formats]]
    lines = [f"Recipe: `python -m train {' '.join(train_args)}` (CPU preset unless options say otherwise)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row["seed"]), f"{row.get('test_psnr_db', float('nan')):.2f} dB",
                 *([f"{row.get('shipped_test_psnr_db', float('nan')):.2f} dB"] if shipped else []),
                 f"{row['val_psnr_db']:.2f} dB",
                 f"{row.get('test_baseline_db', float('nan')):.2f} dB", str(row["epochs_at_baseline"]),
                 f"{row['train_minutes']:.1f}", *[f"{row['int8_loss_db'][name]:.3f} dB" for name in formats]]
        lines.append("| " + " | ".join(cells) + " |")
    cell = lambda key, unit="dB": (f"{summary[key]['mean']:.2f} ± {summary[key]['std']:.2f} {unit} "  # noqa: E731
                                   f"({summary[key]['min']:.2f}-{summary[key]['max']:.2f})") if key in summary else "-"
    cells = ["mean ± std (min-max)", cell("test_psnr_db"), *([cell("shipped_test_psnr_db")] if shipped else []),
             cell("val_psnr_db"), cell("test_baseline_db"),
             cell("epochs_at_baseline", ""), cell("train_minutes", ""),
             *[f"max {summary[f'int8_loss_db.{name}']['max']:.3f} dB" for name in formats]]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_seed(seed: int, args: argparse.Namespace, train_args: list[str]) -> dict:
    run = args.out / f"seed_{seed}"
    argv = ["--seed", str(seed), "--out", str(run), "--overwrite", *train_args]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    start = time.perf_counter()
    if train_main(argv) != 0:
        raise RuntimeError(f"training seed {seed} failed (see the log above); the sweep stops")
    row = {"seed": seed, "train_minutes": (time.perf_counter() - start) / 60,
           "epochs_at_baseline": epochs_at_baseline(run / trainer.METRICS_FILE)}
    best = run / trainer.CHECKPOINTS["best_psnr"]
    row |= score_checkpoint(best)
    if args.export:
        row["int8_loss_db"] = int8_losses(best, run)
        if "onnx" in row["int8_loss_db"] and "test_psnr_db" in row:  # what ships: the int8 ONNX on the test faces
            row["shipped_test_psnr_db"] = row["test_psnr_db"] - row["int8_loss_db"]["onnx"]
    return row


@flush_denormals()  # every seed's training and scoring (train/numerics.py)
def main(argv: list[str] | None = None) -> int:
    args, train_args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    rows = []
    for index, seed in enumerate(args.seeds, start=1):
        log.info("sweep: seed %d (%d of %d)", seed, index, len(args.seeds))
        rows.append(run_seed(seed, args, train_args))
        summary = summarize(rows)  # written after every seed: a stopped sweep keeps what it measured
        write_text(args.out / "sweep.json", json.dumps({"train_args": train_args, "seeds": rows,
                                                        "summary": summary}, indent=2) + "\n")
        table = markdown(rows, summary, train_args)
        write_text(args.out / "sweep.md", table)
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
