"""ExecuTorch (``.pte``): int8 for the XNNPACK delegate, the successor of the ``.ptl`` lite interpreter.

Pipeline: the residual U-Net is exported with ``torch.export`` and quantized with PT2E static
quantization (``XNNPACKQuantizer``: per-channel symmetric int8 weights, int8 activations)
calibrated on training faces; the ``face + residual`` add and the clamp stay in float around
it; ``to_edge_transform_and_lower`` hands the graph to the XNNPACK partitioner and
``to_executorch`` writes the program. Run back with ExecuTorch's own Python runtime
(``executorch.runtime``), which is what an app links (XNNPACK kernels).

The XNNPACK quantizer gives a concatenation and its producers one shared observer: the skip
rescaling of ``models/rescale.py`` (applied by the export to every format with int8
activations: ``int8_activations`` in export/formats.py) is what keeps the skips' precision.
Provenance: a constant method ``tinybeauty_metadata`` returns the JSON of
:meth:`ExportMeta.as_strings` as a uint8 tensor (``read_metadata``).

Input ``face``: float32 NCHW [1, 3, S, S] in [0, 1]; output: the made-up face, same layout. A network of
several looks takes ``look_weights`` (float32 [1, L]) as the second input; its look gates are constants
(``constant_gates`` in export/common.py), each a small matmul and a broadcast Mul. A network that
reads region maps takes ``regions`` (float32 NCHW [1, K, S, S]) as its last input, concatenated behind the face
in float; the concatenation is the quantized residual network's input (one scale over face and maps).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from export.common import (
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

METADATA_METHOD = "tinybeauty_metadata"


def quantize_residual(model: TinyBeauty, inputs: ExportInputs) -> torch.fx.GraphModule:
    """PT2E static int8 of the residual network for XNNPACK: activation ranges as trained
    (quantization-aware checkpoints), else calibrated on training faces."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    network = constant_gates(model.residual).eval()
    graph = torch.export.export(network, inputs.residual_example_args, strict=False).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for args in inputs.residual_calibration_args():
            prepared(*args)
    if inputs.activation_ranges:
        pin_activation_ranges(prepared, inputs.activation_ranges, quantized_outputs(model.config))
    if inputs.example_regions is not None:  # the residual network's first input: the face and its maps
        pin_stem_input(prepared, next(node for node in prepared.graph.nodes if node.op == "placeholder"))
    return convert_pt2e(prepared)


def export(model: TinyBeauty, inputs: ExportInputs, path: Path, meta: ExportMeta) -> Path:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    wrapped = float_residual_add(quantize_residual(model, inputs), inputs)  # no .eval(): exported graphs refuse it
    program = torch.export.export(wrapped, inputs.example_args, strict=False)
    metadata = torch.tensor(list(json.dumps(meta.as_strings(), sort_keys=True).encode()), dtype=torch.uint8)
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                       constant_methods={METADATA_METHOD: metadata})
    path.write_bytes(edge.to_executorch().buffer)
    return path


def _runtime():
    try:
        from executorch.runtime import Runtime
    except ImportError as error:
        raise RuntimeUnavailable(f"ExecuTorch is not installed ({error}); pip install -e '.[mobile]' "
                                 "(make setup does)") from error
    return Runtime.get()


def load(path: Path, threads: int | None = None) -> Runner:
    runtime = _runtime()
    if threads:  # XNNPACK's thread pool is process-wide: set it when the runner is built
        from executorch.extension.pybindings import portable_lib

        portable_lib._unsafe_reset_threadpool(threads)
    program = runtime.load_program(Path(path))
    method = program.load_method("forward")
    names = region_names(metadata_of(program))

    def run(faces: np.ndarray, look_weights: np.ndarray | None = None, regions: np.ndarray | None = None
            ) -> np.ndarray:
        maps = checked_regions(path, names, faces, regions)
        args = [array for array in (faces, look_weights, maps) if array is not None]
        made_up = method.execute([torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in args])[0]
        return made_up.numpy().copy()  # the runtime reuses its output buffer on the next call

    return run


def read_metadata(path: Path) -> dict:
    """The provenance stored in the program's constant method."""
    return metadata_of(_runtime().load_program(Path(path)))


def metadata_of(program) -> dict:
    """The provenance of a loaded program (its constant method)."""
    return json.loads(bytes(program.load_method(METADATA_METHOD).execute([])[0].tolist()).decode())
