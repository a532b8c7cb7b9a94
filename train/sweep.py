"""Train one recipe over several seeds and judge it by the mean and the spread, not one run.

Usage:
    python -m train.sweep --seeds 0,1,2 --out runs/sweep          # the CPU preset, three seeds
    python -m train.sweep --seeds 0,1,2,3,4 --out runs/b -- --lr 1e-3 --epochs 60   # any train options
    python -m train.sweep --seeds 0,1,2 --out runs/sweep --export  # also each seed's int8 loss per format
    python -m train.sweep --test-data NEW --out runs/c -- --data DIR  # also PSNR on the faces of new people

Each seed trains into OUT/seed_N (``python -m train`` with ``--seed N`` and the options after
``--``), in this process, one after the other, on the same data (the landmark cache is shared).
With ``--export`` each seed's best checkpoint is exported and benchmarked (``python -m export``
and ``python -m benchmark --no-browser`` as their own processes: training imports neither), and
the table gains each format's loss against PyTorch on the test faces. With ``--test-data NEW``
(pairs of people not in --data, any layout --data reads) each seed's best checkpoint is also
scored on NEW: the split's test faces are other images of the training identities, which
overstates quality on a new person (docs/training.md).

Everything is checked before the first seed trains: each seed a valid --seed, none twice; the
options after ``--`` by train's own parser (any spelling), where --seed, --out, --resume and
--overwrite are refused (the sweep sets them per seed); an OUT that holds an earlier sweep is
refused unless --overwrite. A seed whose training fails stops the sweep with its message.

Writes OUT/sweep.json and OUT/sweep.md: per seed the test and validation PSNR of the best
checkpoint (PyTorch), the no-makeup baseline, on the built-in data the real-photo test split's
PSNR and baseline (train/builtin.py), the epochs spent at the baseline (validation PSNR
within 0.1 dB of it), the training time, with --test-data the PSNR on NEW and its no-makeup
baseline, and with --export each int8 file's loss; then the mean
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

from models.atomic import OutputFolderError, lock_folder, unlock_folder, write_text
from models.checkpoint import checkpoint_split, load_checkpoint
from models.cli import output_folder, positive_int, seed_number
from models.data import DataError, decode_pairs, faces_as_tensors
from models.metrics import mean_psnr_db
from train import trainer
from train.__main__ import main as train_main
from train.__main__ import parse_args as train_parse_args
from train.numerics import flush_denormals
from train.pairs import discover_pairs

log = logging.getLogger("train.sweep")

REAL_COLUMNS = {"test-real_psnr_db": "real-photo test PSNR", "test-real_baseline_db": "no makeup (real-photo test)"}
AT_BASELINE_DB = 0.1  # an epoch "at the baseline": validation PSNR at most this far above it


# Options the sweep sets for every seed itself (train's option names).
SET_PER_SEED = ("seed", "out", "resume", "overwrite")


def parse_seeds(text: str) -> list[int]:
    """An argparse type: comma-separated seeds, each one a valid ``--seed``, no seed twice (a spread over
    copies of one run would be a false one)."""
    try:
        seeds = [seed_number(seed.strip()) for seed in text.split(",") if seed.strip()]
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"each seed {error}") from None
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"seed {', '.join(map(str, repeated))} is listed more than once; "
                                         "a seed twice trains the same run twice")
    if not seeds:
        raise argparse.ArgumentTypeError("names no seed")
    return seeds


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The sweep's options and train's, every one checked before the first seed trains."""
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m train.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=parse_seeds, default="0,1,2",
                        help="comma-separated seeds, each once (default: %(default)s)")
    parser.add_argument("--out", type=output_folder, required=True, help="sweep folder: OUT/seed_N per seed")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier sweep in OUT")
    parser.add_argument("--test-data", type=Path, help="pairs of faces of people not in the training data (any "
                        "layout --data reads): each seed's best checkpoint is scored on them too")
    parser.add_argument("--export", action="store_true", help="also export and benchmark each seed (int8 loss)")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads for training")
    args = parser.parse_args(own)
    # train's own parser reads the options after -- (every spelling: --seed=5, --ou D) and checks the recipe,
    # with a seed's folder as --out (so train's default --out is not checked); a later --out is the user's.
    seed_folder = str(args.out / f"seed_{args.seeds[0]}")
    args.recipe, given = train_parse_args(["--out", seed_folder, *train_args])
    given = (given - {"out"}) | ({"out"} if args.recipe.out != seed_folder else set())
    set_here = [name for name in SET_PER_SEED if name in given] + (["threads"] if args.threads and "threads" in given
                                                                   else [])
    if set_here:
        parser.error(f"{', '.join('--' + name for name in set_here)} after -- "
                     f"{'is' if len(set_here) == 1 else 'are'} set per seed by the sweep; leave "
                     f"{'it' if len(set_here) == 1 else 'them'} out (the sweep's own --overwrite and --threads "
                     "go before --)")
    earlier = earlier_sweep(args.out)
    if earlier and not args.overwrite:
        parser.error(f"--out {args.out} holds an earlier sweep ({earlier}); pass --overwrite to replace it, "
                     "or another --out")
    if args.test_data is not None:
        try:
            args.test_pairs = discover_pairs(args.test_data)
        except DataError as error:
            parser.error(f"--test-data: {error}")
    return args, train_args


