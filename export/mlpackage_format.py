"""Core ML ML Program (``.mlpackage``): the format Apple recommends for new apps (iOS 16+).

Same interface as the ``.mlmodel``: an RGB image in (``CVPixelBuffer``, scaled to [0, 1] inside),
for a network of several looks the look weights too (``look_weights``, float32 [1, L]), for one that reads the
face's region maps those too (``regions``, float32 [1, K, S, S]), and the made-up
RGB image out, with the same metadata and provenance. The package is a folder;
its size is the total of every file in it, and the manifest's sha256 is over its files
(``models.atomic.sha256_tree``).

Weights are palettized per tensor (k-means look-up tables, native in ML Programs; grouped
channels would need iOS 18), with a bit width chosen per convolution on the export's check
faces: every layer starts at 8 bits; from the largest layer down, each takes the fewest bits
of (4, 6) that keep the stand-in's ground-truth PSNR within ``MAX_DROP_DB`` of PyTorch (for several
looks, each look's on its own check faces, through its one-hot input: the worst look decides). The
small edge layers (the stem and the head) are the sensitive ones and keep more bits. The
chosen widths and the size/quality path of the search are stored in the package's metadata
(``tinybeauty.weight_bits``, ``tinybeauty.size_quality``), and the benchmark plots them.

Every candidate package is compacted (:func:`compact`) before it is measured: short variable names
and one constant per distinct value, checked to compute the same program (:func:`program_signature`)
from the same ``weight.bin``; that halves ``model.mlmodel``.

Core ML cannot predict off macOS. On Linux the stand-in loads the package's stored weights,
de-palettized, into the PyTorch model and runs it with float activations (a weights-only
check: Core ML's fp16 activations on device are not exercised); on macOS ``load`` runs the
real model (``coreml_format.load``).
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export import coreml_format
from export.common import LOOKS_INPUT_NAME, REGIONS_INPUT_NAME, ExportInputs, ExportMeta
from export.runtime import Runner
from models.atomic import tree_bytes
from models.gates import MAX_PSNR_DROP_DB
from models.metrics import mean_psnr_db
from models.tinybeauty import TinyBeauty

log = logging.getLogger(__name__)

# Half of the export's gate: the stand-in does not see fp16 activations, so keep a margin.
MAX_DROP_DB = MAX_PSNR_DROP_DB / 2
BIT_CHOICES = (4, 6)  # tried in this order; palettized look-up tables hold 2^bits entries


def _palettized(mlmodel, bits_by_weight: dict[str, int]):
    from coremltools.optimize.coreml import (
        OpPalettizerConfig,
        OptimizationConfig,
        palettize_weights,
    )

    configs = {name: OpPalettizerConfig(mode="kmeans", nbits=bits, granularity="per_tensor", weight_threshold=0)
               for name, bits in bits_by_weight.items()}
    return palettize_weights(mlmodel, OptimizationConfig(op_name_configs=configs))


# Names and repeated constants are format overhead, not weights: coremltools names each variable
# after its PyTorch path ("model_residual_bottleneck_0_0_weight_to_fp16_palettized_lut_0") and
# stores the name in the op's output, again in its "name" attribute and once per use, and gives
# every convolution its own pad/stride/dilation/group constants. That was half of model.mlmodel
# (docs/export.md). The package keeps its input and output names; weight.bin is not touched.
NAME_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
JSON_SEPARATORS = (",", ":")


def _short_name(index: int) -> str:
    """0 -> 'v0', 35 -> 'vz', 36 -> 'v10': a valid MIL identifier ([A-Za-z_][A-Za-z0-9_]*)."""
    digits = ""
    while True:
        index, digit = divmod(index, len(NAME_DIGITS))
        digits = NAME_DIGITS[digit] + digits
        if index == 0:
            return "v" + digits


def _constant_key(op) -> bytes | None:
    """What makes two immediate constants interchangeable: their type and value."""
    if op.type != "const" or op.attributes["val"].WhichOneof("value") != "immediateValue":
        return None
    return op.outputs[0].type.SerializeToString() + op.attributes["val"].SerializeToString()


def _program_blocks(spec):
    """Every (function inputs, block) of a straight-line ML Program; control flow is refused."""
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            if any(op.blocks for op in block.operations):
                raise ValueError("compacting handles straight-line programs; this one has nested blocks")
            yield function.inputs, block


def _compact_block(inputs, block) -> None:
    """Drop duplicate immediate constants, then give every variable (but the I/O) a short name."""
    kept_names = {value.name for value in inputs} | set(block.outputs)
    survivors, aliases, operations = {}, {}, []
    for op in block.operations:
        key = _constant_key(op)
        if key is not None and op.outputs[0].name not in kept_names:
            if key in survivors:
                aliases[op.outputs[0].name] = survivors[key]
                continue
            survivors[key] = op.outputs[0].name
        operations.append(op)
    outputs = [out for op in operations for out in op.outputs if out.name not in kept_names]
    fresh = (name for name in map(_short_name, itertools.count()) if name not in kept_names)
    renamed = {out.name: next(fresh) for out in outputs}
    renamed |= {dropped: renamed[survivor] for dropped, survivor in aliases.items()}
    for op in operations:
        for argument in op.inputs.values():
            for binding in argument.arguments:
                if binding.WhichOneof("binding") == "name":
                    binding.name = renamed.get(binding.name, binding.name)
        for out in op.outputs:
            out.name = renamed.get(out.name, out.name)
        if "name" in op.attributes:
            op.attributes["name"].immediateValue.tensor.strings.values[:] = [op.outputs[0].name]
    kept = [copy.deepcopy(op) for op in operations]  # the repeated field is cleared next
    del block.operations[:]
    block.operations.extend(kept)


def program_signature(spec) -> list:
    """What an ML Program computes, without its names: per op its type, attributes and output types,
    and where each input comes from (an earlier op by position, a function input, or a constant's
    value). Two programs with equal signatures compute the same thing from the same weight.bin."""
    signature = []
    for inputs, block in _program_blocks(spec):
        source = {value.name: ("input", value.name) for value in inputs}
        steps = []
        for op in block.operations:
            key = _constant_key(op)
            if key is not None:
                source[op.outputs[0].name] = ("const", key)
                continue
            for index, out in enumerate(op.outputs):
                source[out.name] = ("op", len(steps), index)
            steps.append((op.type,
                          sorted((name, value.SerializeToString()) for name, value in op.attributes.items()
                                 if name != "name"),
                          sorted((name, [source[b.name] if b.WhichOneof("binding") == "name" else
                                         ("value", b.value.SerializeToString()) for b in argument.arguments])
                                 for name, argument in op.inputs.items()),
                          [out.type.SerializeToString() for out in op.outputs]))
        signature.append((steps, [(name, source[name]) for name in block.outputs]))
    return signature


def compact(mlmodel):
    """The same ML Program with short names and one constant per value; checked to compute the same."""
    ct = coreml_format._quiet_coremltools()
    spec = copy.deepcopy(mlmodel.get_spec())
    for inputs, block in _program_blocks(spec):
        _compact_block(inputs, block)
    if program_signature(spec) != program_signature(mlmodel.get_spec()):
        raise RuntimeError("compacting the ML Program changed what it computes")
    return ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)


def _program(path: Path):
    """The ML Program inside a saved package, as coremltools' MIL (no Core ML runtime needed)."""
    ct = coreml_format._quiet_coremltools()
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
    spec = mlmodel.get_spec()
    return spec, milproto_load(spec, spec.specificationVersion, mlmodel.weights_dir)


