"""Core ML (``.mlmodel``, neural-network format) with 8-bit weights, for iOS apps.

The model takes an RGB image (``ct.ImageType``, pixel values scaled to [0, 1] inside the model)
so an app passes a ``CVPixelBuffer`` straight in, and returns an RGB image of the made-up face
(``made_up``, 0-255 per channel, same size). A network of several looks also takes ``look_weights``,
an ``MLMultiArray`` float32 [1, L] (one-hot picks a look, weights adding up to 1 blend them); a one-look
network takes the image alone. A network that reads the face's region maps (the default network) also takes
``regions``, an ``MLMultiArray`` float32 [1, K, S, S] in [0, 1] (one map per name of ``tinybeauty.region_inputs``,
NCHW: Core ML's image input is the face alone), concatenated behind the scaled face inside the model. Weights
are linearly quantized to 8 bits per output channel
(``quantize_weights(nbits=8)``); activations run in float on device.

Core ML cannot predict off macOS. On Linux, the format's stand-in check (:func:`stand_in`, named in
export/formats.py's table) checks what Linux can check: the spec's inputs, outputs and layers
(:func:`check_spec`), and that the weights stored in the file, dequantized and loaded back into
the PyTorch model (:func:`dequantized_model`), reproduce the PyTorch output. On macOS :func:`load` runs
the real model.
"""

from __future__ import annotations

import copy
import functools
import importlib
import logging
import platform
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from export.common import (
    INPUT_NAME,
    LOOKS_INPUT_NAME,
    OUTPUT_NAME,
    REGIONS_INPUT_NAME,
    ExportInputs,
    ExportMeta,
    checked_regions,
    constant_gates,
    region_names,
)
from export.runtime import Runner, RuntimeUnavailable
from models.tinybeauty import TinyBeauty

log = logging.getLogger(__name__)

EXPECTED_LAYERS = {"convolution", "activation", "clip", "pooling", "upsample", "concat", "reorganizeData",
                   "add", "multiply", "loadConstantND", "scale"}

# Several looks: per gated output, the look weights times its constant gates (an inner product), reshaped to
# [C, 1, 1]; its multiply into the output is a "multiply" layer, as the network's others.
LOOK_LAYERS = {"innerProduct", "reshapeStatic"}


