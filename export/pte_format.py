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

XNNPACK runs the whole network as one delegate partition (an op it does not take would cut the partition in
two, and each partition boundary costs bytes and a layout round trip): the network is exported as
:func:`xnnpack_network` writes it, the same function in ops XNNPACK takes (nearest upsampling as two
concatenations, :class:`ConcatUpsample`; the look gates as one convolution, :class:`ConvGates`).

Input ``face``: float32 NCHW [1, 3, S, S] in [0, 1]; output: the made-up face, same layout. A network of
several looks takes ``look_weights`` (float32 [1, L]) as the second input: its gates are one int8 1x1
convolution of the look weights, sliced per gated output and multiplied in (:class:`ConvGates`). A network that
reads region maps takes ``regions`` (float32 NCHW [1, K, S, S]) as its last input, concatenated behind the face
in float; the concatenation is the quantized residual network's input (one scale over face and maps).
"""

from __future__ import annotations

import copy
import json
import operator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.common import (
    ExportInputs,
    ExportMeta,
    checked_regions,
    fixed_observer,
    float_residual_add,
    look_gate_nodes,
    pin_activation_ranges,
    pin_look_gates,
    pin_stem_input,
    region_names,
)
from export.runtime import Runner, RuntimeUnavailable
from models.tinybeauty import LookGates, ResidualUNet, TinyBeauty, quantized_outputs

METADATA_METHOD = "tinybeauty_metadata"


class ConcatUpsample(nn.Module):
    """Nearest 2x upsampling, exactly ``nn.Upsample(scale_factor=2, mode="nearest")``, in ops XNNPACK takes
    (it has no nearest resize): each value set beside itself (a concatenation on a new last axis), then each
    row below itself. A concatenation's inputs are two view nodes of the same tensor, not one node twice:
    XNNPACK's partitioner counts distinct inputs and refuses a concatenation of fewer than two. In int8 the
    concatenation shares its inputs' scale, so the copy is exact."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        n, c, h, w = features.shape
        wide = torch.cat([features.reshape(n, c, h, w, 1), features.reshape(n, c, h, w, 1)], dim=4)
        rows = wide.reshape(n, c, h, 1, 2 * w)
        return torch.cat([rows, wide.reshape(n, c, h, 1, 2 * w)], dim=3).reshape(n, c, 2 * h, 2 * w)


class ConvGates(nn.Module):
    """A several-look network's :class:`LookGates` as the ``.pte`` holds them: one 1x1 convolution of the look
    weights (seen as [N, L, 1, 1]) whose kernel is the gates' table, [sum of C, L], then a channel slice per gated
    output. XNNPACK runs the convolution in int8 (a look costs one int8 kernel column) and keeps its output in
    channels-last, as the gated features are, so the gates reach their Muls without a layout change; the
    slices share one scale (``pin_look_gates``)."""

    def __init__(self, gates: LookGates):
        super().__init__()
        self.channels = dict(gates.channels)
        table = gates.gates().detach()  # [L, sum of C], the outputs' channels side by side
        self.looks = table.shape[0]
        self.mix = nn.Conv2d(self.looks, table.shape[1], 1, bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(table.T[:, :, None, None])

    def forward(self, look_weights: torch.Tensor) -> dict[str, torch.Tensor]:
        mixed = self.mix(look_weights.reshape(-1, self.looks, 1, 1))
        gates, start = {}, 0
        for name, count in self.channels.items():
            gates[name] = mixed[:, start:start + count]
            start += count
        return gates


def xnnpack_network(residual: ResidualUNet) -> ResidualUNet:
    """A copy of the residual network in ops XNNPACK takes, the same function: :class:`ConcatUpsample` for its
    upsampling, :class:`ConvGates` for its look gates (several looks)."""
    network = copy.deepcopy(residual)
    network.up = ConcatUpsample()
    if network.look_gates is not None:
        network.look_gates = ConvGates(network.look_gates)
    return network.eval()


def quantize_residual(model: TinyBeauty, inputs: ExportInputs) -> torch.fx.GraphModule:
    """PT2E static int8 of the residual network for XNNPACK: activation ranges as trained
    (quantization-aware checkpoints), else calibrated on training faces."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    graph = torch.export.export(xnnpack_network(model.residual), inputs.residual_example_args, strict=False).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for args in inputs.residual_calibration_args():
            prepared(*args)
    pin_look_gates(prepared)
    per_tensor_gate_kernel(prepared)
    if inputs.activation_ranges:
        pin_activation_ranges(prepared, inputs.activation_ranges, quantized_outputs(model.config))
    if inputs.example_regions is not None:  # the residual network's first input: the face and its maps
        pin_stem_input(prepared, next(node for node in prepared.graph.nodes if node.op == "placeholder"))
    return convert_pt2e(prepared)


def per_tensor_gate_kernel(prepared: torch.fx.GraphModule) -> int:
    """Round the look gates' kernel (:class:`ConvGates`) on one int8 scale instead of one per output channel: its
    values are gates, all in (0, 1), so one scale loses nothing, and XNNPACK stores a per-channel kernel's
    scales as a float each (224 bytes for the default network's 56 gated channels, the same for any number of
    looks). Returns how many kernels were so rounded (none: a one-look network)."""
    gates = look_gate_nodes(prepared.graph)
    rounded = 0
    for node in prepared.graph.nodes:
        if node.op != "call_function" or node.target != torch.ops.aten.conv2d.default or node.args[0] not in gates:
            continue
        observer_node = node.args[1]  # the kernel's observer, reading the kernel's constant
        kernel = operator.attrgetter(observer_node.args[0].target)(prepared).detach()
        observer = prepared.get_submodule(observer_node.target)
        span = (float(kernel.min()), float(kernel.max()))
        setattr(prepared, observer_node.target, fixed_observer(observer, span, torch.per_tensor_symmetric))
        rounded += 1
    return rounded


def export(model: TinyBeauty, inputs: ExportInputs, path: Path, meta: ExportMeta) -> Path:
    path.write_bytes(lowered(model, inputs, meta).to_executorch().buffer)
    return path


def lowered(model: TinyBeauty, inputs: ExportInputs, meta: ExportMeta):
    """The int8 program handed to XNNPACK (an ``EdgeProgramManager``): what :func:`export` writes."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    wrapped = float_residual_add(quantize_residual(model, inputs), inputs)  # no .eval(): exported graphs refuse it
    program = torch.export.export(wrapped, inputs.example_args, strict=False)
    metadata = torch.tensor(list(json.dumps(meta.as_strings(), sort_keys=True).encode()), dtype=torch.uint8)
    return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                       constant_methods={METADATA_METHOD: metadata})


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
