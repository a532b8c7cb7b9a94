"""The table of export formats. Adding a format = one module + one row here.

Each row names the exporter ``(model, inputs, path, meta) -> Path``, the loader of its real
runtime ``(path, threads) -> Runner`` (runners take and return NCHW float faces whatever the
file's own layout), the reader of the provenance stored inside the file, the layout the file
takes its face in, and, for formats whose runtime cannot run on every machine, a stand-in
check that says what it checks instead. Export, benchmark and the tests read this table; whoever
runs a file by its suffix goes through ``export/loading.py``.
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
from export.common import ExportInputs, ExportMeta
from export.runtime import Runner
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
    # int8 activations: export the skip-rescaled weights (models/rescale.py). Weight-only
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