class ImageOut(nn.Module):
    """Core ML image outputs are 0-255: scale the [0, 1] prediction. Its inputs are the file's, in order: the
    face, the look weights (several looks), the region maps (a region-input network). A copy of ``model`` with
    its look gates constants (several looks)."""

    def __init__(self, model: TinyBeauty):
        super().__init__()
        self.model = constant_gates(model)

    def forward(self, face: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        looks = inputs[0] if len(self.model.config.looks) > 1 else None
        regions = inputs[-1] if self.model.config.region_inputs else None
        return self.model(face, looks, regions=regions) * 255.0


# coremltools draws a tqdm bar for every frontend, MIL pass pipeline and compression pass, into
# the export's log, and has no option to turn them off (apple/coremltools#1144, #1815). These
# modules' own tqdm name gets one that is disabled; a module a later release moves is skipped
# (its bars come back, nothing breaks).
COREMLTOOLS_PROGRESS_BARS = (
    ("coremltools.converters.mil.frontend.torch.ops", "_tqdm"),
    ("coremltools.converters.mil.mil.passes.pass_pipeline", "tqdm"),
    ("coremltools.converters.mil.backend.nn.op_mapping", "_tqdm"),
    ("coremltools.optimize.coreml._quantization_passes", "tqdm"),
    ("coremltools.optimize.coreml._post_training_quantization", "tqdm"),
)


def _quiet_coremltools():
    import coremltools as ct

    for name in ("coremltools", "coremltools.converters", "coremltools.models"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for module_name, attribute in COREMLTOOLS_PROGRESS_BARS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        bar = getattr(module, attribute, None)
        if bar is not None and not isinstance(bar, functools.partial):
            setattr(module, attribute, functools.partial(bar, disable=True))
    return ct


def convert(model: TinyBeauty, inputs: ExportInputs, convert_to: str, target):
    """The float Core ML model: RGB image in (scaled to [0, 1] inside), RGB image out; several looks:
    the look weights in too, a float32 [1, L] array; region maps: those too, a float32 [1, K, S, S] array."""
    ct = _quiet_coremltools()
    size = inputs.image_size
    with warnings.catch_warnings():
        # TinyBeauty.network_input checks the maps' shape against the face's: both fixed here, as the file's are
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python boolean",
                                category=torch.jit.TracerWarning)
        traced = torch.jit.trace(ImageOut(model).eval(), inputs.example_args)
    arrays = [ct.TensorType(name=name, shape=tuple(example.shape), dtype=np.float32)
              for name, example in ((LOOKS_INPUT_NAME, inputs.example_looks),
                                    (REGIONS_INPUT_NAME, inputs.example_regions)) if example is not None]
    return ct.convert(
        traced,
        inputs=[ct.ImageType(name=INPUT_NAME, shape=(1, 3, size, size), scale=1 / 255.0,
                             color_layout=ct.colorlayout.RGB), *arrays],
        outputs=[ct.ImageType(name=OUTPUT_NAME, color_layout=ct.colorlayout.RGB)],
        convert_to=convert_to, minimum_deployment_target=target,
    )


def describe(mlmodel, meta: ExportMeta) -> None:
    """Author, licence, descriptions and the provenance metadata, as Xcode shows them."""
    size = meta.image_size
    mlmodel.author = meta.author
    mlmodel.license = meta.license
    mlmodel.version = meta.version
    mlmodel.short_description = meta.description
    mlmodel.input_description[INPUT_NAME] = f"Aligned face, RGB {size}x{size}."
    if meta.looks_input:  # short: each byte ships, and tinybeauty.look_input holds the whole spec
        names = ", ".join(look["name"] for look in meta.looks)
        mlmodel.input_description[LOOKS_INPUT_NAME] = (f"A weight per look ({names}): one-hot picks one, "
                                                       "a sum of 1 blends.")
    if meta.region_inputs:  # short too: tinybeauty.regions_input holds the whole spec
        mlmodel.input_description[REGIONS_INPUT_NAME] = (f"Region maps ({', '.join(meta.region_inputs)}) in [0,1], "
                                                         f"[1,{len(meta.region_inputs)},{size},{size}].")
    mlmodel.output_description[OUTPUT_NAME] = f"The same face with the makeup style, RGB {size}x{size}."
    mlmodel.user_defined_metadata.update(meta.as_strings())


def export(model: TinyBeauty, inputs: ExportInputs, path: Path, meta: ExportMeta) -> Path:
    ct = _quiet_coremltools()
    from coremltools.models.neural_network import quantization_utils

    mlmodel = convert(model, inputs, "neuralnetwork", ct.target.iOS14)
    mlmodel = quantization_utils.quantize_weights(mlmodel, nbits=8, quantization_mode="linear")
    describe(mlmodel, meta)
    mlmodel.save(str(path))
    return path


def _weights(params, count: int) -> np.ndarray:
    """Decode a Core ML WeightParams (float, float16 or linearly quantized) to float32."""
    if len(params.floatValue):
        return np.asarray(params.floatValue, np.float32)
    if len(params.float16Value):
        return np.frombuffer(params.float16Value, np.float16).astype(np.float32)
    bits = params.quantization.numberOfBits
    if bits != 8 or not params.quantization.HasField("linearQuantization"):
        encoding = params.quantization.WhichOneof("QuantizationType")
        raise ValueError(f"unsupported weight encoding ({bits} bits, {encoding})")
    quantized = np.frombuffer(params.rawValue, np.uint8).astype(np.float32)[:count]
    scale = np.asarray(params.quantization.linearQuantization.scale, np.float32)
    offset = np.asarray(params.quantization.linearQuantization.bias, np.float32)
    rows = quantized.reshape(len(scale), -1) if len(scale) > 1 else quantized[None]
    return (rows * scale[:, None] + offset[:, None]).reshape(-1)


def dequantized_model(path: Path, model: TinyBeauty) -> tuple[TinyBeauty, dict]:
    """The PyTorch model with every conv weight and bias replaced by what the .mlmodel stores."""
    ct = _quiet_coremltools()
    spec = ct.utils.load_spec(str(path))
    layers = list(spec.neuralNetwork.layers)
    convs_ml = [layer.convolution for layer in layers if layer.WhichOneof("layer") == "convolution"]
    convs_pt = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if len(convs_ml) != len(convs_pt):
        raise ValueError(f"{path} has {len(convs_ml)} convolutions, the PyTorch model {len(convs_pt)}")
    rebuilt = copy.deepcopy(model).eval()
    quantized_layers = 0
    with torch.no_grad():
        for conv_ml, conv_pt in zip(convs_ml, [m for m in rebuilt.modules() if isinstance(m, nn.Conv2d)], strict=True):
            shape = conv_pt.weight.shape
            weight = _weights(conv_ml.weights, shape.numel())
            if weight.size != shape.numel():
                raise ValueError(f"{path}: a convolution stores {weight.size} weights, PyTorch expects {tuple(shape)}")
            conv_pt.weight.copy_(torch.from_numpy(weight.reshape(shape)))
            quantized_layers += conv_ml.weights.quantization.numberOfBits == 8
            if conv_pt.bias is not None:
                conv_pt.bias.copy_(torch.from_numpy(_weights(conv_ml.bias, conv_pt.bias.numel())))
    summary = {"layers": sorted({layer.WhichOneof("layer") for layer in layers}),
               "convolutions": len(convs_ml), "int8_convolutions": int(quantized_layers)}
    return rebuilt, summary


def image_io_problems(spec, image_size: int, looks: int = 1, regions: int = 0) -> list[str]:
    """What is wrong with a spec's inputs and output as an app sees them: image in (and, for ``looks``
    above one, the look weights, float32 [1, looks]; for ``regions`` maps, float32 [1, regions, S, S]),
    image out."""
    expected = [INPUT_NAME] + ([LOOKS_INPUT_NAME] if looks > 1 else []) + ([REGIONS_INPUT_NAME] if regions else [])
    found = [feature.name for feature in spec.description.input]
    if found != expected:
        return [f"expected inputs {expected} (a network of {looks} look{'s' * (looks > 1)}"
                f"{f' reading {regions} region maps' if regions else ''}), found {found}"]
    problems = look_input_problems(spec.description.input[1], looks) if looks > 1 else []
    if regions:
        problems += array_input_problems(spec.description.input[-1], REGIONS_INPUT_NAME,
                                         [1, regions, image_size, image_size])
    (out,) = spec.description.output
    for feature, name in ((spec.description.input[0], INPUT_NAME), (out, OUTPUT_NAME)):
        kind = feature.type.WhichOneof("Type")
        if feature.name != name or kind != "imageType":
            problems.append(f"expected image feature {name!r}, found {feature.name!r} of type {kind}")
        elif feature.type.imageType.width != image_size or feature.type.imageType.height != image_size:
            image = feature.type.imageType
            problems.append(f"{name} is {image.width}x{image.height}, expected {image_size}")
    return problems


def look_input_problems(feature, looks: int) -> list[str]:
    """What is wrong with the look weights input: it must be a float32 MultiArray of shape [1, looks]."""
    return array_input_problems(feature, LOOKS_INPUT_NAME, [1, looks])


def array_input_problems(feature, name: str, shape: list[int]) -> list[str]:
    """What is wrong with an array input (the look weights, the region maps): a float32 MultiArray of ``shape``."""
    kind = feature.type.WhichOneof("Type")
    if kind != "multiArrayType":
        return [f"{name} is of type {kind}, expected a MultiArray"]
    array = feature.type.multiArrayType
    data_type = type(array).ArrayDataType.Name(array.dataType)
    if list(array.shape) != shape or data_type != "FLOAT32":
        return [f"{name} is {data_type} {list(array.shape)}, expected FLOAT32 {shape}"]
    return []


def check_spec(path: Path, image_size: int, looks: int = 1, regions: int = 0) -> dict:
    """Inputs, outputs and layer types as the app will see them. Raises ValueError when off."""
    ct = _quiet_coremltools()
    spec = ct.utils.load_spec(str(path))
    problems = image_io_problems(spec, image_size, looks, regions)
    layer_types = {layer.WhichOneof("layer") for layer in spec.neuralNetwork.layers}
    expected_layers = EXPECTED_LAYERS | (LOOK_LAYERS if looks > 1 else set())
    if layer_types - expected_layers:
        problems.append(f"unexpected layer types {sorted(layer_types - expected_layers)}")
    scale = spec.neuralNetwork.preprocessing[0].scaler.channelScale if spec.neuralNetwork.preprocessing else 1.0
    if abs(scale - 1 / 255.0) > 1e-6:
        problems.append(f"input scale is {scale}, expected 1/255")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    look_input = f" + {LOOKS_INPUT_NAME}: MultiArray float32 [1,{looks}]" if looks > 1 else ""
    look_input += (f" + {REGIONS_INPUT_NAME}: MultiArray float32 [1,{regions},{image_size},{image_size}]"
                   if regions else "")
    return {"input": f"{INPUT_NAME}: image RGB {image_size}x{image_size}, scaled by 1/255{look_input}",
            "output": f"{OUTPUT_NAME}: image RGB {image_size}x{image_size}",
            "spec_version": int(spec.specificationVersion)}


def read_metadata(path: Path) -> dict:
    """The provenance stored in ``user_defined_metadata``."""
    return dict(_quiet_coremltools().utils.load_spec(str(path)).description.metadata.userDefined)


def can_predict() -> bool:
    return platform.system() == "Darwin"


def load(path: Path, threads: int | None = None) -> Runner:
    if not can_predict():
        raise RuntimeUnavailable(f"Core ML prediction needs macOS (this is {platform.system()})")
    ct = _quiet_coremltools()
    mlmodel = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
    names = region_names(read_metadata(path))

    def run(faces: np.ndarray, look_weights: np.ndarray | None = None, regions: np.ndarray | None = None
            ) -> np.ndarray:
        maps = checked_regions(path, names, faces, regions)
        outputs = []
        for index, face in enumerate(faces):
            image = Image.fromarray(np.clip(np.round(face.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8))
            feeds = {INPUT_NAME: image}
            if look_weights is not None:  # one row per face, as the file takes it: [1, L]
                feeds[LOOKS_INPUT_NAME] = np.ascontiguousarray(look_weights[index:index + 1], dtype=np.float32)
            if maps is not None:  # the face's own maps: [1, K, S, S]
                feeds[REGIONS_INPUT_NAME] = maps[index:index + 1]
            made_up = mlmodel.predict(feeds)[OUTPUT_NAME]
            outputs.append(np.asarray(made_up.convert("RGB"), np.float32).transpose(2, 0, 1) / 255.0)
        return np.stack(outputs)

    return run


def stand_in(path: Path, model: TinyBeauty, faces: torch.Tensor, look_weights: torch.Tensor | None = None,
             regions: torch.Tensor | None = None) -> tuple[np.ndarray, list[str]]:
    spec = check_spec(path, int(faces.shape[-1]), len(model.config.looks), len(model.config.region_inputs))
    rebuilt, summary = dequantized_model(path, model)
    with torch.no_grad():
        outputs = rebuilt(faces, look_weights, regions=regions).numpy()
    checks = [f"spec: {spec['input']} -> {spec['output']}; layers {', '.join(summary['layers'])}",
              f"weights: {summary['int8_convolutions']}/{summary['convolutions']} convolutions stored as 8-bit, "
              "dequantized from the file into PyTorch and run (activations in fp32, as a weights-only check)"]
    return outputs, checks
