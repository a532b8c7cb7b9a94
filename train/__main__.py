"""Train TinyBeauty on paired faces (without makeup -> with one makeup style).

Usage:
    python -m train                              # CPU preset, the built-in berry look (cartoons, real portraits)
    python -m train --data DIR                   # the paper's schedule on your pairs
    python -m train --data DIR --epochs 5 --out runs/try1 --resume   # or --overwrite to start over
    python -m train --looks berry,natural,classic,smoky   # several built-in looks in one network
    python -m train --data berry=DIR1 --data smoky=DIR2  # several looks of your own (or --data PARENT
                                                         # whose subfolders are the looks' pair folders)
    python -m train --add-look smoky --from runs/looks/tinybeauty_best_psnr.pt --out runs/plus_smoky
                                                 # one more look on a trained network (--data DIR: yours)
    python -m train --no-region-inputs           # the face alone, without the face mesh's region maps beside it
    torchrun --nproc_per_node 2 -m train ...     # DistributedDataParallel (gloo on CPU)

Presets fill every option you do not give explicitly:
    paper (default with --data): 50 epochs, batch 32, full 256x256 images, Adam lr 2e-4.
    cpu   (default without --data): the built-in set (train/builtin.py: 675 cartoon pairs, 539 of them
          training, and 240 real-portrait pairs), 128x128 random crops of the 256x256 images, batch 16,
          lr 5e-4, 120 epochs; a catalogue of looks shares 40 epochs' worth out (four looks: 10 epochs).

Split: 10% validation (learning-rate schedule, best checkpoint, export gate) and 10% test
(held out: only the benchmark reads it), the rest training, by --seed; recorded in every
checkpoint. --test-fraction 0 gives the paper's 90/10 train/validation split. On the built-in
set the split is of the cartoons; the portraits of two people train, and the third person's
(--held-out-person, default hopper) are the real-photo test split (test-real), held out like the
test split.

--resume continues OUT/tinybeauty_last.pt with the configuration stored in it (data, preset,
split, seed, every option); only --epochs, --threads, --device, --sample-every and the W&B
options may differ, any other flag that contradicts the checkpoint is refused.

Several looks (train/multilook.py): one network, its decoder gated per look, each look's pairs split on their
own (recorded per look), batches mixing looks, each sample's loss through its own look; validation,
the log and held_out.json give each look's PSNR beside its no-makeup baseline.

--add-look NAME --from CHECKPOINT (train/add_look.py) copies the network of CHECKPOINT with one look
more and trains only the new look's gates, on its own pairs, everything else frozen: the earlier
looks' outputs stay bit-identical. The variant, image size, split fractions, seed and schedule options
come from the checkpoint's run unless given; the earlier looks' recorded splits are kept.

Writes to --out: tinybeauty_best_loss.pt, tinybeauty_best_psnr.pt, tinybeauty_final.pt,
tinybeauty_last.pt (resume point), metrics.csv (one row per epoch), samples_epoch_*.png,
training_curves.png, config.json (the resolved options) and held_out.json (the best-PSNR checkpoint's
PSNR and no-makeup baseline on the test and real-photo test splits, scored once at the end). A
second run into an --out that a run is writing is refused (exit 2) before it touches any file there.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, fields
from pathlib import Path

from models.atomic import OutputFolderError, check_output_folder
from models.cli import (
    fraction_from_zero,
    fraction_open,
    non_negative_float,
    non_negative_int,
    output_folder_name,
    positive_float,
    positive_int,
    seed_number,
)
from models.variants import INPUT_MULTIPLE, VARIANT_FIELDS
from train.config import (
    ADD_LOOK_EPOCHS,
    AUGMENTATIONS,
    DEFAULT_SYNTHETIC_DIR,
    EYE_MASK_SOURCES,
    PIXEL_LOSSES,
    PRECISIONS,
    PRESETS,
    QAT_SHARE,
    REAL_PEOPLE,
    TrainConfig,
    preset_values,
)
from train.look_options import add_look_options, look_options, look_problems
from train.looks import LOOKS


def parse_args(argv: list[str] | None) -> tuple[TrainConfig, set[str]]:
    """The resolved config and the names of the options given on the command line."""
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrainConfig()
    # Options default to None so a preset can fill exactly the ones the user did not give.
    add_data_options(parser.add_argument_group("data and split").add_argument, defaults)
    add_schedule_options(parser.add_argument_group("model, loss and schedule").add_argument, defaults)
    add_quantization_options(parser.add_argument_group("precision and quantization-aware fine-tuning").add_argument,
                             defaults)
    add_run_options(parser.add_argument_group("output and run").add_argument, defaults)
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    if "held_out_person" in given and given.get("data"):
        parser.error(f"--held-out-person {given['held_out_person']} picks the built-in set's real-photo test person; "
                     "--data has its own test split (--test-fraction): drop one of them")
    preset = given.get("preset") or ("paper" if given.get("data") else "cpu")
    try:
        if given.get("add_look") or given.get("start_from"):
            added = add_look_options(given) | ({} if "epochs" in given else {"epochs": ADD_LOOK_EPOCHS})
            given = {k: v for k, v in given.items() if k != "data"} | added
        else:
            given |= look_options(given.pop("data", None), given.pop("looks", None))
    except ValueError as error:
        parser.error(str(error))
    # An added look takes its schedule from the run of --from (train/add_look.py), not from a preset.
    looks = len(given.get("looks") or ())
    from_preset = {} if "add_look" in given else preset_values(preset, looks)
    values = {**asdict(defaults), **from_preset, **given, "preset": preset}
    if values["qat_epochs"] is None:
        values["qat_epochs"] = round(values["epochs"] * QAT_SHARE)
    config = TrainConfig(**values)
    problems = config_problems(config)
    if problems:
        parser.error("; ".join(problems))
    return config, set(given)


def add_data_options(add, defaults: TrainConfig) -> None:
    add("--data", action="append", help="folder of pairs (source/ + target/, non-makeup/ + makeup/, or pairs.csv); "
        "several looks: NAME=DIR once per look, or one folder whose subfolders are the looks' pair folders; "
        f"default: render the built-in set (cartoons, real portraits) into {DEFAULT_SYNTHETIC_DIR}")
    add("--looks", help="several looks in one network, comma-separated: built-in looks (train/looks: "
        f"{','.join(LOOKS)}) rendered on the same faces, or a choice of --data's subfolders (default: one look, "
        "berry)")
    add("--add-look", metavar="NAME", help="add one look to the network of --from without starting over: only "
        "its gates train, on its pairs alone (--data DIR; none for a built-in look), every earlier look's "
        f"output stays bit-identical (default {ADD_LOOK_EPOCHS} epochs; docs/training.md)")
    add("--from", dest="start_from", metavar="CHECKPOINT", help="the checkpoint --add-look adds its look to")
    add("--synthetic-pairs", type=positive_int,
        help=f"cartoon pairs to render when --data is not given (default {defaults.synthetic_pairs})")
    add("--image-size", type=positive_int,
        help=f"images are resized to this square size (default {defaults.image_size})")
    add("--crop", type=positive_int, help="train on random square crops of this size (default: whole images)")
    add("--val-fraction", type=fraction_open, help=f"validation share of all pairs (default {defaults.val_fraction})")
    add("--test-fraction", type=fraction_from_zero,
        help=f"held-out test share of all pairs, never used in training; 0 gives "
        f"the paper's 90/10 train/validation split (default {defaults.test_fraction})")
    add("--held-out-person", choices=REAL_PEOPLE, help="the built-in set's real person whose portraits are the "
        "real-photo test split (test-real); the others' train. Another choice judges a change on another new face "
        f"(default {defaults.held_out_person}; docs/training.md)")
    add("--seed", type=seed_number, help=f"seed of the split, augmentation and init (default {defaults.seed})")
    add("--eye-mask", choices=EYE_MASK_SOURCES, help="where the eyeliner loss's eye mask comes from: auto (the "
        "face mesh's eye contours; an image without a face found takes its label map if the data has them, else "
        "the fixed band), labels, landmarks (ellipses at BlazeFace's eyes), mesh (as auto), band "
        f"(default {defaults.eye_mask})")
    add("--augment", choices=AUGMENTATIONS, help="changes applied identically to both images of a training pair: "
        "photometric (colour), geometric (zoom, rotation, shift; the eye mask too), both, or none "
        f"(default {defaults.augment}; docs/training.md)")
    add("--blend-share", type=fraction_from_zero, help="several looks: this share of the training samples is a face "
        "drawn in two looks at once, its look weights (1-t, t) against the same blend of the two looks' targets "
        "(on the faces the looks share: the built-in looks share all), so that a blend of looks puts on that blend "
        f"of their makeup (default {defaults.blend_share}; docs/training.md)")


def add_schedule_options(add, defaults: TrainConfig) -> None:
    add("--preset", choices=sorted(PRESETS), help="schedule preset (default: paper with --data, cpu without)")
    add("--variant", choices=sorted(VARIANT_FIELDS), help=f"model size (default {defaults.variant})")
    add("--reparam", action="store_true", default=None, help="train each 3x3 conv as parallel 3x3, 1x1 and identity "
        "branches, merged into the plain network before export (docs/training.md)")
    add("--region-inputs", action=argparse.BooleanOptionalAction, default=None, help="give the network the face "
        "mesh's region maps (lips, eyes, cheeks) beside the face, carried through every augmentation (+1.2 dB on the "
        "built-in set's held-out real person). Costs: the face mesh runs once on every training image, its "
        "shapes cached in the data folder (.tinybeauty_regions.json); the shipped model then needs the maps "
        "too, drawn from a face mesh on every face it makes up. --no-region-inputs: the face alone "
        f"(default {'on' if defaults.region_inputs else 'off'}; an --add-look run takes its network's; "
        "docs/training.md)")
    add("--epochs", type=positive_int, help=f"epochs (paper {defaults.epochs})")
    add("--batch-size", type=positive_int,
        help=f"global batch size (paper {defaults.batch_size}, cpu {PRESETS['cpu']['batch_size']} for one look, "
        f"{PRESETS['cpu']['batch_size']} x sqrt(looks) for a catalogue; split across processes)")
    add("--lr", type=positive_float, help=f"Adam learning rate (paper {defaults.lr})")
    add("--plateau-factor", type=fraction_open, help=f"ReduceLROnPlateau factor (default {defaults.plateau_factor})")
    add("--plateau-patience", type=non_negative_int,
        help=f"ReduceLROnPlateau patience in epochs, counted once validation PSNR "
        f"is above the no-makeup baseline (default {defaults.plateau_patience})")
    add("--l1-weight", type=non_negative_float, help=f"weight of the L1 loss (default {defaults.l1_weight})")
    add("--eyeliner-weight", type=non_negative_float,
        help=f"weight of the eyeliner loss (default {defaults.eyeliner_weight})")
    add("--pixel-loss", choices=PIXEL_LOSSES, help="pixel term: the paper's l1, or charbonnier (L1 for large "
        f"errors, quadratic below --charbonnier-eps; see train/losses.py) (default {defaults.pixel_loss})")
    add("--charbonnier-eps", type=positive_float, help=f"Charbonnier's eps (default {defaults.charbonnier_eps})")


def add_quantization_options(add, defaults: TrainConfig) -> None:
    add("--precision", choices=PRECISIONS, help="float32, or bfloat16 autocast for the float phase's forward "
        f"and backward (weights, loss and the fine-tuning phase stay float32) (default {defaults.precision})")
    add("--qat-epochs", type=non_negative_int, help="the last N of --epochs are quantization-aware fine-tuning: "
        "int8 rounding (and --palette-bits tables) in the forward pass (train/qat.py); 0 turns it off "
        f"(default: a twelfth of --epochs, rounded: {round(120 * QAT_SHARE)} of the CPU preset's 120)")
    add("--palette-bits", type=non_negative_int, help="bits of the look-up tables the large convolutions' weights "
        f"become during quantization-aware fine-tuning; 0 keeps them free (default {defaults.palette_bits})")


def add_run_options(add, defaults: TrainConfig) -> None:
    add("--out", type=output_folder_name, help=f"output folder (default {defaults.out})")
    add("--resume", action="store_true", default=None, help="continue from OUT/tinybeauty_last.pt")
    add("--overwrite", action="store_true", default=None, help="start a new run in an OUT that already holds one")
    add("--sample-every", type=positive_int,
        help=f"write a sample grid every N epochs (default {defaults.sample_every})")
    add("--device", help="auto, cpu, cuda or cuda:N (default auto: CUDA when present)")
    add("--threads", type=positive_int, help="CPU threads for PyTorch (default: PyTorch's choice)")
    add("--wandb", action="store_true", default=None, help="log to Weights & Biases (offline unless configured)")
    add("--wandb-project", help=f"W&B project (default {defaults.wandb_project})")


def config_problems(config: TrainConfig) -> list[str]:
    """What is wrong with the resolved options together (presets included), one line each."""
    problems = [f"--{f.name.replace('_', '-')} must be positive" for f in fields(config)
                if f.name in ("epochs", "batch_size", "image_size", "sample_every", "synthetic_pairs")
                and getattr(config, f.name) <= 0]
    if config.image_size % INPUT_MULTIPLE:
        problems.append(f"--image-size {config.image_size} must be divisible by {INPUT_MULTIPLE}")
    if config.crop is not None and (config.crop % INPUT_MULTIPLE or not 0 < config.crop <= config.image_size):
        problems.append(f"--crop {config.crop} must be divisible by {INPUT_MULTIPLE} and at most --image-size")
    val, test = config.val_fraction, config.test_fraction
    if not (0 < val < 1 and 0 <= test < 1 and val + test < 1):
        problems.append("--val-fraction must be in (0, 1), --test-fraction in [0, 1), and their sum under 1")
    if config.qat_epochs > config.epochs:
        problems.append(f"--qat-epochs {config.qat_epochs} must be at most --epochs {config.epochs}")
    if config.palette_bits > 8:
        problems.append(f"--palette-bits {config.palette_bits} must be at most 8 (0 turns palettization off)")
    problems += look_problems(config.look_data) if config.look_data else []
    if config.blend_share and not config.resume and (config.add_look or len(config.looks or ()) < 2):
        problems.append(f"--blend-share {config.blend_share} blends the looks of a catalogue; it needs a run of "
                        "several looks (--looks A,B or --data NAME=DIR per look), not "
                        + ("--add-look (it trains one look)" if config.add_look else "one look"))
    if config.resume and config.overwrite:
        problems.append("--resume and --overwrite contradict each other; pick one")
    try:  # the default --out too: argparse checks only a value given on the command line
        check_output_folder(Path(config.out))
    except OutputFolderError as error:
        problems.append(f"--out: {error}")
    return problems


def main(argv: list[str] | None = None) -> int:
    config, given_names = parse_args(argv)
    # torch, the data and the network come in with the work (train/pipeline.py): --help and argument
    # errors answer at once.
    from train.pipeline import run_command

    return run_command(config, given_names)


if __name__ == "__main__":
    sys.exit(main())
