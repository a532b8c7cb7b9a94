"""The table of export formats. Adding a format = one module + one row here.

Each row names the exporter ``(model, inputs, path, meta) -> Path``, the loader of its real
runtime ``(path, threads) -> Runner`` (runners take and return NCHW float faces whatever the
file's own layout), the reader of the provenance stored inside the file, the layout the file
takes its face in, and, for formats whose runtime cannot run on every machine, a stand-in
check that says what it checks instead. A row names its module's functions, imported on first
use, so reading the table costs no torch. Export, benchmark and the tests read this table; whoever
runs a file by its suffix goes through ``export/loading.py``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from export.common import ExportInputs, ExportMeta
    from export.runtime import Runner
    from models.tinybeauty import TinyBeauty


def lazy(module: str, function: str) -> Callable:
    """``export.<module>.<function>``, imported on its first call. The table's names, files and
    runtimes are read by commands that run no format (every --help, apply's suffix check, the
    page's server), and the format modules import torch and their converters."""

    def call(*args, **kwargs):
        return getattr(importlib.import_module(f"export.{module}"), function)(*args, **kwargs)

    call.__name__ = call.__qualname__ = function
    call.__module__ = f"export.{module}"
    return call


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
    # int8 activations: export the skip-rescaled weights (models/rescale.py). Weight-only
    # quantization gains nothing from it and loses a little (per-channel weight ranges widen).
    int8_activations: bool = True
    # (path, model, faces, look_weights=None, regions=None) -> (outputs, checks) when load() cannot run here
    stand_in: Callable | None = None


def row(name: str, filename: str, precision: str, runtime: str, shipped: bool, module: str, exporter: str = "export",
        **options) -> ExportFormat:
    """A format whose exporter, loader and metadata reader are ``module``'s (imported when first used)."""
    return ExportFormat(name, filename, precision, runtime, shipped, lazy(module, exporter), lazy(module, "load"),
                        lazy(module, "read_metadata"), **options)


FORMATS: tuple[ExportFormat, ...] = (
    # Not shipped: kept in a subfolder so the top of artifacts/ is exactly what an app ships.
    row("onnx-fp32", "reference/tinybeauty_fp32.onnx", "fp32", "onnxruntime", False, "onnx_format", "export_fp32",
        int8_activations=False),
    row("onnx", "tinybeauty.onnx", "int8 QDQ (per-channel weights, uint8 activations)", "onnxruntime", True,
        "onnx_format", "export_int8"),
    row("coreml", "tinybeauty.mlmodel", "8-bit weights (per-channel linear), float activations",
        "Core ML (macOS/iOS)", True, "coreml_format", layout="image", int8_activations=False,
        stand_in=lazy("coreml_format", "stand_in")),
    row("mlpackage", "tinybeauty.mlpackage", "palettized weights (per-tensor LUT, 4-8 bits per layer), "
        "fp16 activations", "Core ML (macOS/iOS)", True, "mlpackage_format", layout="image", int8_activations=False,
        stand_in=lazy("mlpackage_format", "stand_in")),
    row("ptl", "tinybeauty.ptl", "int8 (QNNPACK, per-channel weights), float add+clamp", "PyTorch lite interpreter",
        True, "ptl_format"),
    row("pte", "tinybeauty.pte", "int8 (XNNPACK, PT2E per-channel weights), float add+clamp", "ExecuTorch (XNNPACK)",
        True, "pte_format"),
    row("tflite", "tinybeauty.tflite", "int8 (PT2E per-channel weights, int8 activations), float I/O",
        "LiteRT (ai_edge_litert)", True, "tflite_format", layout="NHWC"),
)

BY_NAME = {fmt.name: fmt for fmt in FORMATS}
