"""ONNX: fp32 reference plus the shipped int8 QDQ model (onnxruntime static quantization).

Pipeline: ``torch.onnx.export`` (dynamo exporter, one file) -> onnxsim -> static int8
quantization calibrated on training faces (QDQ, per-channel weights on 7 bits, uint8 activations,
percentile calibration) with the residual add and the final clamp kept in float -> the graph
shaped for mobile runtimes (below) -> names shortened and doc strings dropped, so the bytes go to
weights rather than to labels.

Shaping: the pixel shuffle as DepthToSpace in DCR mode (the head conv's output channels reordered,
float-exact: NNAPI runs DCR only), Resize with a constant ``roi`` instead of an empty name (a
missing input reads as a dynamic shape to onnxruntime's mobile checker, which then splits the
NNAPI partition), DepthToSpace on the uint8 tensor (a Q/DQ pair after it, exact: onnxruntime
permutes bytes, not floats), the residual Add reading the float input face rather than its uint8
copy, and one scale for every tensor a Concat joins (int8 concatenation copies bytes; the conv
biases re-expressed in the moved scales), and for several looks each look gate widened to a row of its
output and moved in uint8. Each is checked by tests/export/test_onnx_graph.py; the figures
before and after are in docs/onnx_graph.md.

Weights on 7 bits (``reduce_range``: int8 values in [-64, 64]): on x86 without VNNI (AVX2) onnxruntime
multiplies uint8 by int8 with an instruction that adds two products into a signed 16-bit lane, which
saturates when both are large (255 x 127 x 2 > 32,767; 255 x 64 x 2 is not): onnxruntime's int8
convolutions there lost ~3.5 dB of parity with PyTorch and up to 0.6 dB of a strong look's truth PSNR
(docs/export.md). With 7-bit weights no pair can saturate, on any CPU.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from export.common import (
    INPUT_NAME,
    LOOKS_INPUT_NAME,
    OUTPUT_NAME,
    REGIONS_INPUT_NAME,
    ExportInputs,
    ExportMeta,
    checked_regions,
    constant_gates,
    float_residual_add,
    region_names,
)
from export.runtime import Runner
from models.int8 import STEM_INPUT_RANGE
from models.rescale import output_conv
from models.tinybeauty import TinyBeauty, quantized_outputs

# The functions that build or edit a graph (export) import onnx where they run: running a file
# (load, read_metadata: apply, the benchmark) never needs it, and importing it takes about 0.5 s.
if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

OPSET = 18
CALIBRATION_PERCENTILE = 99.999
# Ops that only move or pick values: onnxruntime and NNAPI run them on uint8 when the
# DequantizeLinear before and the QuantizeLinear after share one scale and zero point.
SAME_SCALE_OPS = {"Concat", "Resize", "MaxPool", "DepthToSpace"}


def _export_simplified(model: TinyBeauty, inputs: ExportInputs, path: Path) -> onnx.ModelProto:
    import onnx
    import onnxsim

    raw = path.with_name(path.stem + ".raw.onnx")
    # A network that reads region maps: the float add around its residual network, whose positional inputs are
    # the file's (face[, look_weights], regions); TinyBeauty's own forward takes the maps by keyword.
    network = (constant_gates(model) if inputs.example_regions is None
               else float_residual_add(constant_gates(model.residual), inputs))
    # The dynamo exporter writes weights beside the graph unless external_data=False.
    torch.onnx.export(network.eval(), inputs.example_args, raw, dynamo=True, external_data=False, opset_version=OPSET,
                      input_names=inputs.input_names, output_names=[OUTPUT_NAME], verbose=False)
    simplified, ok = onnxsim.simplify(onnx.load(str(raw)))
    raw.unlink()
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified graph")
    for i, node in enumerate(simplified.graph.node):  # quantize_static excludes nodes by name
        node.name = node.name or f"node{i}"
    pixel_shuffle_as_dcr(simplified.graph)
    constant_resize_roi(simplified.graph)
    simplified = onnx.shape_inference.infer_shapes(simplified)
    rows_wide_gates(simplified.graph)
    simplified.graph.ClearField("value_info")
    return simplified


def rows_wide_gates(graph: onnx.GraphProto) -> int:
    """Each look gate [N, C, 1, 1] expanded to a row [N, C, 1, W] of its decoder output's width before its
    Mul (several looks; none in a one-look graph): onnxruntime runs the quantized network channels-last, where
    a [N, 1, 1, C] gate broadcasts over spans of C = 16 values, 5x slower than over spans of a row (W x C):
    0.44 against 0.08 ms for dec1's gate, 1 thread. The same values; an Expand of C x W values per gate.
    Reads the shapes of ``graph``'s value_info (shape inference). Returns how many gates were expanded."""
    import onnx

    shapes = {info.name: [d.dim_value for d in info.type.tensor_type.shape.dim] for info in graph.value_info}
    readers, from_looks, frontier = _readers(graph), set(), [LOOKS_INPUT_NAME]
    while frontier:  # every tensor the look weights reach, up to the gating Muls
        for node in readers.get(frontier.pop(), []):
            if node.op_type != "Mul":
                from_looks.update(node.output)
                frontier.extend(node.output)

    expanded = 0
    for index, node in enumerate(list(graph.node)):
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        gates = [name for name in node.input if name in from_looks]
        if len(gates) != 1:
            continue
        features = next(name for name in node.input if name != gates[0])
        width = shapes.get(features, [0])[-1]
        if not width:
            raise RuntimeError(f"the width of the gated output {features!r} is unknown; cannot expand its gate")
        shape = f"{gates[0]}_row_shape"
        graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, 1, 1, width], np.int64), shape))
        row = f"{gates[0]}_row"
        position = list(graph.node).index(node)
        graph.node.insert(position, onnx.helper.make_node("Expand", [gates[0], shape], [row], name=f"gate_row{index}"))
        node.input[list(node.input).index(gates[0])] = row
        expanded += 1
    return expanded


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {name: node for node in graph.node for name in node.output}