def _value(var) -> np.ndarray:
    """A weight's stored value: a constant, or a compressed constant decompressed."""
    op = var.op
    if op.op_type == "const":
        return np.asarray(var.val, np.float32)
    if op.op_type.startswith("constexpr"):
        return np.asarray(op.materialized_val_inference(), np.float32)
    if op.op_type == "cast":
        return _value(op.x)
    raise ValueError(f"unexpected producer {op.op_type} of a convolution weight")


def _weight_name(conv_op) -> str:
    """The name palettization configs use for a convolution's weight (its constant, below any cast)."""
    op = conv_op.weight.op
    return op.x.op.name if op.op_type == "cast" else op.name


def stored_model(path: Path, model: TinyBeauty) -> tuple[TinyBeauty, dict]:
    """The PyTorch model with every conv weight and bias replaced by what the package stores."""
    spec, program = _program(path)
    convs_ml = [op for op in program.functions["main"].operations if op.op_type == "conv"]
    rebuilt = copy.deepcopy(model).eval()
    convs_pt = [m for m in rebuilt.modules() if isinstance(m, nn.Conv2d)]
    if len(convs_ml) != len(convs_pt):
        raise ValueError(f"{path} has {len(convs_ml)} convolutions, the PyTorch model {len(convs_pt)}")
    with torch.no_grad():
        for conv_ml, conv_pt in zip(convs_ml, convs_pt, strict=True):
            weight = _value(conv_ml.weight)
            if weight.shape != tuple(conv_pt.weight.shape):
                raise ValueError(f"{path}: a convolution stores weights {weight.shape}, PyTorch expects "
                                 f"{tuple(conv_pt.weight.shape)}")
            conv_pt.weight.copy_(torch.from_numpy(weight))
            conv_pt.bias.copy_(torch.from_numpy(_value(conv_ml.bias).reshape(-1)))
    compressed = sum(op.weight.op.op_type.startswith("constexpr") or
                     (op.weight.op.op_type == "cast" and op.weight.op.x.op.op_type.startswith("constexpr"))
                     for op in convs_ml)
    return rebuilt, {"convolutions": len(convs_ml), "palettized": int(compressed), "spec": spec}


