"""TorchScript Lite (``.ptl``): int8 for the mobile (QNNPACK) engine, for Android / iOS PyTorch Mobile.

The residual network is quantized with the FX flow of ``torch.ao.quantization`` (a PT2E-quantized
model traces but does not load in the lite interpreter with torch 2.13). Only the residual U-Net
is int8 (skip concatenations included, see models/rescale.py); the ``face + residual`` add and
the clamp stay in float, so the output keeps full precision where the image is untouched.
``optimize_for_mobile`` needs an XNNPACK build of torch; on builds without it (the CPU wheel used
here) ``torch.jit.freeze`` does the folding instead, and the export log says so in one line.

A network of several looks: ``forward(face, look_weights)`` (float32 [1, L]; one-hot picks a look), its look
gates constants (``constant_gates`` in export/common.py). A network that reads region maps
takes ``regions`` (float32 NCHW [1, K, S, S]) as its last input: concatenated behind the face in float, the
concatenation is the quantized residual network's input (one scale: face and maps are both in [0, 1]).

torch 2.13 marks the lite interpreter deprecated in favour of ExecuTorch, whose ``.pte`` file
(export/pte_format.py) is exported beside this one; ``.ptl`` stays for apps on PyTorch Mobile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.common import (
    ExportInputs,
    ExportMeta,
    checked_regions,
    constant_gates,
    float_residual_add,
    look_gate_nodes,
    pin_activation_ranges,
    pin_look_gates,
    pin_stem_input,
    region_names,
)
from export.runtime import Runner
from models.atomic import atomic_path
from models.tinybeauty import TinyBeauty, quantized_outputs

log = logging.getLogger(__name__)

METADATA_FILE = "tinybeauty.json"
ENGINE = "qnnpack"  # what ARM phones run; x86's fbgemm would pack weights differently


@contextlib.contextmanager
def quantized_engine(name: str = ENGINE):
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def quantize_residual(model: TinyBeauty, inputs: ExportInputs) -> nn.Module:
    """FX static quantization of the residual U-Net: activation ranges as a quantization-aware checkpoint
    trained them, else calibrated on training faces (a histogram observer)."""
    from torch.ao.quantization import QConfig, QConfigMapping
    from torch.ao.quantization.backend_config import get_qnnpack_backend_config
    from torch.ao.quantization.observer import (
        HistogramObserver,
        default_per_channel_weight_observer,
    )
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    qconfig = QConfig(activation=HistogramObserver.with_args(reduce_range=False),
                      weight=default_per_channel_weight_observer)
    backend = get_qnnpack_backend_config()
    with quantized_engine():
        # Concatenations are int8 with one observer shared by their inputs and output; the
        # export's skip rescaling (models/rescale.py) makes their inputs' ranges fit that scale.
        # (Left in float, FX still fed the first cat quantized tensors of two scales, and
        # quantized cat then reads both with the first one's scale.)
        mapping = QConfigMapping().set_global(qconfig)
        prepared = prepare_fx(constant_gates(model.residual).eval(), mapping, inputs.residual_example_args,
                              backend_config=backend)
        with torch.no_grad():
            for args in inputs.residual_calibration_args():
                prepared(*args)
        if inputs.activation_ranges:
            pin_activation_ranges(prepared, inputs.activation_ranges, quantized_outputs(model.config))
        if inputs.example_regions is not None:  # the residual network's first input: the face and its maps
            pin_stem_input(prepared, next(node for node in prepared.graph.nodes if node.op == "placeholder"))
        pin_look_gates(prepared)
        quantized = convert_fx(prepared, backend_config=backend)
        dense_gates(quantized)
        return quantized


def dense_gates(quantized: torch.fx.GraphModule) -> int:
    """Each look gate of a converted several-look graph (an int8 [N, C, 1, 1] vector) expanded to its gated
    output's full [N, C, H, W] in channels-last before the Mul: QNNPACK's quantized Mul broadcasts a
    [N, C, 1, 1] operand ~10x slower than it multiplies two tensors of one shape, and the expanded copy costs
    less than the difference (1 thread, 256 px: 1.11 against 0.22 ms for the three gates, docs/export.md).
    Returns how many gates were expanded (none: a one-look graph)."""
    graph, expanded = quantized.graph, 0
    gates = look_gate_nodes(graph)
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target != torch.ops.quantized.mul:
            continue
        features, gate = node.args[0], node.args[1]
        if gate not in gates:
            continue
        with graph.inserting_before(node):
            wide = graph.call_method("expand_as", (gate, features))
            dense = graph.call_method("contiguous", (wide,), {"memory_format": torch.channels_last})
        node.replace_input_with(gate, dense)
        expanded += 1
    quantized.recompile()
    return expanded


def export(model: TinyBeauty, inputs: ExportInputs, path: Path, meta: ExportMeta) -> Path:
    with quantized_engine():
        wrapped = float_residual_add(quantize_residual(model, inputs), inputs).eval()
        traced = torch.jit.trace(wrapped, inputs.example_args)
        scripted = optimized_for_mobile(traced)
        extra = {METADATA_FILE: json.dumps(meta.as_strings(), sort_keys=True)}
        scripted._save_for_lite_interpreter(str(path), _extra_files=extra)
    strip_unread_records(path)
    return path


def optimized_for_mobile(traced: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """``optimize_for_mobile`` where torch has XNNPACK (it refuses to run without); else
    ``torch.jit.freeze``, which inlines the weights as constants and folds what it can."""
    import torch.backends.xnnpack

    if not torch.backends.xnnpack.enabled:
        log.info("optimize_for_mobile skipped: this torch build has no XNNPACK (the CPU wheel); "
                 "folded with torch.jit.freeze instead")
        return torch.jit.freeze(traced.eval())
    from torch.utils.mobile_optimizer import optimize_for_mobile

    return optimize_for_mobile(traced)


def unread_record(name: str) -> bool:
    """A record of a ``.ptl`` the lite interpreter never reads: the TorchScript source-range tables
    (``*.debug_pkl``, ~6 KB) and the TorchScript source itself (``code/``, 2-3 KB: what ``torch.jit.load``
    compiles; the lite interpreter runs ``bytecode.pkl``). Without them the file is for the lite
    interpreter only, which is what a ``.ptl`` is for."""
    return name.endswith(".debug_pkl") or "/code/" in name


def strip_unread_records(path: Path) -> int:
    """Drop :func:`unread_record` records from the ``.ptl`` at ``path``. Records stay uncompressed, as
    torch's reader expects. Returns bytes saved."""
    before = path.stat().st_size
    with (atomic_path(path) as tmp, zipfile.ZipFile(path) as source,
          zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as target):
        for info in source.infolist():
            if not unread_record(info.filename):
                target.writestr(info.filename, source.read(info.filename))
    return before - path.stat().st_size


def load(path: Path, threads: int | None = None) -> Runner:
    from torch.jit.mobile import _load_for_lite_interpreter

    with quantized_engine():
        module = _load_for_lite_interpreter(str(path))
    if threads:  # process-wide in torch: set once here, not inside the timed call
        torch.set_num_threads(threads)
    names = region_names(read_metadata(path))

    def run(faces: np.ndarray, look_weights: np.ndarray | None = None, regions: np.ndarray | None = None
            ) -> np.ndarray:
        maps = checked_regions(path, names, faces, regions)
        args = [array for array in (faces, look_weights, maps) if array is not None]
        with quantized_engine(), torch.no_grad():
            return module(*(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in args)).numpy()

    return run


def read_metadata(path: Path) -> dict:
    """The provenance stored as the extra file ``tinybeauty.json``."""
    with zipfile.ZipFile(path) as archive:
        name = next((n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_FILE}")), None)
        return json.loads(archive.read(name)) if name else {}