def _readers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """The nodes that read each tensor."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def _initializer(graph: onnx.GraphProto, name: str) -> onnx.TensorProto:
    found = next((init for init in graph.initializer if init.name == name), None)
    if found is None:
        raise RuntimeError(f"{name!r} is not a constant of the graph")
    return found


def pixel_shuffle_as_dcr(graph: onnx.GraphProto) -> None:
    """Turn each CRD DepthToSpace fed by a Conv into DCR, reordering that Conv's output channels so
    the result is the same tensor. CRD reads output channel c, block offset k from input channel
    ``c * b*b + k``; DCR from ``k * C + c``. NNAPI runs DCR only; Core ML wants CRD's shape fixed."""
    import onnx

    producers = _producers(graph)
    for node in graph.node:
        mode = next((a for a in node.attribute if a.name == "mode"), None)
        if node.op_type != "DepthToSpace" or mode is None or mode.s != b"CRD":
            continue
        conv = producers.get(node.input[0])
        if conv is None or conv.op_type != "Conv":
            raise RuntimeError("a CRD DepthToSpace that does not read a Conv; cannot reorder it to DCR")
        block = next(a.i for a in node.attribute if a.name == "blocksize")
        weight = _initializer(graph, conv.input[1])
        channels = onnx.numpy_helper.to_array(weight).shape[0] // (block * block)
        order = np.array([c * block * block + k for k in range(block * block) for c in range(channels)])
        for constant in (_initializer(graph, name) for name in conv.input[1:]):  # weight, bias
            constant.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(constant)[order], constant.name))
        mode.s = b"DCR"


def constant_resize_roi(graph: onnx.GraphProto) -> None:
    """Give each Resize an empty constant ``roi`` where the exporter left the input unnamed. Resize
    reads roi only in tf_crop_and_resize mode, so nothing changes, but a nameless input has no
    shape, and onnxruntime's mobile checker then counts the Resize as dynamic (NNAPI split)."""
    import onnx

    roi = "resize_roi"
    for node in graph.node:
        if node.op_type == "Resize" and len(node.input) > 1 and not node.input[1]:
            node.input[1] = roi
            if not any(init.name == roi for init in graph.initializer):
                graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(0, np.float32), roi))


def export_fp32(model: TinyBeauty, inputs: ExportInputs, path: Path, meta: ExportMeta) -> Path:
    """The float reference graph, simplified. Not shipped: parity and latency compare against it."""
    import onnx

    model_proto = _export_simplified(model, inputs, path)
    compact(model_proto, meta)
    onnx.save(model_proto, str(path))
    return path


def _float_tail(graph: onnx.GraphProto) -> list[str]:
    """Names of the residual Add (it reads the graph input) and everything after it (the clamp)."""
    consumers = _readers(graph)
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
    """The calibration faces (each with its look weights, for several looks, and its region maps, for a
    region-input network) as onnxruntime's reader."""

    def __init__(self, inputs: ExportInputs):
        names = inputs.input_names
        self.batches = iter([{name: tensor.numpy() for name, tensor in zip(names, args, strict=True)}
                             for args in inputs.calibration_args()])

    def get_next(self):
        return next(self.batches, None)


