"""What a training run is made of, as plain data read without torch: its options (TrainConfig, the
presets), the choices they offer (variants in models/variants.py, pixel losses, augmentations, eye-mask
sources) and the checkpoints it writes. ``python -m train`` and ``python -m train.sweep`` parse their
command lines with these before anything heavy is imported; the modules that do the work read the same
names (train/losses.py, train/augment.py, train/eye_masks.py, train/trainer.py)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_SYNTHETIC_DIR = Path("data/synthetic")
# The folder layouts of a data set's pairs besides pairs.csv: (sources, targets) (train/pairs.py).
PAIR_LAYOUTS = (("source", "target"), ("non-makeup", "makeup"))
# The pixel term of the loss (train/losses.py).
PIXEL_LOSSES = ("l1", "charbonnier")
# Changes applied identically to both images of a training pair (train/augment.py).
AUGMENTATIONS = ("none", "photometric", "geometric", "both")
# Where the eye mask comes from (train/eye_masks.py): face-parsing label maps, face landmarks (BlazeFace,
# detected once per source image and cached in DIR/.tinybeauty_landmarks.json), the face mesh's eye contours,
# or the fixed band. "auto" is the mesh: over three seeds of the CPU preset on the built-in data it beat the
# label maps by 1.1-1.6 dB of test PSNR per seed (docs/training.md). An image in which a located source (mesh,
# landmarks) finds no face takes its label map where the dataset has them, else the band.
EYE_MASK_SOURCES = ("auto", "labels", "landmarks", "mesh", "band")
# The built-in set's real people (train/portraits.py: PORTRAITS) and the one held out by default: that person's
# pairs are the real-photo test split (test-real), the others' train; --held-out-person picks another.
REAL_PEOPLE = ("collins", "cameraman", "hopper")
HELD_OUT_PERSON = "hopper"
CHECKPOINTS = {
    "best_loss": "tinybeauty_best_loss.pt",
    "best_psnr": "tinybeauty_best_psnr.pt",
    "final": "tinybeauty_final.pt",
    "last": "tinybeauty_last.pt",  # written every epoch; what --resume continues from
}


@dataclass
class TrainConfig:
    """One run's resolved options: written to OUT/config.json and into every checkpoint (train_config)."""

    data: str | None = None
    looks: list[str] | None = None  # several looks (or one named look), in the order of the network's look input
    look_data: dict[str, str] | None = None  # each look's pair folder, for looks of one's own data
    add_look: str | None = None  # --add-look: the look trained onto the frozen network of ``start_from``
    start_from: str | None = None  # --from: the checkpoint the look is added to (train/add_look.py)
    out: str = "tinybeauty_model"
    preset: str = "paper"
    variant: str = "tiny"
    epochs: int = 50
    batch_size: int = 32
    image_size: int = 256
    crop: int | None = None
    lr: float = 2e-4
    l1_weight: float = 1.0
    eyeliner_weight: float = 0.5
    pixel_loss: str = "charbonnier"  # the paper's l1 sat at the baseline for 7-25+ epochs by seed (train/losses.py)
    charbonnier_eps: float = 1e-2
    qat_epochs: int | None = None  # None: the last twelfth of --epochs (QAT_SHARE)
    precision: str = "fp32"
    palette_bits: int = 0  # 4-bit tables cost 0.36 dB of test PSNR on seed 1 (docs/training.md)
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    eye_mask: str = "auto"
    augment: str = "none"
    held_out_person: str = HELD_OUT_PERSON  # the built-in set's real-photo test person (train/builtin.py)
    # A catalogue's share of training samples whose face is drawn in two of its looks at once: look weights (1-t, t)
    # against the same blend of the two looks' targets (train/dataset.py), so a blend of looks is what it says.
    blend_share: float = 0.0
    reparam: bool = False
    # The face mesh's region maps beside the face (train/region_maps.py); --no-region-inputs: the face alone.
    region_inputs: bool = True
    seed: int = 0
    sample_every: int = 5
    synthetic_pairs: int = 675
    device: str = "auto"
    threads: int | None = None
    resume: bool = False
    overwrite: bool = False
    wandb: bool = False
    wandb_project: str = "tinybeauty"

    def record(self) -> dict:
        """The options as config.json and checkpoints record them; a run without looks or region inputs leaves
        those options out, so it records exactly what it did before they existed."""
        values = asdict(self)
        return {k: v for k, v in values.items()
                if not (k in OPTIONAL_RECORD and v is None)
                and not (k in ABSENT_FROM_RECORD and v == ABSENT_FROM_RECORD[k])}


# Options a run records only when given: a run without them records what it did before they existed.
OPTIONAL_RECORD = ("looks", "look_data", "add_look", "start_from")
# What a recorded run did where its record leaves an option out (record() drops these at these values): read so, not
# as today's default, a resumed run keeps its own input whatever the default becomes.
ABSENT_FROM_RECORD = {"region_inputs": False, "blend_share": 0.0, "held_out_person": HELD_OUT_PERSON}


PRECISIONS = ("fp32", "bf16")
# Quantization-aware fine-tuning takes the last twelfth of the epochs unless --qat-epochs says:
# 10 of the CPU preset's 120, 4 of the paper's 50, none in runs of a few epochs.
QAT_SHARE = 1 / 12
PRESETS: dict[str, dict] = {
    "paper": {},
    "cpu": {"epochs": 120, "batch_size": 16, "crop": 128, "lr": 5e-4, "synthetic_pairs": 675},
}


# A catalogue's share of the CPU preset: the epochs of this many passes over one look's pairs, shared out between
# its looks (an epoch holds every look's pairs): four looks train 10 epochs, ~7 min on 2 cores, so that `make bench`
# of the built-in catalogue, which scores every look in every runtime, stays near 25 minutes with its setup. On the
# held-out real person the catalogue does no worse for it: 6 epochs beat 15 and 30 there (docs/training.md).
CATALOGUE_PASSES = 40


def catalogue_batch(batch_size: int, looks: int) -> int:
    """A catalogue's batch: the one-look batch times the square root of its looks (four looks: twice it). An epoch
    holds every look's pairs, so at the one-look batch the shared network takes ``looks`` times the steps of each
    look's own run and fits the cartoons past what the held-out real person gains from; at ``looks`` times the batch
    it takes as many as one look's run and falls below the looks alone on the cartoons (batch 64, seed 0). Between
    the two, four looks at batch 32 score above each look alone on the cartoons and closer to it on the real person
    than at 16, over three seeds (docs/training.md)."""
    return round(batch_size * math.sqrt(looks))


def preset_values(name: str, looks: int) -> dict:
    """A preset's options for a run of ``looks`` looks. The CPU preset is a time budget: one look trains 120
    epochs; a catalogue shares CATALOGUE_PASSES epochs' worth out between its looks, in batches of
    :func:`catalogue_batch` (four looks: 10 epochs, batch 32)."""
    values = dict(PRESETS[name])
    if name == "cpu" and looks > 1:
        values["epochs"] = math.ceil(CATALOGUE_PASSES / looks)
        values["batch_size"] = catalogue_batch(values["batch_size"], looks)
    return values


# --add-look trains one look's gates on a frozen network: a few epochs unless --epochs says (docs/training.md).
ADD_LOOK_EPOCHS = 10
# What a resumed run may change; everything else comes from the checkpoint's train_config.
RESUME_MAY_CHANGE = {"epochs", "threads", "device", "sample_every", "wandb", "wandb_project", "resume", "overwrite",
                     "out"}
