"""Train one recipe over several seeds and judge it by the mean and the spread, not one run.

Usage:
    python -m train.sweep --seeds 0,1,2 --out runs/sweep          # the CPU preset, three seeds
    python -m train.sweep --seeds 0,1,2,3,4 --out runs/b -- --lr 1e-3 --epochs 60   # any train options
    python -m train.sweep --seeds 0,1,2 --out runs/sweep --export  # also each seed's int8 loss per format
    python -m train.sweep --test-data NEW --out runs/c -- --data DIR  # also PSNR on the faces of new people
    python -m train.sweep --alone --export --out runs/d -- --looks berry,natural,classic,smoky
                                                                   # each look against its own model

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

A catalogue (several looks after ``--``) is scored per look, each beside its own no-makeup baseline; with
``--alone`` each seed also trains each look alone (OUT/seed_N/alone_NAME: its own pairs, the same epochs, one
look's batch) and the table gives each look against it, in PyTorch and with ``--export`` in the int8 ``.onnx``,
with OUT/versus_alone.png (train/sweep_looks.py).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

from models.atomic import OutputFolderError, lock_folder, unlock_folder
from models.cli import output_folder, positive_int, seed_number
from train.__main__ import parse_args as train_parse_args
from train.config import CHECKPOINTS

log = logging.getLogger("train.sweep")

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
    parser.add_argument("--formats", nargs="+", metavar="FORMAT", help="with --export: the formats to export "
                        "and benchmark (python -m export's --formats; default: all; onnx: the shipped .onnx alone)")
    parser.add_argument("--alone", action="store_true", help="several looks: also train each look alone per seed, "
                        "on its own pairs for the same epochs, and give each look against it (the catalogue's aim: "
                        "within 0.3 dB)")
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
    args.given = given
    if args.formats and not args.export:
        parser.error("--formats picks what --export exports; give --export too")
    if args.formats:
        refused = export_refuses(args.formats)
        if refused:
            parser.error(f"--formats: {refused}")
    looks = args.recipe.looks or ()
    if args.alone and len(looks) < 2:
        parser.error("--alone trains each look of a catalogue alone beside it; the options after -- train one look "
                     "(give several: -- --looks A,B or --data NAME=DIR per look)")
    if args.test_data is not None and len(looks) > 1:
        parser.error(f"--test-data holds one look's pairs, and these options train {len(looks)} looks "
                     f"({', '.join(looks)}); sweep each look alone (-- --looks NAME) with it")
    earlier = earlier_sweep(args.out)
    if earlier and not args.overwrite:
        parser.error(f"--out {args.out} holds an earlier sweep ({earlier}); pass --overwrite to replace it, "
                     "or another --out")
    if args.test_data is not None:
        from models.data import DataError  # reading images brings numpy and torch: only with --test-data
        from train.pairs import discover_pairs

        try:
            args.test_pairs = discover_pairs(args.test_data)
        except DataError as error:
            parser.error(f"--test-data: {error}")
    return args, train_args


def export_refuses(formats: list[str]) -> str | None:
    """What ``python -m export`` says of ``--formats FORMATS`` (None: it takes them), asked of its own parser in a
    process of its own (train does not import export: the data flows the other way, docs/structure.md)."""
    done = subprocess.run([sys.executable, "-m", "export", "--formats", *formats, "--help"], capture_output=True,
                          text=True)
    return None if done.returncode == 0 else done.stderr.strip().splitlines()[-1]


def earlier_sweep(out: Path) -> Path | None:
    """The first file of an earlier sweep in ``out``: its table, or a seed's run."""
    marks = [out / "sweep.json", *sorted(out.glob(f"seed_*/{CHECKPOINTS['last']}"))]
    return next((mark for mark in marks if mark.exists()), None)


def main(argv: list[str] | None = None) -> int:
    args, train_args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        lock_folder(args.out)  # a second sweep into this --out is refused here, before any seed trains
    except OutputFolderError as error:
        log.error("%s", error)
        return 2
    # torch, training and the scoring come in with the work (train/sweep_runs.py): --help and argument
    # errors answer at once.
    from train.sweep_runs import sweep

    try:
        return sweep(args, train_args)
    finally:
        unlock_folder(args.out)  # sweeps one after another in one process reuse the folder


if __name__ == "__main__":
    sys.exit(main())