def _psnr_by_look(model: TinyBeauty, inputs: ExportInputs) -> list[float]:
    """Ground-truth PSNR of ``model`` on each look's check faces (each through its one-hot look weights, with its
    own region maps where the network reads them); one figure, over every check face, for a one-look network."""
    with torch.no_grad():
        outputs = model(inputs.val_source, inputs.val_looks, regions=inputs.val_regions)
    if inputs.val_looks is None:
        return [mean_psnr_db(outputs, inputs.val_target)]
    rows = [inputs.val_looks[:, look] == 1 for look in range(inputs.val_looks.shape[1])]
    return [mean_psnr_db(outputs[picked], inputs.val_target[picked]) for picked in rows]


def _drop_db(path: Path, model: TinyBeauty, inputs: ExportInputs, reference_db: list[float]) -> float:
    """The PSNR the package's stored weights lose against PyTorch: the worst look's, so every look keeps
    the margin the export's per-look gate needs."""
    rebuilt, _ = stored_model(path, model)
    return max(reference - stored for reference, stored in zip(reference_db, _psnr_by_look(rebuilt, inputs),
                                                               strict=True))


def export(model: TinyBeauty, inputs: ExportInputs, path: Path, meta: ExportMeta) -> Path:
    ct = coreml_format._quiet_coremltools()
    float_model = coreml_format.convert(model, inputs, "mlprogram", ct.target.iOS16)
    _, program = _program_of(float_model, path)
    convs = [op for op in program.functions["main"].operations if op.op_type == "conv"]
    sizes = {_weight_name(op): int(np.prod(op.weight.shape)) for op in convs}
    reference_db = _psnr_by_look(model, inputs)
    trial, best = (path.with_name(f"{path.stem}.{name}.mlpackage") for name in ("trial", "best"))

    def build(bits: dict[str, int]) -> tuple[int, float]:
        shutil.rmtree(trial, ignore_errors=True)
        package = compact(_palettized(float_model, bits))
        coreml_format.describe(package, meta)  # measure the package as shipped, provenance included
        package.save(str(trial))
        return tree_bytes(trial), _drop_db(trial, model, inputs, reference_db)

    def keep_trial() -> None:  # the accepted package is the one shipped: measured, not rebuilt
        shutil.rmtree(best, ignore_errors=True)
        trial.rename(best)

    bits = dict.fromkeys(sizes, 8)
    size_bytes, drop = build(bits)
    keep_trial()
    path_taken = [{"bits": "all 8", "bytes": size_bytes, "drop_db": round(drop, 3)}]
    for name in sorted(sizes, key=sizes.get, reverse=True):  # the largest layers save the most bytes
        for choice in BIT_CHOICES:
            candidate = bits | {name: choice}
            candidate_bytes, candidate_drop = build(candidate)
            if candidate_drop <= MAX_DROP_DB:
                bits, size_bytes, drop = candidate, candidate_bytes, candidate_drop
                keep_trial()
                path_taken.append({"bits": f"{_short(name)} {choice}", "bytes": size_bytes, "drop_db": round(drop, 3)})
                break
    log.info("mlpackage weight bits: %s (%d bytes, stand-in drop %.2f dB)",
             ", ".join(f"{_short(n)} {b}" for n, b in bits.items()), size_bytes, drop)
    final = ct.models.MLModel(str(best), skip_model_load=True)
    # JSON without the spaces after separators: the same values, ~60 bytes less in the package
    final.user_defined_metadata["tinybeauty.weight_bits"] = json.dumps({_short(n): b for n, b in bits.items()},
                                                                       separators=JSON_SEPARATORS)
    final.user_defined_metadata["tinybeauty.size_quality"] = json.dumps(path_taken, separators=JSON_SEPARATORS)
    final.save(str(path))
    for scratch in (trial, best):
        shutil.rmtree(scratch, ignore_errors=True)
    return path


