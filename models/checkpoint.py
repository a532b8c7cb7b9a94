"""Checkpoints: plain-type dicts that alone rebuild the model, written atomically.

Layout: ``{"model": state_dict, "model_config": dict, "optimizer": state_dict | None,
"scheduler": state_dict | None, "epoch": int, "best_val_psnr": float, "best_val_loss": float,
"val_psnr": float, "baseline_psnr": float, "train_config": dict, "split": dict,
"format": CHECKPOINT_FORMAT}``. ``split`` is the train / validation / test record of
``models.data.split_record`` (file names and content hashes) that resume, export and benchmark
use as it is. Everything loads with ``torch.load(path, weights_only=True)``.

:func:`load_checkpoint` is what export, benchmark and apply read a model through: it refuses,
naming the file, weights that hold NaN or infinity (a diverged run), a model whose output
on a plain face is not finite, once, before any converter or runtime sees it.
:func:`save_checkpoint` turns a write that runs out of room into a :class:`CheckpointDiskFull`
naming the file; the checkpoints saved before are kept.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from models.atomic import DiskFullError, atomic_path
from models.tinybeauty import INPUT_MULTIPLE, TinyBeauty, build_model, example_look_weights, example_regions, merge

CHECKPOINT_FORMAT = "tinybeauty-checkpoint-v2"  # v2: the data split is recorded


class CheckpointError(ValueError):
    """A checkpoint that cannot rebuild a TinyBeauty model. The message says why and what to do."""


class CheckpointDiskFull(CheckpointError, DiskFullError):
    """A checkpoint that could not be written for lack of room (caught as either parent)."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel / torch.compile wrappers before saving."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(path: Path, payload: dict) -> Path:
    """Write to a temp file in the same folder, then rename: a kill never leaves a torn file.

    torch.save reports a failed write as ``RuntimeError: [enforce fail at inline_container.cc...]``;
    written through a Python file, the OSError underneath (ENOSPC, EFBIG) is its context, so a
    full disk is told apart from any other failure and said in words, naming the file."""
    try:
        with atomic_path(path) as tmp, tmp.open("wb") as handle:
            try:
                torch.save({"format": CHECKPOINT_FORMAT, **payload}, handle)
            except RuntimeError as error:
                if isinstance(error.__context__, OSError):
                    raise error.__context__ from error
                raise
    except DiskFullError as error:  # atomic_path's, naming the file
        raise CheckpointDiskFull(str(error)) from error
    return Path(path)


