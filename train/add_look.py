"""One more look on a trained network, without starting over (``python -m train --add-look NAME --from
CHECKPOINT``; the command line is read in train/look_options.py).

The network of CHECKPOINT is copied into one holding its looks and NAME (models/tinybeauty.py: each look
owns a row of the decoder's gates, the rest is shared). Only NAME's row trains:
every other parameter is frozen and the gates' gradient is masked to the new row (Adam then leaves the
other rows exactly as they were: zero gradients give zero steps). An earlier look's one-hot input mixes
its own row and exact zeros, so its outputs stay bit-identical in PyTorch float
(tests/train/test_add_look.py); a one-look CHECKPOINT, which has no gates, gets gates of exactly 1 for its
look. The run trains on NAME's pairs alone, split by the
source run's seed and fractions; the checkpoint's split and ``looks`` hold every look, the earlier
looks' records as CHECKPOINT has them. A network that reads region maps beside the face (the default network)
keeps reading them: the new look's pairs get their maps from the face mesh too (train/region_maps.py), and
the run takes its region inputs from CHECKPOINT's network, not from the command line's default.

Quantization-aware state: the added look trains in float (no --qat-epochs). The checkpoint keeps the
source's ``skip_factors``, so the export rescales the shared network as it did for CHECKPOINT, and it
calibrates the int8 activation ranges on training faces as for any float-phase checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import CheckpointError, checkpoint_split, read_checkpoint, rebuild_model
from models.data import PairCache, concat_caches
from models.tinybeauty import GATE_START, TinyBeauty, build_model, describe
from train.config import ABSENT_FROM_RECORD, DEFAULT_SYNTHETIC_DIR, TrainConfig
from train.look_options import builtin_folder
from train.looks import LOOKS
from train.multilook import LookSource, looks_split, swatch_hex

log = logging.getLogger(__name__)

# The source run's options an added look trains with unless the command line gives them: its split
# (fractions, seed, eye masks), its data's size and its schedule.
INHERITED = ("variant", "image_size", "reparam", "crop", "batch_size", "lr", "l1_weight", "eyeliner_weight",
             "pixel_loss", "charbonnier_eps", "plateau_factor", "plateau_patience", "val_fraction", "test_fraction",
             "eye_mask", "augment", "seed", "synthetic_pairs", "precision", "preset", "held_out_person")
# Options that must be the source's: the network, the images it was trained for and its real-photo test person.
SAME_AS_SOURCE = ("variant", "image_size", "reparam", "held_out_person")
# Entries of the source checkpoint every added-look checkpoint carries on: the skip rescaling its
# quantization-aware phase trained with, which the export then applies to the shared network.
CARRIED = ("skip_factors",)
# A gate's parameter that makes it exactly 1.0 in float32 (sigmoid(GATE_SHARPNESS * 1.0) rounds to 1): a one-look
# source's look, gated, is the source's network bit for bit.
OPEN_GATE = 1.0


@dataclass
class AddedLook:
    """An --add-look run: its resolved options and the checkpoint it adds the look to."""

    config: TrainConfig
    source: dict  # the checkpoint of --from
    path: Path

    @property
    def name(self) -> str:
        return self.config.add_look

    @property
    def index(self) -> int:
        """The new look's place in the look input: after every earlier look."""
        return len(self.config.looks) - 1

    def network(self, device: torch.device) -> TinyBeauty:
        """The source's network with the new look, on ``device``, training only the new look's gates."""
        model = added_network(rebuild_model(self.source, self.path), self.name).to(device)
        trained = train_only_gates(model, self.index)
        log.info("%s; training only %s's gates (%d weights)", describe(model), self.name, trained)
        return model

    def look_source(self) -> LookSource:
        """Where the new look's pairs are: --data, else the built-in renderer's folder for it."""
        if self.config.data:
            return LookSource(self.name, Path(self.config.data))
        return LookSource(self.name, builtin_folder(DEFAULT_SYNTHETIC_DIR, self.name), builtin=True)

    def as_new_look(self, cache: PairCache) -> PairCache:
        """The new look's pairs, each carrying the new look's index (what picks its gates)."""
        return concat_caches([cache], cache.eye_mask, np.full(len(cache), self.index, np.int64))[0]

    def earlier_records(self) -> dict[str, dict]:
        """The earlier looks' split records as the source has them, by look."""
        earlier = checkpoint_split(self.source, self.path)
        return dict(earlier["looks"]) if "looks" in earlier else {self.config.looks[0]: earlier}

    def earlier_folders(self) -> list[Path]:
        """Where the earlier looks' pairs were: a built-in look takes their face caches (the same faces)."""
        return [Path(record["data"]) for record in self.earlier_records().values() if "data" in record]

    def split(self, record: dict) -> dict:
        """Every look's split: the earlier looks' records as the source has them, then the new look's."""
        return looks_split(self.earlier_records() | {self.name: record})

    def looks(self, cache: PairCache, train: np.ndarray) -> list[dict]:
        """Every look's name, index and swatch: the earlier ones as the source recorded them, then the new one."""
        earlier = self.source.get("looks") or [
            {"name": name, "index": index, "swatch_hex": LOOKS[name].swatch_hex() if name in LOOKS else None}
            for index, name in enumerate(self.config.looks[:-1])]
        return [*earlier, {"name": self.name, "index": self.index, "swatch_hex": swatch_hex(self.name, cache, train)}]

    def carried(self) -> dict:
        """The source's entries every checkpoint of this run keeps (:data:`CARRIED`)."""
        return {key: self.source[key] for key in CARRIED if key in self.source}