def export_int8(model: TinyBeauty, inputs: ExportInputs, path: Path, meta: ExportMeta) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    fp32 = path.with_name(path.stem + ".fp32-for-int8.onnx")
    simplified = _export_simplified(model, inputs, path)
    onnx.save(simplified, str(fp32))
    quantized = path.with_name(path.stem + ".qdq.onnx")
    overrides = trained_range_overrides(simplified.graph, model, inputs.activation_ranges)
    overrides |= stem_input_overrides(simplified.graph)
    overrides |= look_gate_overrides(simplified.graph)
    quantize_static(
        str(fp32), str(quantized), _Calibration(inputs),
        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile,
        nodes_to_exclude=_float_tail(simplified.graph),
        extra_options={"CalibPercentile": CALIBRATION_PERCENTILE,
                       "TensorQuantOverrides": overrides},
    )
    model_proto = onnx.load(str(quantized))
    residual_reads_float_face(model_proto.graph)
    depth_to_space_in_uint8(model_proto.graph)
    gates_in_uint8(model_proto.graph)
    share_concat_scales(model_proto.graph)
    requantize_conv_biases(model_proto.graph)
    compact(model_proto, meta)
    onnx.checker.check_model(model_proto, full_check=True)
    onnx.save(model_proto, str(path))
    for leftover in (fp32, quantized):
        leftover.unlink()
    return path


def trained_range_overrides(graph: onnx.GraphProto, model: TinyBeauty,
                            ranges: dict[str, tuple[float, float]] | None) -> dict:
    """onnxruntime's per-tensor overrides that give each convolution's output (and its ReLU's, and a gated
    output's look gate Mul's, as the other int8 formats round it) the range a quantization-aware checkpoint
    trained it with ({} without ranges: calibration decides).
    The graph's Convs are matched to the network's quantized outputs (models/tinybeauty.py) in forward
    order, each checked by weight shape."""
    if not ranges:
        return {}
    outputs = quantized_outputs(model.config)
    convs = [node for node in graph.node if node.op_type == "Conv"]
    shapes = [tuple(output_conv(model.residual, output).weight.shape) for output in outputs]
    found = [tuple(_initializer(graph, conv.input[1]).dims) for conv in convs]
    if found != shapes:
        raise RuntimeError(f"the graph's convolutions {found} do not match the network's {shapes}; "
                           "cannot place the trained activation ranges")
    consumers = _readers(graph)
    overrides = {}
    for conv, output in zip(convs, outputs, strict=True):
        low, high = ranges[output.name]
        relus = [n.output[0] for n in consumers.get(conv.output[0], []) if n.op_type == "Relu"]
        # A gated output (several looks): the look gate's Mul of the ReLU, in (0, 1) times it, so in its range.
        gated = [n.output[0] for relu in relus for n in consumers.get(relu, []) if n.op_type == "Mul"]
        tensors = [conv.output[0], *relus, *gated]
        overrides |= {tensor: [{"rmin": np.float32(low), "rmax": np.float32(high)}] for tensor in tensors}
    return overrides


def stem_input_overrides(graph: onnx.GraphProto) -> dict:
    """A region-input network's stem input, the face and its maps concatenated, and both inputs of the
    concatenation rounded over exactly models/int8.py's STEM_INPUT_RANGE (export/common.py: pin_stem_input says
    why); {} for a graph without the regions input."""
    concatenations = [node for node in graph.node if node.op_type == "Concat" and REGIONS_INPUT_NAME in node.input]
    if not concatenations:
        return {}
    low, high = STEM_INPUT_RANGE
    tensors = [INPUT_NAME, REGIONS_INPUT_NAME, *(node.output[0] for node in concatenations)]
    return {tensor: [{"rmin": np.float32(low), "rmax": np.float32(high)}] for tensor in tensors}


def look_gate_overrides(graph: onnx.GraphProto) -> dict:
    """Each look gate vector (several looks: the MatMul of the look weights and a gate table) rounded over
    exactly (0, 1), as the other int8 formats round it (export/common.py: pin_look_gates): calibration's
    percentile stops short of the largest gate, and a gate clipped from 0.999 to 0.99 scales its channel down
    1% for every face. {} for one look."""
    low, high = STEM_INPUT_RANGE
    return {node.output[0]: [{"rmin": np.float32(low), "rmax": np.float32(high)}]
            for node in graph.node if node.op_type == "MatMul" and LOOKS_INPUT_NAME in node.input}


