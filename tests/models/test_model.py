import pathlib
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import IMAGE_SIZE, maps_for, train_args

from export.formats import BY_NAME
from models.checkpoint import load_checkpoint, read_checkpoint
from models.tinybeauty import (
    VARIANTS,
    ReparamConv,
    TinyBeautyConfig,
    build_model,
    count_macs,
    count_parameters,
    merge,
)


@pytest.mark.parametrize("height,width", [(64, 64), (256, 256), (72, 120)])
def test_output_shape_and_range(height, width):
    model = build_model("tiny").eval()
    face = torch.rand(2, 3, height, width)
    with torch.no_grad():
        made_up = model(face)
        unclamped = model(face, clamp=False)
    assert made_up.shape == face.shape
    assert made_up.min() >= 0 and made_up.max() <= 1
    assert torch.equal(made_up, unclamped.clamp(0, 1))


def test_output_is_input_plus_residual():
    model = build_model("tiny").eval()
    face = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(face, clamp=False), face + model.residual(face))


def test_parameter_budget_leaves_room_for_format_overhead():
    # int8 artifacts spend ~1 byte per weight; under 80K parameters leaves >20 KB for overhead.
    model = build_model("tiny")
    assert 40_000 < count_parameters(model) < 80_000
    assert count_macs(model, 256, 256) < 0.55e9  # cheaper than the 8/16/32/64 plain U-Net


def test_config_round_trip_and_errors():
    config = VARIANTS["tiny"]
    assert TinyBeautyConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown model_config keys"):
        TinyBeautyConfig.from_dict({"widths": [8, 8, 8], "depth": 3})
    with pytest.raises(ValueError, match="unknown variant"):
        build_model("huge")
    with pytest.raises(ValueError, match="activation"):
        TinyBeautyConfig(activation="gelu")


def randomise_branches(model: torch.nn.Module) -> None:
    """Scales and biases away from their initial values, so every branch counts in the merge."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, ReparamConv):
            for tensor in (module.scale3, module.scale1, module.scale_identity, module.conv3.bias):
                if tensor is not None:
                    tensor.data = torch.randn(tensor.shape, generator=generator)


@pytest.mark.parametrize("in_ch,out_ch,stride,dilation,identity", [
    (3, 8, 2, 1, False),   # the stride-2 stem
    (8, 8, 1, 1, True),    # enc1: identity branch
    (24, 24, 1, 2, True),  # the dilated bottleneck, input width == output width
    (16, 24, 1, 2, False),  # a dilated conv that widens
    (16, 8, 1, 1, False),  # a decoder conv reading a concatenation
])
def test_reparam_branches_merge_into_one_exact_conv(in_ch, out_ch, stride, dilation, identity):
    branched = ReparamConv(in_ch, out_ch, stride, dilation)
    randomise_branches(branched)
    assert branched.identity == identity
    kernel, bias = branched.merged()
    plain = torch.nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation)
    plain.weight.data, plain.bias.data = kernel.detach(), bias.detach()
    features = torch.randn(2, in_ch, 20, 20)
    with torch.no_grad():
        summed = branched.forward_branches(features)
        assert summed.shape == plain(features).shape
        assert torch.allclose(plain(features), summed, atol=1e-5)
        assert torch.allclose(branched(features), summed, atol=1e-5)  # the online (training) form too


def test_merged_model_is_the_plain_network_with_the_branched_output():
    branched = build_model("nano", reparam=True).eval()
    randomise_branches(branched)
    plain = build_model("nano")
    merged = merge(branched)
    assert merged.config == plain.config and not merged.config.reparam
    assert merged.state_dict().keys() == plain.state_dict().keys()
    assert count_parameters(merged) == count_parameters(plain) < count_parameters(branched)
    assert [type(m) for m in merged.modules()] == [type(m) for m in plain.modules()]
    for module in branched.modules():  # the reference: every branch computed on its own and summed
        if isinstance(module, ReparamConv):
            module.forward = module.forward_branches
    face = torch.rand(2, 3, 64, 48)
    with torch.no_grad():
        assert torch.allclose(merged(face, clamp=False), branched(face, clamp=False), atol=1e-5)


def test_reparam_is_stored_in_the_config_and_old_configs_still_load():
    stored = VARIANTS["nano"].to_dict()
    assert stored["reparam"] is False
    del stored["reparam"]  # a checkpoint written before the field existed
    assert TinyBeautyConfig.from_dict(stored) == VARIANTS["nano"]
    branched = build_model("nano", reparam=True).config
    assert TinyBeautyConfig.from_dict(branched.to_dict()) == branched and branched.reparam


def onnx_ops(artifacts: pathlib.Path, name: str) -> tuple[list[str], int]:
    import onnx

    graph = onnx.load(artifacts / BY_NAME[name].filename).graph
    return sorted(node.op_type for node in graph.node), sum(int(np.prod(init.dims)) for init in graph.initializer)


def test_branched_checkpoint_exports_the_plain_graph(synthetic_data, checkpoint, tmp_path):
    """`python -m train --reparam` saves the branches (and resumes them); loading for export merges
    them, so the ONNX files have exactly the plain checkpoint's nodes and weight count."""
    from export.__main__ import main as export_main
    from train.__main__ import main as train_main

    run = tmp_path / "run"
    assert train_main(train_args(synthetic_data, run, "--epochs", "1", "--reparam", "--augment", "both")) == 0
    assert train_main(["--data", str(synthetic_data), "--out", str(run), "--resume", "--epochs", "2"]) == 0
    saved = read_checkpoint(run / "tinybeauty_best_psnr.pt")
    assert saved["model_config"]["reparam"] and any(".conv1." in key for key in saved["model"])
    assert saved["train_config"]["augment"] == "both" and saved["epoch"] in (1, 2)
    branched = build_model(saved["model_config"]).eval()
    branched.load_state_dict(saved["model"])
    model, _ = load_checkpoint(run / "tinybeauty_best_psnr.pt")
    plain = build_model(replace(VARIANTS["nano"], region_inputs=model.config.region_inputs))  # the default: maps too
    assert not model.config.reparam and count_parameters(model) == count_parameters(plain)
    face = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    regions = maps_for(model, face)
    with torch.no_grad():
        assert torch.allclose(model(face, regions=regions), branched(face, regions=regions), atol=1e-5)
    exported = {}
    for label, path in (("branched", run / "tinybeauty_best_psnr.pt"), ("plain", checkpoint)):
        out = tmp_path / f"artifacts_{label}"
        assert export_main(["--checkpoint", str(path), "--out", str(out), "--formats", "onnx-fp32", "onnx",
                            "--calibration-images", "4", "--val-images", "2"]) == 0
        exported[label] = {name: onnx_ops(out, name) for name in ("onnx-fp32", "onnx")}
    assert exported["branched"] == exported["plain"]
