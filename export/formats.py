"""The table of export formats. Adding a format = one module + one row here.

Each row names the exporter ``(model, inputs, path, meta) -> Path``, the loader of its real
runtime ``(path, threads) -> Runner`` (runners take and return NCHW float faces whatever the
file's own layout), the reader of the provenance stored inside the file, the layout the file
takes its face in, and, for formats whose runtime cannot run on every machine, a stand-in
check that says what it checks instead. Export, benchmark, apply and the tests read this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from export import (
    coreml_format,
    mlpackage_format,
    onnx_format,
    pte_format,
    ptl_format,
    tflite_format,
)
from export.common import ExportInputs, ExportMeta, Runner, RuntimeUnavailable
from models.checkpoint import load_checkpoint
from models.tinybeauty import TinyBeauty


@dataclass(frozen=True)
class ExportFormat:
    name: str
    filename: str
    precision: str
    runtime: str
    shipped: bool  # shipped files carry the size budget; reference files do not
    export: Callable[[TinyBeauty, ExportInputs, Path, ExportMeta], Path]
    load: Callable[..., Runner]
    read_metadata: Callable[[Path], dict]
    layout: str = "NCHW"  # the file's own input/output layout: NCHW, NHWC or image
    # int8 activations: export the skip-rescaled weights (export/rescale.py). Weight-only
    # quantization gains nothing from it and loses a little (per-channel weight ranges widen).
    int8_activations: bool = True
    stand_in: Callable | None = None  # (path, model, faces) -> (outputs, checks) when load() cannot run here


def coreml_stand_in(path: Path, model: TinyBeauty, faces: torch.Tensor) -> tuple[np.ndarray, list[str]]:
    spec = coreml_format.check_spec(path, int(faces.shape[-1]))
    rebuilt, summary = coreml_format.dequantized_model(path, model)
    with torch.no_grad():
        outputs = rebuilt(faces).numpy()
    checks = [f"spec: {spec['input']} -> {spec['output']}; layers {', '.join(summary['layers'])}",
              f"weights: {summary['int8_convolutions']}/{summary['convolutions']} convolutions stored as 8-bit, "
              "dequantized from the file into PyTorch and run (activations in fp32, as a weights-only check)"]
    return outputs, checks


FORMATS: tuple[ExportFormat, ...] = (
    # Not shipped: kept in a subfolder so the top of artifacts/ is exactly what an app ships.
    ExportFormat("onnx-fp32", "reference/tinybeauty_fp32.onnx", "fp32", "onnxruntime", False,
                 onnx_format.export_fp32, onnx_format.load, onnx_format.read_metadata, int8_activations=False),
    ExportFormat("onnx", "tinybeauty.onnx", "int8 QDQ (per-channel weights, uint8 activations)", "onnxruntime",
                 True, onnx_format.export_int8, onnx_format.load, onnx_format.read_metadata),
    ExportFormat("coreml", "tinybeauty.mlmodel", "8-bit weights (per-channel linear), float activations",
                 "Core ML (macOS/iOS)", True, coreml_format.export, coreml_format.load, coreml_format.read_metadata,
                 layout="image", int8_activations=False, stand_in=coreml_stand_in),
    ExportFormat("mlpackage", "tinybeauty.mlpackage", "palettized weights (per-tensor LUT, 4-8 bits per layer), "
                 "fp16 activations", "Core ML (macOS/iOS)", True, mlpackage_format.export, mlpackage_format.load,
                 mlpackage_format.read_metadata, layout="image", int8_activations=False,
                 stand_in=mlpackage_format.stand_in),
    ExportFormat("ptl", "tinybeauty.ptl", "int8 (QNNPACK, per-channel weights), float add+clamp",
                 "PyTorch lite interpreter", True, ptl_format.export, ptl_format.load, ptl_format.read_metadata),
    ExportFormat("pte", "tinybeauty.pte", "int8 (XNNPACK, PT2E per-channel weights), float add+clamp",
                 "ExecuTorch (XNNPACK)", True, pte_format.export, pte_format.load, pte_format.read_metadata),
    ExportFormat("tflite", "tinybeauty.tflite", "int8 (PT2E per-channel weights, int8 activations), float I/O",
                 "LiteRT (ai_edge_litert)", True, tflite_format.export, tflite_format.load,
                 tflite_format.read_metadata, layout="NHWC"),
)

BY_NAME = {fmt.name: fmt for fmt in FORMATS}


# Running any file: what the benchmark and apply share.
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

