"""Run any TinyBeauty artifact (or a checkpoint) through its own runtime, as a Runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from export.common import Runner, RuntimeUnavailable
from export.formats import FORMATS, ExportFormat
from models.checkpoint import load_checkpoint
from models.tinybeauty import TinyBeauty

CHECKPOINT_SUFFIXES = {".pt", ".pth"}


class ModelFileError(ValueError):
    """A model file its runtime cannot load (damaged, truncated, or not what its suffix says)."""


def pytorch_runner(model: TinyBeauty, threads: int | None = None) -> Runner:
    """PyTorch eager. ``threads`` sets torch's (process-wide) thread count now, not per call."""
    if threads:
        torch.set_num_threads(threads)

    def run(faces: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(faces, dtype=np.float32))).numpy()

    return run


def format_for(path: Path) -> ExportFormat:
    """The export format of a file, by its suffix (the int8 file wins over the fp32 reference)."""
    for fmt in FORMATS:
        if fmt.shipped and Path(fmt.filename).suffix == path.suffix:
            return fmt
    known = sorted({Path(f.filename).suffix for f in FORMATS} | CHECKPOINT_SUFFIXES)
    raise RuntimeUnavailable(f"{path}: unknown model type {path.suffix!r}; use one of {', '.join(known)}")


def load_runner(path: Path, threads: int | None = None) -> tuple[Runner, str]:
    """(runner, runtime name) for a checkpoint or any exported file; RuntimeUnavailable if it cannot run here."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; export first (`make export`) or pass an existing file")
    if path.suffix in CHECKPOINT_SUFFIXES:
        model, _ = load_checkpoint(path)
        return pytorch_runner(model, threads), "PyTorch eager fp32"
    fmt = format_for(path)
    try:
        return fmt.load(path, threads), fmt.runtime
    except RuntimeUnavailable:
        raise
    except Exception as error:  # each runtime has its own error types for a damaged file
        raise ModelFileError(f"{path} could not be loaded by {fmt.runtime} ({type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''}); re-export it (`make export`) "
                             "or pass another model file") from error
