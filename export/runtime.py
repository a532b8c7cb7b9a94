"""The runner contract every format meets: what the export's checks, the benchmark and
``apply`` share.

A :data:`Runner` takes N x 3 x H x W float32 faces in [0, 1] and returns the made-up faces in
the same layout, whatever the file's own layout (each format's ``load`` adapts it). A file of
several looks also takes ``look_weights``, float32 N x L (one-hot picks a look, weights adding up to 1
blend looks: models/look_choice.py); a one-look file takes None there. A file whose network reads the
face's region maps beside it (the default network: train/region_maps.py) also takes ``regions``, float32
N x K x H x W in [0, 1], one map per name of its ``tinybeauty.region_inputs`` in that order (NCHW here
whatever the file's layout), drawn from the face mesh (faces/region_weights.py: ``region_masks``); a file
without region inputs takes None there. Opening a
file by its suffix (:func:`export.loading.load_model`) sits above the formats table; this module
imports no format, so the format modules and the table can import it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import numpy as np
import torch

Runner = Callable[..., np.ndarray]  # (faces, look_weights=None, regions=None) -> made-up faces


class RuntimeUnavailable(RuntimeError):
    """The artifact's runtime cannot run on this machine (e.g. Core ML prediction off macOS)."""


class ModelFileError(ValueError):
    """A model file its runtime cannot load or run as a TinyBeauty model (damaged, truncated,
    not what its suffix says, or a network of another shape)."""


def run_in_batches_of_one(runner: Runner, faces: np.ndarray, look_weights: np.ndarray | None = None,
                          regions: np.ndarray | None = None) -> np.ndarray:
    """Artifacts are exported for batch 1, as a phone runs them; ``look_weights`` (several looks) and
    ``regions`` (region-input files): one row per face. Only the inputs the file takes are passed."""
    outputs = []
    for i in range(len(faces)):
        extra = {"regions": regions[i:i + 1]} if regions is not None else {}
        looks = () if look_weights is None else (look_weights[i:i + 1],)
        outputs.append(runner(faces[i:i + 1], *looks, **extra))
    return np.concatenate(outputs, axis=0)


def pytorch_runner(model: torch.nn.Module, threads: int | None = None) -> Runner:
    """PyTorch eager. ``threads`` sets torch's (process-wide) thread count now, not per call."""
    if threads:
        torch.set_num_threads(threads)

    def run(faces: np.ndarray, look_weights: np.ndarray | None = None, regions: np.ndarray | None = None
            ) -> np.ndarray:
        as_tensor = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        with torch.no_grad():
            return model(as_tensor(faces), as_tensor(look_weights), regions=as_tensor(regions)).numpy()

    return run


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