def earlier_sweep(out: Path) -> Path | None:
    """The first file of an earlier sweep in ``out``: its table, or a seed's run."""
    marks = [out / "sweep.json", *sorted(out.glob(f"seed_*/{trainer.CHECKPOINTS['last']}"))]
    return next((mark for mark in marks if mark.exists()), None)


def epochs_at_baseline(metrics_path: Path) -> int:
    rows = trainer.read_metrics(metrics_path)
    return sum(float(r["val_psnr"]) <= float(r["baseline_psnr"]) + AT_BASELINE_DB for r in rows)


TEST_DATA_BATCH = 16  # faces per forward pass on --test-data: a folder of any size fits in memory


def score_test_data(path: Path, faces: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """PSNR of a checkpoint on the --test-data faces, and their no-makeup baseline."""
    model, _ = load_checkpoint(path)
    source, target = faces
    with torch.no_grad():
        made_up = torch.cat([model(batch) for batch in source.split(TEST_DATA_BATCH)])
    return {"test_data_psnr_db": mean_psnr_db(made_up, target), "test_data_baseline_db": mean_psnr_db(source, target)}


def load_test_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    """The --test-data faces at the recipe's image size, decoded once for every seed, and their hashes."""
    if args.test_data is None:
        return None
    cache, _ = decode_pairs(args.test_pairs, args.recipe.image_size, origin="--test-data")
    log.info("--test-data: %d pairs from %s", len(cache.pairs), args.test_data)
    return (*faces_as_tensors(cache), cache.hashes)


def trained_on_test_data(checkpoint: Path, hashes: list[str]) -> int:
    """How many --test-data pairs the seed's training also read (identical files)."""
    trained = {entry["sha256"] for entry in checkpoint_split(load_checkpoint(checkpoint)[1], checkpoint)["train"]}
    return sum(digest in trained for digest in hashes)


class SweepError(RuntimeError):
    """A seed's training, export or benchmark failed: the sweep stops with this message, not a traceback."""


def int8_losses(checkpoint: Path, run: Path) -> dict:
    """Export and benchmark one seed (own processes); each file's PSNR below PyTorch on the test faces."""
    artifacts, bench = run / "artifacts", run / "bench"
    steps = ([sys.executable, "-m", "export", "--checkpoint", str(checkpoint), "--out", str(artifacts)],
             [sys.executable, "-m", "benchmark", "--artifacts", str(artifacts), "--out", str(bench), "--no-browser",
              "--no-live", "--threads", "1", "--min-runs", "3", "--min-seconds", "0.1"])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode not in (0, 1):  # 1: a gate failed, which the table shows
            raise SweepError(f"{' '.join(step[1:3])} failed for {checkpoint}:\n{done.stderr[-2000:]}")
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
    new_faces = any("test_data_psnr_db" in row for row in rows)
    real = [key for key in REAL_COLUMNS if any(key in row for row in rows)]  # the built-in data's test-real
    head = ["seed", "test PSNR", *(["int8 ONNX test PSNR"] if shipped else []), "val PSNR", "no makeup (test)",
            *[REAL_COLUMNS[key] for key in real],
            *(["--test-data PSNR", "--test-data no makeup"] if new_faces else []),
            "epochs at baseline", "minutes", *[f"{name} loss" for name in formats]]
    lines = [f"Recipe: `python -m train {' '.join(train_args)}` (CPU preset unless options say otherwise)", "",
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
    row |= trainer.score_checkpoint(best)
    if test_data is not None:
        row |= score_test_data(best, test_data[:2])
        row["test_data_pairs_in_training"] = trained_on_test_data(best, test_data[2])
        if row["test_data_pairs_in_training"]:
            log.warning("seed %d trained on %d of the --test-data pairs (identical files): its --test-data PSNR "
                        "overstates new faces", seed, row["test_data_pairs_in_training"])
    if args.export:
        row["int8_loss_db"] = int8_losses(best, run)
        if "onnx" in row["int8_loss_db"] and "test_psnr_db" in row:  # what ships: the int8 ONNX on the test faces
            row["shipped_test_psnr_db"] = row["test_psnr_db"] - row["int8_loss_db"]["onnx"]
    return row


def write_report(args: argparse.Namespace, train_args: list[str], rows: list[dict]) -> str:
    """sweep.json and sweep.md for the seeds done so far; returns the table."""
    summary = summarize(rows)
    test_data = {"test_data": str(args.test_data)} if args.test_data else {}
    write_text(args.out / "sweep.json", json.dumps({"train_args": train_args, **test_data, "seeds": rows,
                                                    "summary": summary}, indent=2) + "\n")
    table = markdown(rows, summary, train_args)
    write_text(args.out / "sweep.md", table)
    return table


@flush_denormals()  # every seed's training and scoring (train/numerics.py)
def main(argv: list[str] | None = None) -> int:
    args, train_args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        lock_folder(args.out)  # a second sweep into this --out is refused here, before any seed trains
    except OutputFolderError as error:
        log.error("%s", error)
        return 2
    try:
        return sweep(args, train_args)
    finally:
        unlock_folder(args.out)  # sweeps one after another in one process reuse the folder


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


if __name__ == "__main__":
    sys.exit(main())