def residual_reads_float_face(graph: onnx.GraphProto) -> None:
    """The residual Add reads the float input face, not DequantizeLinear(QuantizeLinear(face)): the
    quantizer hands the Add the copy it made for the stem conv, which rounds untouched pixels."""
    producers = _producers(graph)
    for node in graph.node:
        if node.op_type != "Add":
            continue
        for k, name in enumerate(node.input):
            dequantize = producers.get(name)
            quantize = producers.get(dequantize.input[0]) if dequantize is not None else None
            if (dequantize is not None and dequantize.op_type == "DequantizeLinear" and quantize is not None
                    and quantize.op_type == "QuantizeLinear" and quantize.input[0] == INPUT_NAME):
                node.input[k] = INPUT_NAME


def depth_to_space_in_uint8(graph: onnx.GraphProto) -> None:
    """QuantizeLinear + DequantizeLinear after each DepthToSpace that reads a DequantizeLinear, with the
    same scale and zero point: DepthToSpace only moves values, so nothing changes numerically, and
    onnxruntime (and NNAPI) drop the pair and run it on the uint8 tensor, a quarter of the bytes."""
    import onnx

    producers = _producers(graph)
    for index in reversed(range(len(graph.node))):
        node = graph.node[index]
        dequantize = producers.get(node.input[0]) if node.op_type == "DepthToSpace" else None
        if dequantize is None or dequantize.op_type != "DequantizeLinear":
            continue
        output, params = node.output[0], list(dequantize.input[1:])
        node.output[0] = f"{output}.float"
        graph.node.insert(index + 1, onnx.helper.make_node("DequantizeLinear", [f"{output}.uint8", *params], [output]))
        graph.node.insert(index + 1, onnx.helper.make_node("QuantizeLinear", [f"{output}.float", *params],
                                                           [f"{output}.uint8"]))


def gates_in_uint8(graph: onnx.GraphProto) -> int:
    """Each Reshape or Expand of a look gate (several looks) moved onto the uint8 tensor: the DequantizeLinear
    before it and the QuantizeLinear after it dropped, the DequantizeLinear that follows reading the uint8
    values with the first pair's scale and zero point (the op only moves values, so nothing changes). What
    onnxruntime does at load anyway, done in the file: 2 nodes and their constants fewer per op. Returns how
    many ops were moved."""
    moved = 0
    for node in list(graph.node):
        producers, readers = _producers(graph), _readers(graph)  # again after each move: the graph changed
        dequantize = producers.get(node.input[0]) if node.op_type in ("Reshape", "Expand") else None
        after = readers.get(node.output[0], [])
        if (dequantize is None or dequantize.op_type != "DequantizeLinear" or len(after) != 1
                or after[0].op_type != "QuantizeLinear" or len(readers.get(dequantize.output[0], [])) != 1):
            continue
        quantize = after[0]
        if not all(reader.op_type == "DequantizeLinear" for reader in readers.get(quantize.output[0], [])):
            continue
        for reader in readers.get(quantize.output[0], []):
            reader.input[1:3] = dequantize.input[1:3]
        node.input[0], node.output[0] = dequantize.input[0], quantize.output[0]
        graph.node.remove(dequantize)
        graph.node.remove(quantize)
        moved += 1
    return moved


def _quantized_neighbours(graph: onnx.GraphProto) -> list[list[str]]:
    """For each value-moving node reading a DequantizeLinear, the uint8 tensors its inputs are
    dequantized from and its outputs quantized to: the tensors that must share a scale."""
    producers = _producers(graph)
    readers = _readers(graph)
    linked = []
    for node in graph.node:
        if node.op_type not in SAME_SCALE_OPS:
            continue
        inputs = [producers.get(name) for name in (node.input if node.op_type == "Concat" else node.input[:1])]
        tensors = [dq.input[0] for dq in inputs if dq is not None and dq.op_type == "DequantizeLinear"]
        tensors += [q.output[0] for q in readers.get(node.output[0], []) if q.op_type == "QuantizeLinear"]
        linked.append(tensors)
    return linked


def _span(graph: onnx.GraphProto, scale: str, zero_point: str) -> tuple[float, float]:
    import onnx

    s = float(onnx.numpy_helper.to_array(_initializer(graph, scale)))
    z = int(onnx.numpy_helper.to_array(_initializer(graph, zero_point)))
    return -z * s, (255 - z) * s


