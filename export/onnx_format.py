"""ONNX: fp32 reference plus the shipped int8 QDQ model (onnxruntime static quantization).

Pipeline: ``torch.onnx.export`` (dynamo exporter, one file) -> onnxsim -> static int8
quantization calibrated on training faces (QDQ, per-channel int8 weights, uint8 activations,
percentile calibration) with the residual add and the final clamp kept in float -> names
shortened and doc strings dropped, so the bytes go to weights rather than to labels.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnx
import torch

from export.common import INPUT_NAME, OUTPUT_NAME, ExportInputs, ExportMeta
from export.runtime import Runner
from models.tinybeauty import TinyBeauty

log = logging.getLogger(__name__)

OPSET = 18
CALIBRATION_PERCENTILE = 99.999


def _export_simplified(model: TinyBeauty, inputs: ExportInputs, path: Path) -> onnx.ModelProto:
    import onnxsim

    raw = path.with_name(path.stem + ".raw.onnx")
    # The dynamo exporter writes weights beside the graph unless external_data=False.
    torch.onnx.export(model.eval(), (inputs.example,), raw, dynamo=True, external_data=False, opset_version=OPSET,
                      input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False)
    simplified, ok = onnxsim.simplify(onnx.load(str(raw)))
    raw.unlink()
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified graph")
    for i, node in enumerate(simplified.graph.node):  # quantize_static excludes nodes by name
        node.name = node.name or f"node{i}"
    return simplified


def export_fp32(model: TinyBeauty, inputs: ExportInputs, path: Path, meta: ExportMeta) -> Path:
    """The float reference graph, simplified. Not shipped: parity and latency compare against it."""
    model_proto = _export_simplified(model, inputs, path)
    compact(model_proto, meta)
    onnx.save(model_proto, str(path))
    return path


def _float_tail(graph: onnx.GraphProto) -> list[str]:
    """Names of the residual Add (it reads the graph input) and everything after it (the clamp)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    add = next((n for n in consumers.get(INPUT_NAME, []) if n.op_type == "Add"), None)
    if add is None:
        raise RuntimeError("could not find the residual Add that reads the graph input")
    tail, frontier = [add.name], list(add.output)
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            tail.append(node.name)
            frontier.extend(node.output)
    return tail


class _Calibration:
    def __init__(self, faces: torch.Tensor):
        self.batches = iter([{INPUT_NAME: face[None].numpy()} for face in faces])

    def get_next(self):
        return next(self.batches, None)


def export_int8(model: TinyBeauty, inputs: ExportInputs, path: Path, meta: ExportMeta) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    fp32 = path.with_name(path.stem + ".fp32-for-int8.onnx")
    simplified = _export_simplified(model, inputs, path)
    onnx.save(simplified, str(fp32))
    quantized = path.with_name(path.stem + ".qdq.onnx")
    quantize_static(
        str(fp32), str(quantized), _Calibration(inputs.calibration),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile,
        nodes_to_exclude=_float_tail(simplified.graph),
        extra_options={"CalibPercentile": CALIBRATION_PERCENTILE},
    )
    model_proto = onnx.load(str(quantized))
    compact(model_proto, meta)
    onnx.checker.check_model(model_proto, full_check=True)
    onnx.save(model_proto, str(path))
    for leftover in (fp32, quantized):
        leftover.unlink()
    return path


def compact(model_proto: onnx.ModelProto, meta: ExportMeta) -> None:
    """Drop doc strings and value_info, shorten every internal name, set provenance metadata."""
    graph = model_proto.graph
    keep = {INPUT_NAME, OUTPUT_NAME}
    renamed: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return renamed.setdefault(name, format(len(renamed), "x"))

    for init in graph.initializer:
        init.name = short(init.name)
        init.doc_string = ""
    for node in graph.node:
        node.name = ""
        node.doc_string = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
        for attribute in node.attribute:
            attribute.doc_string = ""
    graph.ClearField("value_info")
    graph.doc_string = ""
    model_proto.doc_string = meta.description
    model_proto.producer_name = "tinybeauty"
    model_proto.producer_version = meta.version
    model_proto.ClearField("metadata_props")
    onnx.helper.set_model_props(model_proto, meta.as_strings())


def load(path: Path, threads: int | None = None) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])

    def run(faces: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(faces, dtype=np.float32)})[0]

    return run



def read_metadata(path: Path) -> dict:
    """The provenance stored in ``metadata_props``."""
    return {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
