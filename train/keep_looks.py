"""A catalogue narrowed to some of its looks, without training.

Usage:
    python -m train.keep_looks --from tinybeauty_model/tinybeauty_best_psnr.pt --looks berry --out one_look
    python -m train.keep_looks --from CHECKPOINT --looks berry,smoky --out two_looks

Each look owns a row of the decoder's gates and everything else is shared
(models/tinybeauty.py: ``LookGates``), so keeping some looks is keeping their rows: the checkpoint
written holds the same shared network, the kept looks' gates in the order given, their split records,
names and swatches, and the source's quantization-aware state (its trained activation ranges). One kept
look gives a one-look checkpoint, whose files take no look input: its gates are folded into the
convolutions that read the gated outputs (a gate scales one input channel). Each kept look's output is
the source's for the same one-hot input, to float rounding (checked before anything is written).

What it is for: shipping a smaller catalogue, or one look alone, from the network already trained; and
measuring what the looks cost side by side (the files of the whole catalogue against those of one of its
looks, the same shared weights: ``python -m benchmark.compare``). The written checkpoint exports and
benchmarks as any other (``python -m export --checkpoint OUT/NAME``); it cannot resume training (the
optimizer's state is the source's network's, so it is not kept).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

import torch

from models.checkpoint import CheckpointError, checkpoint_split, read_checkpoint, rebuild_model, save_checkpoint
from models.cli import output_folder
from models.tinybeauty import TinyBeauty, build_model, merge, quantized_outputs

log = logging.getLogger(__name__)

# Entries of the source that belong to its training run, not to the network: not carried.
RUN_ONLY = ("optimizer", "scheduler")
# How far a kept look's output may be from the source's (float rounding of a shorter sum).
MAX_DIFFERENCE = 1e-5


def kept_indices(source_looks: tuple[str, ...], names: list[str], path: Path) -> list[int]:
    """Each name's place in the source's look input; a CheckpointError naming the file and its looks otherwise."""
    unknown = [name for name in names if name not in source_looks]
    if unknown or not names or len(set(names)) != len(names):
        problem = (f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not among them" if unknown
                   else "name each look once, at least one")
        raise CheckpointError(f"--looks {','.join(names)}: {path} holds the looks {', '.join(source_looks)}; "
                              f"{problem}")
    return [source_looks.index(name) for name in names]


@torch.no_grad()
def narrowed_weights(source: TinyBeauty, state: dict, indices: list[int]) -> dict:
    """``state`` (``source``'s weights) with the gates cut to the rows of the looks ``indices``, in that order;
    for one look, without gates, each folded into the input channels of the convolution that reads its output
    (:func:`gate_readers`). Every other tensor is the source's own."""
    key = "residual.look_gates.weight"
    if len(indices) > 1:
        return state | {key: state[key][indices].clone()}
    out = {name: value for name, value in state.items() if name != key}
    gates = source.residual.look_gates
    rows = dict(zip(gates.channels, gates.gates()[indices[0]].split(list(gates.channels.values())), strict=True))
    for name, readers in gate_readers(source).items():
        for reader in readers:
            weight = out[reader].clone()
            weight[:, :rows[name].numel()] *= rows[name][None, :, None, None]
            out[reader] = weight
    return out


def gate_readers(model: TinyBeauty) -> dict[str, list[str]]:
    """For each gated output, the state-dict keys of the weights that read it, as the first input channels of
    the convolution after it (both branches of a re-parameterised one)."""
    state = model.state_dict()
    readers = {}
    for output in quantized_outputs(model.config):
        if output.reads and output.reads[0] in model.residual.look_gates.channels:
            prefix = f"residual.{output.conv}"
            keys = [f"{prefix}.weight"] if f"{prefix}.weight" in state else [
                f"{prefix}.{branch}.weight" for branch in ("conv3", "conv1")]
            readers[output.reads[0]] = keys
    return readers


def narrowed_split(split: dict, names: list[str]) -> dict:
    """The kept looks' split records: one look's record as a one-look run writes it, or ``{"looks": ...}``."""
    records = split["looks"]
    return records[names[0]] if len(names) == 1 else {"looks": {name: records[name] for name in names}}


@torch.no_grad()
def check_outputs(source: TinyBeauty, kept: TinyBeauty, indices: list[int], path: Path) -> float:
    """The largest difference between each kept look's output and the source's for the same one-hot, on
    random faces (region maps too, for a network that reads them); a CheckpointError past MAX_DIFFERENCE."""
    generator = torch.Generator().manual_seed(0)
    side = 32
    faces = torch.rand(2, 3, side, side, generator=generator)
    regions = (torch.rand(2, len(source.config.region_inputs), side, side, generator=generator)
               if source.config.region_inputs else None)
    worst = 0.0
    for place, index in enumerate(indices):
        theirs = source(faces, torch.nn.functional.one_hot(torch.tensor([index, index]), len(source.config.looks))
                        .float(), regions=regions)
        ours_weights = (None if len(indices) == 1 else
                        torch.nn.functional.one_hot(torch.tensor([place, place]), len(indices)).float())
        ours = kept(faces, ours_weights, regions=regions)
        worst = max(worst, float((theirs - ours).abs().max()))
    if worst > MAX_DIFFERENCE:
        raise CheckpointError(f"{path}: the kept looks' outputs differ from the source's by {worst:.2g} (more than "
                              f"{MAX_DIFFERENCE:g}): they cannot be kept")
    return worst


def keep_looks(path: Path, names: list[str]) -> dict:
    """The checkpoint of ``path`` narrowed to the looks ``names`` (in that order), as a payload to save."""
    payload = read_checkpoint(path)
    source = rebuild_model(payload, path).eval()
    config = source.config
    if len(config.looks) < 2:
        raise CheckpointError(f"{path} holds one look ({config.looks[0]}): there is nothing to narrow; use it as it is")
    indices = kept_indices(tuple(config.looks), names, path)
    split = checkpoint_split(payload, path)
    kept_config = replace(config, looks=tuple(names))
    kept = build_model(kept_config)
    state = narrowed_weights(source, payload["model"], indices)
    kept.load_state_dict(state)
    worst = check_outputs(merge(source), merge(kept.eval()), indices, path)
    catalogue = {look["name"]: look for look in payload.get("looks") or []}
    looks = [{**catalogue.get(name, {"name": name, "swatch_hex": None}), "index": place}
             for place, name in enumerate(names)]
    train_config = dict(payload.get("train_config") or {})
    if "looks" in train_config:
        train_config["looks"] = list(names)
    if train_config.get("look_data"):
        train_config["look_data"] = {name: folder for name, folder in train_config["look_data"].items()
                                     if name in names}
    kept_payload = {key: value for key, value in payload.items() if key not in RUN_ONLY and key != "format"}
    kept_payload |= {"model": state, "model_config": kept_config.to_dict(), "split": narrowed_split(split, names),
                     "looks": looks, "train_config": train_config,
                     "kept_looks": {"from": str(path), "looks": list(names), "max_difference": worst}}
    log.info("kept %s of %s's looks (%s): each kept look's output within %.2g of the source's", ", ".join(names),
             path, ", ".join(config.looks), worst)
    return kept_payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.keep_looks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", type=Path, required=True, help="a checkpoint of several looks")
    parser.add_argument("--looks", required=True, help="comma-separated names of the looks to keep, in the order "
                        "of the new look input")
    parser.add_argument("--out", type=output_folder, required=True,
                        help="folder for the checkpoint (named as the source's file)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = [name.strip() for name in args.looks.split(",")]
    try:
        payload = keep_looks(args.source, names)
        args.out.mkdir(parents=True, exist_ok=True)
        written = save_checkpoint(args.out / args.source.name, payload)
    except (CheckpointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {written} ({', '.join(names)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
