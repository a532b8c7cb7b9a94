"""Checkpoints: plain-type dicts that alone rebuild the model, written atomically.

Layout: ``{"model": state_dict, "model_config": dict, "optimizer": state_dict | None,
"scheduler": state_dict | None, "epoch": int, "best_val_psnr": float, "best_val_loss": float,
"val_psnr": float, "baseline_psnr": float, "train_config": dict, "split": dict,
"format": CHECKPOINT_FORMAT}``. ``split`` is the train / validation / test record of
``models.data.split_record`` (file names and content hashes) that resume, export and benchmark
use as it is. Everything loads with ``torch.load(path, weights_only=True)``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from models.atomic import atomic_path
from models.tinybeauty import TinyBeauty, build_model

CHECKPOINT_FORMAT = "tinybeauty-checkpoint-v2"  # v2: the data split is recorded


class CheckpointError(ValueError):
    """A checkpoint that cannot rebuild a TinyBeauty model. The message says why and what to do."""


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
    """Write to a temp file in the same folder, then rename: a kill never leaves a torn file."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp)
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
    """Rebuild the model from a checkpoint alone. Returns (model in eval mode, raw checkpoint)."""
    payload = read_checkpoint(path)
    try:
        model = build_model(dict(payload["model_config"]))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has a model_config this code cannot build ({error}); it was written "
                              "by another version of TinyBeauty, retrain or use a matching version") from error
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the TinyBeauty architecture in its model_config "
                              f"(another network?): {str(error).splitlines()[0]}") from error
    return model.eval(), payload


def checkpoint_split(payload: dict, path: Path) -> dict:
    """The split a checkpoint was trained with; older checkpoints without one are refused."""
    split = payload.get("split")
    if not isinstance(split, dict) or "val" not in split:
        raise CheckpointError(f"{path} records no data split (written by an older TinyBeauty); export and "
                              "benchmark need the exact validation and test faces, so retrain with this version")
    return split
