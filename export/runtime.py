"""Running any model file in its own runtime: what the export's checks, the benchmark and
``apply`` share.

A :data:`Runner` takes N x 3 x H x W float32 faces in [0, 1] and returns the made-up faces in
the same layout, whatever the file's own layout (each format's ``load`` adapts it).
:func:`load_model` opens a checkpoint or any exported file by its suffix (the table in
``export/formats.py``) and says what size of face it takes.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

Runner = Callable[[np.ndarray], np.ndarray]
CHECKPOINT_SUFFIXES = {".pt", ".pth"}
# The face size of a file that records none (an early export, or a checkpoint without a split):
# the paper's, and every shipped file's unless exported otherwise.
DEFAULT_IMAGE_SIZE = 256


class RuntimeUnavailable(RuntimeError):
    """The artifact's runtime cannot run on this machine (e.g. Core ML prediction off macOS)."""


class ModelFileError(ValueError):
    """A model file its runtime cannot load or run as a TinyBeauty model (damaged, truncated,
    not what its suffix says, or a network of another shape)."""


@dataclass(frozen=True)
class LoadedModel:
    runner: Runner
    runtime: str  # what runs it, in words
    image_size: int  # the square face size the file takes (a checkpoint: the size it was trained at)


def run_in_batches_of_one(runner: Runner, faces: np.ndarray) -> np.ndarray:
    """Artifacts are exported for batch 1, as a phone runs them."""
    return np.concatenate([runner(faces[i:i + 1]) for i in range(len(faces))], axis=0)


def pytorch_runner(model: torch.nn.Module, threads: int | None = None) -> Runner:
    """PyTorch eager. ``threads`` sets torch's (process-wide) thread count now, not per call."""
    if threads:
        torch.set_num_threads(threads)

    def run(faces: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(faces, dtype=np.float32))).numpy()

    return run


def format_for(path: Path):
    """The export format of a file, by its suffix (the int8 file wins over the fp32 reference)."""
    from export.formats import (
        FORMATS,  # the table imports every format module, which import this one
    )

    for fmt in FORMATS:
        if fmt.shipped and Path(fmt.filename).suffix == path.suffix:
            return fmt
    known = sorted({Path(f.filename).suffix for f in FORMATS} | CHECKPOINT_SUFFIXES)
    raise RuntimeUnavailable(f"{path}: unknown model type {path.suffix!r}; use one of {', '.join(known)}")


def recorded_size(metadata: dict) -> int | None:
    """The face size a file's provenance records: ``tinybeauty.image_size``, or in files exported
    before it, the input spec (``float32 RGB NCHW [1,3,256,256] ...``, ``image RGB 256x256``)."""
    if metadata.get("tinybeauty.image_size"):
        return int(metadata["tinybeauty.image_size"])
    spec = metadata.get("tinybeauty.input", "")
    found = re.search(r"\[1,3,(\d+),\d+\]|\[1,(\d+),\d+,3\]|(\d+)x\d+", spec)
    return int(next(group for group in found.groups() if group)) if found else None


def _first_line(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _check_runs(path: Path, loaded: LoadedModel) -> None:
    """One face through the file: a network of another shape (a classifier, another input size)
    is refused here, naming the file, not on the user's first photo."""
    size = loaded.image_size
    face = np.full((1, 3, size, size), 0.5, np.float32)
    try:
        made_up = np.asarray(loaded.runner(face))
    except Exception as error:  # each runtime raises its own types for a wrong input
        raise ModelFileError(f"{path} does not run as a TinyBeauty model on a 1x3x{size}x{size} face "
                             f"({_first_line(error)}); pass a file exported by `make export`") from error
    if made_up.shape != face.shape:
        raise ModelFileError(f"{path} returns {list(made_up.shape)} for a 1x3x{size}x{size} face, not a face of the "
                             "same shape; it is not a TinyBeauty model: pass a file exported by `make export`")


def load_model(path: Path, threads: int | None = None) -> LoadedModel:
    """A checkpoint or any exported file, loaded and run once on a plain face.

    Raises FileNotFoundError, RuntimeUnavailable (cannot run here), CheckpointError or
    ModelFileError, each naming the file."""
    from models.checkpoint import load_checkpoint

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; export first (`make export`) or pass an existing file")
    if path.suffix in CHECKPOINT_SUFFIXES:
        model, checkpoint = load_checkpoint(path)
        size = (checkpoint.get("split") or {}).get("image_size") or DEFAULT_IMAGE_SIZE
        loaded = LoadedModel(pytorch_runner(model, threads), "PyTorch eager fp32", int(size))
    else:
        fmt = format_for(path)
        try:
            runner = fmt.load(path, threads)
            size = recorded_size(fmt.read_metadata(path))
        except RuntimeUnavailable:
            raise
        except Exception as error:  # each runtime has its own error types for a damaged file
            raise ModelFileError(f"{path} could not be loaded by {fmt.runtime} ({_first_line(error)}); re-export "
                                 "it (`make export`) or pass another model file") from error
        loaded = LoadedModel(runner, fmt.runtime, size or DEFAULT_IMAGE_SIZE)
    _check_runs(path, loaded)
    return loaded


# Warnings understood and harmless here, kept out of the reports: every one the export, the
# benchmark and apply raise on the pinned toolchain (found with `python -W default -m export ...`).
# Each is (message regex, category, module regex): matched at the start of its message, by its
# category and the module it is raised from, so any other warning still shows.
QUIET_WARNINGS = (
    # torch.export's pytree code trips its own deprecation (torch 2.13), not anything of ours.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, ""),
    # TorchScript, deprecated in torch 2.13, is what the .ptl lite interpreter runs and what
    # coremltools converts the .mlmodel/.mlpackage from; torch is pinned, so it keeps working.
    (r"`torch\.jit\.(trace|trace_method|script_method|freeze)` is deprecated", DeprecationWarning, ""),
    (r"Lite Interpreter is deprecated", DeprecationWarning, ""),  # the .ptl format itself (ptl_format.py)
    # The .ptl's FX quantization: a PT2E-quantized model does not load in the lite interpreter.
    (r"torch\.ao\.quantization is deprecated", DeprecationWarning, ""),
    (r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor", UserWarning,
     r"torch\.ao\."),
    # ExecuTorch reads its own bundled files with importlib.resources' legacy calls.
    (r"(open_text|read_text|read_binary) is deprecated\. Use files\(\) instead", DeprecationWarning, ""),
    # ExecuTorch's Python runtime (the .pte runner) is marked experimental on import.
    (r"This API is experimental and subject to change without notice", Warning, r"executorch\."),
    # The .mlpackage's k-means palettization of a layer with fewer distinct weights than
    # look-up entries: every weight is then stored exactly.
    (r"Number of distinct clusters \(\d+\) found smaller than n_clusters", Warning, r"sklearn\."),
    # coremltools leaves an ML Program's weights folder to its finalizer, which removes it.
    (r"Implicitly cleaning up <TemporaryDirectory", ResourceWarning, ""),
)
# Loggers above their own INFO chatter: coremltools announces at import that it has no macOS
# runtime and has not been tested with this torch; torchao finds no CUDA kernels nor Triton on
# a CPU machine; torch's ONNX exporter skips the torchvision ops it would register (no
# torchvision installed, and the model uses none).
QUIET_LOGGERS = ("coremltools", "torchao", "torch.utils._pytree", "torch.onnx._internal.exporter._registration")


def silence_known_noise() -> None:
    """Call before the converters are imported. Only the messages above are silenced: any other
    warning still shows."""
    for message, category, module in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