def open_source(config: TrainConfig, given_names: set[str]) -> AddedLook:
    """Read --from and resolve the run's options against it: its looks plus the new one, and
    :data:`INHERITED` options from its run. A CheckpointError names the file and what to do for a
    file that is not a TinyBeauty checkpoint, a look it already holds, or another variant or image size."""
    path = Path(config.start_from)
    source = read_checkpoint(path)
    checkpoint_split(source, path)  # the earlier looks' records are kept: a checkpoint without one is refused here
    network = rebuild_model(source, path).config
    earlier = list(network.looks)
    if config.add_look in earlier:
        raise CheckpointError(f"--add-look {config.add_look}: {path} holds that look already (its looks: "
                              f"{', '.join(earlier)}); give the new look another name")
    stored = ABSENT_FROM_RECORD | source.get("train_config", {})
    conflicts = [f"--{name.replace('_', '-')} {getattr(config, name)} (it has {stored[name]})"
                 for name in SAME_AS_SOURCE if name in given_names and name in stored
                 and getattr(config, name) != stored[name]]
    reads_maps = bool(network.region_inputs)  # the network's own input, whatever the default of the day
    if "region_inputs" in given_names and config.region_inputs != reads_maps:
        conflicts.append(f"--{'' if config.region_inputs else 'no-'}region-inputs (its network reads "
                         f"{'the region maps beside the face' if reads_maps else 'the face alone'})")
    if conflicts:
        raise CheckpointError(f"--add-look trains on the network of {path} as it is: {'; '.join(conflicts)}. "
                              "Drop these options")
    values = {name: stored[name] for name in INHERITED if name in stored and name not in given_names}
    added = replace(config, **values, looks=[*earlier, config.add_look], look_data=None, region_inputs=reads_maps)
    log.info("adding the look %s to %s (%s): only its gates train", config.add_look, path, ", ".join(earlier))
    return AddedLook(added, source, path)


@torch.no_grad()
def added_network(source: TinyBeauty, name: str) -> TinyBeauty:
    """``source`` with the look ``name`` after its looks: every weight copied, the new look's gates started at
    the mean of the earlier looks' (kept where they can still move: a gate near 0 or 1 has no gradient), or at a
    new network's for a one-look source, whose own look gets gates of exactly 1."""
    model = build_model(replace(source.config, looks=(*source.config.looks, name)))
    state = source.state_dict()
    key = "residual.look_gates.weight"
    if key in state:
        earlier = state[key]
        start = earlier.mean(dim=0, keepdim=True).clamp(-GATE_START, GATE_START)
    else:
        earlier = torch.full_like(model.residual.look_gates.weight[:1], OPEN_GATE)
        start = model.residual.look_gates.weight[-1:]
    state[key] = torch.cat([earlier, start])
    model.load_state_dict(state)
    return model


def train_only_gates(model: TinyBeauty, index: int) -> int:
    """Freeze every parameter but the look gates, and mask their gradient to look ``index``'s row. Returns how many
    weights train."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    weight = model.residual.look_gates.weight
    mask = torch.zeros_like(weight, dtype=torch.bool)
    mask[index] = True
    weight.requires_grad_(True)
    weight.register_hook(lambda grad: grad.masked_fill(~mask, 0))
    trained = int(mask.sum())
    return trained
