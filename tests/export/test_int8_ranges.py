"""The int8 files round each activation over the range quantization-aware training gave it
(models/int8.py, export/common.py: pin_activation_ranges), in every int8 format."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from conftest import train_args
from onnx import numpy_helper

from export.common import pin_activation_ranges
from models.int8 import group_ranges, trained_activation_ranges
from models.rescale import output_conv
from models.tinybeauty import VARIANTS, build_model, quantized_outputs
from train.__main__ import main

OUTPUTS = quantized_outputs(VARIANTS["nano"])
QUANTIZED_OUTPUTS = [output.name for output in OUTPUTS]


def made_up_ranges() -> dict[str, tuple[float, float]]:
    """A distinct range per output (the head's residual is signed), shared across each concatenation."""
    rows = [(0.0, 1.0 + i) for i in range(len(QUANTIZED_OUTPUTS) - 1)] + [(-0.5, 0.25)]
    return group_ranges(rows, OUTPUTS)


def test_ranges_are_shared_across_each_concatenation_and_hold_zero():
    ranges = group_ranges([(0.1, 1.0 + i) for i in range(len(QUANTIZED_OUTPUTS))], OUTPUTS)
    assert ranges["enc1"] == ranges["dec2"] == (0.0, 7.0)  # enc1 (2.0) joins dec2 (7.0)
    assert ranges["enc3"] == ranges["bottleneck"] and ranges["enc2"] == ranges["dec3"]
    assert ranges["stem"] == (0.0, 1.0)  # widened to hold zero
    assert trained_activation_ranges({"phase": "float", "qat_state": {"ranges": torch.ones(9, 2)}}) is None
    with pytest.raises(ValueError):
        group_ranges([(0.0, 1.0)] * 3, OUTPUTS)


def _observer_ranges(prepared: torch.fx.GraphModule) -> dict[str, set[tuple[float, float]]]:
    """Each pinned activation observer's (scale, zero point) turned back into the range it rounds over."""
    from export.common import _observed_output

    found: dict[str, set] = {}
    for node in prepared.graph.nodes:
        if node.op == "call_module" and "activation_post_process" in str(node.target):
            observer = prepared.get_submodule(node.target)
            name = _observed_output(node.args[0], OUTPUTS)
            if name and observer.qscheme == torch.per_tensor_affine:
                scale, zero = (float(v) for v in observer.calculate_qparams())
                low = (observer.quant_min - zero) * scale
                high = low + scale * (observer.quant_max - observer.quant_min)
                found.setdefault(name, set()).add((round(low, 5), round(high, 5)))
    return found


@pytest.mark.parametrize("graph", ["fx", "pt2e"])
def test_every_activation_observer_rounds_over_its_trained_range(graph):
    """FX (the .ptl) and PT2E (the .pte and .tflite) graphs: after calibration on random faces, every
    conv output, pool, upsample and concatenation rounds over its trained range, not the calibrated one."""
    torch.manual_seed(0)
    residual = build_model("nano").eval().residual
    example = torch.rand(1, 3, 32, 32)
    if graph == "fx":
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_fx

        prepared = prepare_fx(residual, get_default_qconfig_mapping("qnnpack"), (example,))
    else:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

        exported = torch.export.export(residual, (example,), strict=False).module()
        prepared = prepare_pt2e(exported, XNNPACKQuantizer().set_global(get_symmetric_quantization_config(True)))
    with torch.no_grad():
        for face in torch.rand(2, 3, 32, 32):
            prepared(face[None])
    ranges = made_up_ranges()
    assert pin_activation_ranges(prepared, ranges, OUTPUTS) >= len(QUANTIZED_OUTPUTS)
    found = _observer_ranges(prepared)
    assert set(found) == set(QUANTIZED_OUTPUTS)
    for name, seen in found.items():
        assert seen == {tuple(round(v, 5) for v in ranges[name])}, name


def test_a_quantization_aware_checkpoint_ships_its_trained_ranges(synthetic_data, tmp_path):
    """End to end: the int8 ONNX file quantizes each convolution's output with the trained range's
    scale and zero point, and the manifest records the ranges; a float checkpoint calibrates."""
    from export.__main__ import main as export_main

    run = tmp_path / "run"
    assert main(train_args(synthetic_data, run, "--epochs", "2", "--qat-epochs", "1", "--threads", "1")) == 0
    checkpoint = torch.load(run / "tinybeauty_best_psnr.pt", weights_only=True)
    ranges = trained_activation_ranges(checkpoint)
    assert ranges is not None
    out = tmp_path / "artifacts"
    assert export_main(["--checkpoint", str(run / "tinybeauty_best_psnr.pt"), "--out", str(out), "--formats", "onnx",
                        "--calibration-images", "4", "--val-images", "4"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert {name: tuple(r) for name, r in manifest["activation_ranges"].items()} == ranges
    graph = onnx.load(str(out / "tinybeauty.onnx")).graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    readers = {name: node for node in graph.node for name in node.input}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert len(convs) == len(QUANTIZED_OUTPUTS)
    for conv, name in zip(convs, QUANTIZED_OUTPUTS, strict=True):
        quantize = readers[conv.output[0]]
        assert quantize.op_type == "QuantizeLinear", name
        scale, zero = float(constants[quantize.input[1]]), int(constants[quantize.input[2]])
        low, high = ranges[name]
        assert scale == pytest.approx((high - low) / 255, rel=1e-5), name
        assert zero == round(-low / scale), name


def test_the_onnx_convolutions_are_matched_to_the_network_by_shape():
    """The ONNX overrides refuse a graph whose convolutions are not the network's, in order."""
    from export.onnx_format import trained_range_overrides

    model = build_model("nano").eval()
    weights = [output_conv(model.residual, output).weight for output in OUTPUTS]
    nodes = [onnx.helper.make_node("Conv", ["x", f"w{i}"], [f"y{i}"]) for i in range(len(weights))]
    inits = [numpy_helper.from_array(w.detach().numpy(), f"w{i}") for i, w in enumerate(weights)]
    graph = onnx.helper.make_graph(nodes, "g", [], [], initializer=inits)
    overrides = trained_range_overrides(graph, model, made_up_ranges())
    assert float(overrides["y1"][0]["rmax"]) == made_up_ranges()["enc1"][1]
    graph.node.remove(graph.node[0])
    with pytest.raises(RuntimeError, match="do not match"):
        trained_range_overrides(graph, model, made_up_ranges())
    assert trained_range_overrides(graph, model, None) == {}
