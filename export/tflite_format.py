"""LiteRT / TensorFlow Lite (``.tflite``): int8, for Android apps.

Pipeline: the whole model (``clamp(face + residual, 0, 1)``) is exported with ``torch.export``
and quantized with litert-torch's PT2E quantizer (per-channel symmetric int8 weights, int8
activations, static, calibrated on training faces), its input and output moved to channels-last
(``to_channel_last_io``), and converted with ``litert_torch.convert``. Run back with
``ai_edge_litert``'s Interpreter (the LiteRT runtime an app links, XNNPACK on the CPU).

For app developers: input ``face`` is **float32 NHWC [1, S, S, 3], RGB in [0, 1]** (an Android
``Bitmap``'s pixels divided by 255, in the order they come); output is the made-up face in the
same layout and range. Quantize/dequantize happen inside the model, so the app needs no scale
or zero point. Channels-last float I/O is what an Android app feeds most simply, and it gave the
smallest file. A network of several looks takes a second input, ``look_weights`` (signature name;
float32 [1, L], one weight per look, one-hot picks a look), kept float up to the Muls that gate the
decoder's outputs (:func:`float_look_weights`). A network that reads region maps takes ``regions`` (signature name;
**float32 NHWC [1, S, S, K]** in [0, 1], channels last like the face), concatenated behind the face inside the
model; the concatenation is quantized with one scale (face and maps are both in [0, 1]).

Provenance: a ``tinybeauty`` entry in the flatbuffer's metadata table holds the JSON of
:meth:`ExportMeta.as_strings` (``read_metadata``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from export.common import (
    LOOKS_INPUT_NAME,
    REGIONS_INPUT_NAME,
    ExportInputs,
    ExportMeta,
    checked_regions,
    constant_gates,
    float_residual_add,
    pin_activation_ranges,
    pin_stem_input,
    region_names,
)
from export.runtime import Runner, RuntimeUnavailable
from models.tinybeauty import TinyBeauty, quantized_outputs

METADATA_NAME = "tinybeauty"
log = logging.getLogger(__name__)


def _quantizer():
    """litert-torch's PT2E quantizer, with its max-pool annotation made deterministic.

    Its max-pool annotator shares the pool's parameters with the *node* that feeds it; when that
    node's own output spec is shared onward (a skip that also feeds a concatenation), whether the
    shared group resolves depends on set iteration order over graph nodes, and ``prepare_pt2e``
    failed at random (``AssertionError: ... 'relu_2' not in ...``). Here each max-pool gets its
    own observer on its input edge and shares it with its output: deterministic, same values."""
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    max_pools = {torch.ops.aten.max_pool2d.default, torch.ops.aten.max_pool2d_with_indices.default}

    class Quantizer(PT2EQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            for node in model.graph.nodes:
                if node.target in max_pools and "quantization_annotation" in node.meta:
                    producer = node.args[0]
                    node.meta["quantization_annotation"] = QuantizationAnnotation(
                        input_qspec_map={producer: self.global_config.input_activation},
                        output_qspec=SharedQuantizationSpec((producer, node)), _annotated=True)
            float_look_weights(model)
            float_region_concatenation(model)
            return model

    return Quantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))


def float_look_weights(graph: torch.fx.GraphModule) -> int:
    """Leave the look weights float up to and including the Muls that gate the decoder's outputs (several
    looks; a one-look graph has no such input): each gate vector (the look weights times the constant gates)
    and its Mul. Quantized there, the converter folds their Quantize into the input, and the file would take
    int8 look weights instead of float32 ones. A Mul reads its output's int8 values dequantized, and the
    convolution after it quantizes the product (pinned to that output's trained range: a gate is in (0, 1)).
    Returns how many annotations were dropped."""
    looks = [node for node in graph.graph.nodes if node.op == "placeholder" and node.name == LOOKS_INPUT_NAME]
    dropped, frontier = 0, list(looks)
    while frontier:
        for user in frontier.pop().users:
            if user.target == torch.ops.aten.mul.Tensor:
                continue
            dropped += int(user.meta.pop("quantization_annotation", None) is not None)
            frontier.append(user)
    return dropped


def float_region_concatenation(graph: torch.fx.GraphModule) -> int:
    """Leave the concatenation of the face and its region maps float (a network that reads them; none in
    others), so that the stem's convolution quantizes its input, the concatenation, with one scale. Quantized
    inputs of the concatenation instead made the converter fold the face's Quantize into the file's input: the
    file took an int8 face, and the residual was added to it rounded. Returns how many annotations were dropped."""
    floats = [node for cat in region_concatenations(graph) for clamp in cat.all_input_nodes
              for node in [cat, clamp, *clamp.all_input_nodes] if node.op == "call_function"]
    return sum(node.meta.pop("quantization_annotation", None) is not None for node in floats)


def region_concatenations(graph: torch.fx.GraphModule) -> list[torch.fx.Node]:
    """The concatenation of the face and its region maps, moved to NCHW and clamped
    (:func:`channels_last_network_input`): one in a region-input network's graph, none in another's."""
    maps = [node for node in graph.graph.nodes if node.op == "placeholder" and node.name == REGIONS_INPUT_NAME]
    concatenations = [user for node in maps for permute in node.users for clamp in permute.users
                      for user in clamp.users if user.target == torch.ops.aten.cat.default]
    if maps and len(concatenations) != 1:
        raise RuntimeError(f"the region maps feed {len(concatenations)} concatenations with the face, not one "
                           "(channels_last_network_input)")
    return concatenations


def channels_last_network_input(face: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """What the stem reads, from the face (NCHW: ``to_channel_last_io`` moves the file's NHWC face, a positional
    input) and the maps as the file takes them, NHWC (a keyword input, which it does not move; a wrapper module
    that moved them would put its name in every tensor's name: 5 KB). Face and maps are each clamped to [0, 1]
    first (what they hold anyway: the same values): the converter moves the Quantize of a concatenation onto
    its inputs and on through the layout transposes into the file's inputs, and without an op between, the
    file took an int8 face and int8 maps and the residual was added to the rounded face. The clamps stay
    float (:func:`float_region_concatenation`), so the Quantize stops after them: float32 face and maps."""
    return torch.cat([torch.clamp(face, 0.0, 1.0), torch.clamp(regions.permute(0, 3, 1, 2), 0.0, 1.0)], dim=1)


def by_keyword(args: tuple[torch.Tensor, ...], names: list[str]) -> tuple[tuple[torch.Tensor], dict[str, torch.Tensor]]:
    """The network's inputs (named ``names``: ExportInputs.input_names) as ``(face,)`` and the others by keyword
    (the look weights, the region maps, these channels-last as the file takes them; none for a one-look network
    of the face alone): LiteRT names an input given by keyword after it (``look_weights``, ``regions``), a
    positional one ``args_N``."""
    others = dict(zip(names[1:], args[1:], strict=True))
    if REGIONS_INPUT_NAME in others:
        others[REGIONS_INPUT_NAME] = others[REGIONS_INPUT_NAME].permute(0, 2, 3, 1).contiguous()
    return args[:1], others


def export(model: TinyBeauty, inputs: ExportInputs, path: Path, meta: ExportMeta) -> Path:
    import litert_torch
    import litert_torch.progress
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = _quantizer()
    litert_torch.progress.console.quiet = True  # its per-stage progress lines are not part of our report
    example_face, example_others = by_keyword(inputs.example_args, inputs.input_names)
    network = float_residual_add(constant_gates(model.residual), inputs).eval()
    network.network_input = channels_last_network_input  # an instance attribute: called without self
    graph = torch.export.export(network, example_face, kwargs=example_others).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for args in inputs.calibration_args():
            face, others = by_keyword(args, inputs.input_names)
            prepared(*face, **others)
    if inputs.activation_ranges:
        pin_activation_ranges(prepared, inputs.activation_ranges, quantized_outputs(model.config))
    for concatenation in region_concatenations(prepared):  # a region-input network's stem input
        pin_stem_input(prepared, concatenation)
    quantized = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))
    channels_last = litert_torch.to_channel_last_io(quantized, args=[0], outputs=[0])
    example = inputs.example.permute(0, 2, 3, 1).contiguous()
    edge = litert_torch.convert(channels_last, (example,), example_others or None,
                                quant_config=QuantConfig(pt2e_quantizer=quantizer))
    edge.export(str(path))
    compact(path, meta.as_strings())
    return path


def compact(path: Path, values: dict) -> None:
    """Store ``values`` as JSON in the model's metadata table (the flatbuffer's own place for it) and shorten
    every internal tensor's name to its index in hex: the converter names each after its module path, ~70 bytes
    apiece, ~7 KB a file. The file's inputs and output keep theirs (``serving_default_look_weights``: what the
    runners find them by, and what an app sees)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(path.read_bytes(), 0))
    for graph in model.subgraphs:
        kept = {int(index) for index in (*graph.inputs, *graph.outputs)}
        for index, tensor in enumerate(graph.tensors):
            if index not in kept:
                tensor.name = format(index, "x")
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(values, sort_keys=True).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def read_metadata(path: Path) -> dict:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == METADATA_NAME:
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode())
    return {}