def _program_of(mlmodel, path: Path):
    """Save ``mlmodel`` beside ``path`` to read its program back (names as palettization sees them)."""
    scratch = path.with_name(path.stem + ".float.mlpackage")
    shutil.rmtree(scratch, ignore_errors=True)
    mlmodel.save(str(scratch))
    try:
        return _program(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _short(weight_name: str) -> str:
    """'model_residual_bottleneck_0_0_weight_to_fp16' -> 'bottleneck_0_0'."""
    return weight_name.split("residual_", 1)[-1].removesuffix("_to_fp16").removesuffix("_weight")


def stand_in(path: Path, model: TinyBeauty, faces: torch.Tensor, look_weights: torch.Tensor | None = None,
             regions: torch.Tensor | None = None) -> tuple[np.ndarray, list[str]]:
    rebuilt, summary = stored_model(path, model)
    looks, maps, size = len(model.config.looks), len(model.config.region_inputs), int(faces.shape[-1])
    problems = coreml_format.image_io_problems(summary["spec"], size, looks, maps)
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    with torch.no_grad():
        outputs = rebuilt(faces, look_weights, regions=regions).numpy()
    bits = read_metadata(path).get("tinybeauty.weight_bits", "?")
    look_input = f" + {LOOKS_INPUT_NAME} (MultiArray float32 [1,{looks}])" if looks > 1 else ""
    look_input += f" + {REGIONS_INPUT_NAME} (MultiArray float32 [1,{maps},{size},{size}])" if maps else ""
    checks = [f"spec: ML Program (iOS16), image in (RGB, scaled by 1/255){look_input} -> image out",
              f"weights: {summary['palettized']}/{summary['convolutions']} convolutions palettized (bits {bits}), "
              "de-palettized from the package into PyTorch and run (activations in fp32, as a weights-only check)"]
    return outputs, checks


def read_metadata(path: Path) -> dict:
    return coreml_format.read_metadata(path)


def load(path: Path, threads: int | None = None) -> Runner:
    return coreml_format.load(path, threads)