def read_checkpoint(path: Path) -> dict:
    """Load the raw dict with ``weights_only=True``; clear errors for missing/corrupt/pickled files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one first (`make train`) "
                              "or name an existing checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path} holds pickled Python objects, not a TinyBeauty checkpoint of plain "
                              f"types (was it saved with torch.save(model)?); re-export it from training. "
                              f"Detail: {str(error).splitlines()[0]}") from error
    except Exception as error:  # torch.load raises many types for damaged files (KeyError, EOFError, ...)
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (corrupt or truncated: "
                              f"{str(error).splitlines()[0]}); use another checkpoint or retrain") from error
    if not isinstance(payload, dict) or "model" not in payload or "model_config" not in payload:
        keys = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is not a TinyBeauty checkpoint: it needs 'model' and 'model_config' "
                              f"entries, found {keys}; use a checkpoint written by `python -m train`")
    return payload


def load_checkpoint(path: Path) -> tuple[TinyBeauty, dict]:
    """Rebuild the model from a checkpoint alone. Returns (model in eval mode, raw checkpoint).

    A model trained with re-parameterised branches (``model_config["reparam"]``) comes back merged
    into the plain network, so everything downstream sees exactly the ops, parameters and sizes
    of a plain one; resuming training reads the raw branches with :func:`rebuild_model`. A network
    that reads region maps beside the face (``model.config.region_inputs``, the default) needs them at every
    call: train/region_maps.py draws them from a face mesh (TinyBeauty.forward refuses a call without)."""
    payload = read_checkpoint(path)
    model = merge(rebuild_model(payload, path).eval())
    check_finite(model, path)
    return model, payload


def rebuild_model(payload: dict, path: Path) -> TinyBeauty:
    """The network ``payload["model_config"]`` describes, holding ``payload["model"]`` (branches
    unmerged). A model_config this code cannot build, or weights of another shape, is a
    CheckpointError naming ``path`` and what differs."""
    try:
        model = build_model(dict(payload["model_config"]))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has a model_config this code cannot build ({error}); it was written "
                              "by another version of TinyBeauty, retrain or use a matching version") from error
    differences = weight_differences(model.state_dict(), payload["model"])
    if differences:
        raise CheckpointError(f"{path}: weights do not fit the TinyBeauty architecture in its model_config "
                              f"{payload['model_config']} (another network?): {differences}")
    model.load_state_dict(payload["model"])
    return model


def weight_differences(expected: dict, found: dict) -> str:
    """How the state dict ``found`` differs from the network's ``expected`` one, in words ("" if it fits)."""
    def shape(tensor) -> str:
        return "x".join(map(str, getattr(tensor, "shape", ()))) or type(tensor).__name__

    if not isinstance(found, dict):
        return f"its 'model' is a {type(found).__name__}, not a state dict"
    other_shapes = [f"{key} is {shape(found[key])} in the checkpoint, {shape(value)} in the network"
                    for key, value in expected.items() if key in found and shape(found[key]) != shape(value)]
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    parts = [f"{len(other_shapes)} tensor(s) of another shape ({'; '.join(other_shapes[:2])})"] if other_shapes else []
    parts += [f"{len(missing)} missing ({', '.join(missing[:3])})"] if missing else []
    parts += [f"{len(extra)} the network does not have ({', '.join(extra[:3])})"] if extra else []
    return "; ".join(parts)


def check_finite(model: TinyBeauty, path: Path) -> None:
    """Refuse a model whose weights hold NaN or infinity, or whose output on a plain grey face
    is not finite (weights so large they overflow), naming the checkpoint."""
    bad = [name for name, tensor in model.state_dict().items()
           if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    advice = "use an earlier checkpoint (the best ones are kept beside it) or retrain, e.g. with a lower --lr"
    if bad:
        raise CheckpointError(f"{path}: weights hold NaN or infinity in {len(bad)} tensor(s) ({', '.join(bad[:3])}"
                              f"{', ...' if len(bad) > 3 else ''}): the training diverged; {advice}")
    side = 4 * INPUT_MULTIPLE  # the smallest face every variant takes, to keep the check cheap
    with torch.no_grad():
        output = model(torch.full((1, 3, side, side), 0.5), example_look_weights(model.config),
                       regions=example_regions(model.config, 1, side, side))
    if not torch.isfinite(output).all():
        raise CheckpointError(f"{path}: the model's output on a plain face holds NaN or infinity (its weights "
                              f"overflow float32); {advice}")


def catalogue(model: TinyBeauty, payload: dict) -> list[dict]:
    """The looks a checkpoint holds, in the order of the network's look input: ``[{"name", "index",
    "swatch_hex"}]`` as training recorded them (several looks), or its one look (swatch unknown: None)."""
    recorded = payload.get("looks")
    if recorded:
        return [dict(look) for look in recorded]
    return [{"name": name, "index": index, "swatch_hex": None} for index, name in enumerate(model.config.looks)]


def checkpoint_split(payload: dict, path: Path) -> dict:
    """The split a checkpoint was trained with; older checkpoints without one are refused."""
    split = payload.get("split")  # one look's record, or {"looks": {name: record}} (train/multilook.py)
    if not isinstance(split, dict) or not ("val" in split or "looks" in split):
        raise CheckpointError(f"{path} records no data split (written by an older TinyBeauty); export and "
                              "benchmark need the exact validation and test faces, so retrain with this version")
    return split