def load(path: Path, threads: int | None = None) -> Runner:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise RuntimeUnavailable(f"LiteRT is not installed ({error}); pip install -e '.[mobile]' "
                                 "(make setup does)") from error

    interpreter = Interpreter(model_path=str(path), num_threads=threads or None)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    looks = [i for i in details if LOOKS_INPUT_NAME in i["name"]]
    maps_input = [i for i in details if REGIONS_INPUT_NAME in i["name"]]
    (face,) = [i for i in details if i not in looks and i not in maps_input]
    (made_up,) = interpreter.get_output_details()
    names = region_names(read_metadata(path))

    def run(faces: np.ndarray, look_weights: np.ndarray | None = None, regions: np.ndarray | None = None
            ) -> np.ndarray:
        # NCHW in and out, like every runner; the file is NHWC (its region maps too)
        maps = checked_regions(path, names, faces, regions)
        interpreter.set_tensor(face["index"], np.ascontiguousarray(faces.transpose(0, 2, 3, 1), dtype=np.float32))
        for look_input in looks:  # several looks: the file's second input
            interpreter.set_tensor(look_input["index"], np.ascontiguousarray(look_weights, dtype=np.float32))
        for regions_input in maps_input:  # region maps: the file's last input, channels last
            interpreter.set_tensor(regions_input["index"], np.ascontiguousarray(maps.transpose(0, 2, 3, 1)))
        interpreter.invoke()
        return interpreter.get_tensor(made_up["index"]).transpose(0, 3, 1, 2).copy()

    return run