def share_concat_scales(graph: onnx.GraphProto) -> None:
    """One scale and zero point for every uint8 tensor joined by a Concat (its inputs, its output, and
    through Resize, MaxPool and DepthToSpace the tensors on their other side): the widest range
    among them, so nothing clips that did not. An int8 concatenation then copies bytes instead of
    requantizing each input through a lookup table, and value-moving ops keep running on uint8. What
    XNNPACK, QNNPACK and TFLite do for a concatenation anyway; models/rescale.py already gave each
    skip its decoder partner's range, so the shared scale costs the skips next to nothing."""
    groups: dict[str, str] = {}  # union-find over tensor names

    def root(name: str) -> str:
        while groups.setdefault(name, name) != name:
            name = groups[name]
        return name

    for tensors in _quantized_neighbours(graph):
        for a, b in zip(tensors, tensors[1:], strict=False):
            groups[root(a)] = root(b)
    members: dict[str, list[str]] = {}
    for name in list(groups):
        members.setdefault(root(name), []).append(name)
    producers = _producers(graph)
    for names in (names for names in members.values() if len(names) > 1):
        params = [tuple(producers[name].input[1:3]) for name in names]
        spans = [_span(graph, *p) for p in params]
        low, high = min(lo for lo, _ in spans), max(hi for _, hi in spans)
        widest = next((p for p, (lo, hi) in zip(params, spans, strict=True) if lo <= low and hi >= high), None)
        if widest is None:
            raise RuntimeError(f"no one quantization range covers the tensors {names}; cannot share a scale")
        for node in graph.node:
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") and (
                    node.output[0] in names or node.input[0] in names):
                node.input[1:3] = widest


def requantize_conv_biases(graph: onnx.GraphProto) -> None:
    """Re-express each Conv's int32 bias in (input scale x weight scale), the scale an int8 conv
    adds it in: after :func:`share_concat_scales` moved some inputs' scales, the bias would
    otherwise be read at the wrong scale (onnxruntime's fused QLinearConv does) or refuse fusion."""
    import onnx

    producers = _producers(graph)
    constant = {init.name: init for init in graph.initializer}

    def value(name: str) -> np.ndarray:
        return onnx.numpy_helper.to_array(constant[name])

    for conv in (n for n in graph.node if n.op_type == "Conv" and len(n.input) == 3):
        x, w, b = (producers.get(name) for name in conv.input)
        if not all(node is not None and node.op_type == "DequantizeLinear" for node in (x, w, b)):
            continue
        wanted = (value(x.input[1]) * value(w.input[1])).astype(np.float32)
        if np.array_equal(value(b.input[1]), wanted):
            continue
        bias = value(b.input[0]).astype(np.float64) * value(b.input[1])
        quantized = np.clip(np.round(bias / wanted), np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
        for name, array in ((b.input[0], quantized), (b.input[1], wanted)):  # the quantizer's own, one per bias
            constant[name].CopyFrom(onnx.numpy_helper.from_array(array, name))


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove the constants no node reads (the scales and zero points :func:`share_concat_scales`
    replaced): bytes for nothing, and onnxruntime warns about each one when an app loads the file."""
    read = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    for unused in [init for init in graph.initializer if init.name not in read]:
        graph.initializer.remove(unused)


def compact(model_proto: onnx.ModelProto, meta: ExportMeta) -> None:
    """Drop doc strings, value_info and unused constants, shorten every internal name, set provenance metadata."""
    import onnx

    graph = model_proto.graph
    drop_unused_initializers(graph)
    keep = {INPUT_NAME, LOOKS_INPUT_NAME, REGIONS_INPUT_NAME, OUTPUT_NAME}
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
    names = region_names(session.get_modelmeta().custom_metadata_map)

    def run(faces: np.ndarray, look_weights: np.ndarray | None = None, regions: np.ndarray | None = None
            ) -> np.ndarray:
        feeds = {INPUT_NAME: np.ascontiguousarray(faces, dtype=np.float32)}
        if look_weights is not None:
            feeds[LOOKS_INPUT_NAME] = np.ascontiguousarray(look_weights, dtype=np.float32)
        maps = checked_regions(path, names, faces, regions)
        if maps is not None:
            feeds[REGIONS_INPUT_NAME] = maps
        return session.run([OUTPUT_NAME], feeds)[0]

    return run



def read_metadata(path: Path) -> dict:
    """The provenance stored in ``metadata_props``, read by onnxruntime (graph left unoptimized): the
    ``onnx`` package takes longer to import than the file takes to load, and running a file needs
    nothing else from it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)
