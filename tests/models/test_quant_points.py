"""The network declares its quantized outputs (models/tinybeauty.py: ``quantized_outputs``), and the
declaration is what the network computes; every config the dataclass accepts exports in every
format, or is refused when it is built."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from models.int8 import output_of
from models.rescale import equalize_skips
from models.tinybeauty import VARIANTS, TinyBeautyConfig, build_model, merge, quantized_outputs
from train.qat import QuantAware

NANO = VARIANTS["nano"]
CONFIGS = {
    "tiny": VARIANTS["tiny"],
    "nano": NANO,
    "two bottleneck convs": replace(NANO, bottleneck_convs=2),
    "three bottleneck convs, dilation 3": replace(NANO, bottleneck_convs=3, bottleneck_dilation=3),
    "narrow": TinyBeautyConfig(widths=(4, 6, 8), bottleneck_width=12),
}


def traced_reads(config: TinyBeautyConfig) -> dict[str, tuple[str, ...]]:
    """What each convolution of the plain network reads, found in its traced graph: the quantized
    outputs (by name) behind its input, through pools, upsampling and concatenations, in channel order."""
    outputs = quantized_outputs(config)
    residual = merge(build_model(config)).residual
    graph = torch.fx.symbolic_trace(residual).graph

    def sources(node: torch.fx.Node) -> tuple[str, ...]:
        if node.op == "placeholder":
            return ()
        if node.op == "call_module" and isinstance(residual.get_submodule(node.target), (nn.Conv2d, nn.ReLU)):
            return (output_of(str(node.target), outputs),)
        if node.target is torch.cat:
            return tuple(name for arg in node.args[0] for name in sources(arg))
        return sources(node.args[0])

    convs = [node for node in graph.nodes
             if node.op == "call_module" and isinstance(residual.get_submodule(node.target), nn.Conv2d)]
    return {output_of(str(node.target), outputs): sources(node.args[0]) for node in convs}


@pytest.mark.parametrize("name", CONFIGS)
def test_the_declared_outputs_are_the_networks_convolutions_and_what_they_read(name):
    config = CONFIGS[name]
    outputs = quantized_outputs(config)
    residual = merge(build_model(config)).residual
    convs = {path for path, module in residual.named_modules() if isinstance(module, nn.Conv2d)}
    assert sorted(output.conv for output in outputs) == sorted(convs)
    assert traced_reads(config) == {output.name: output.reads for output in outputs}
    for output in outputs:  # the module returns the conv's output (after its ReLU)
        module = residual.get_submodule(output.module)
        assert module is residual.get_submodule(output.conv) or (
            module[0] is residual.get_submodule(output.conv) and isinstance(module[-1], nn.ReLU)), output
        readers = [other.name for other in outputs if output.name in other.reads and len(other.reads) > 1]
        assert output.joins == (readers[0] if readers else None), output
    assert [o.name for o in outputs if not o.palettized] == ["stem", "head"]
    assert len(outputs) == 8 + config.bottleneck_convs


def test_two_bottleneck_convs_are_two_quantized_outputs_in_quantization_aware_training():
    """Each bottleneck conv's output is rounded over its own range; the last one's shares the
    concatenation's range with the skip it joins."""
    torch.manual_seed(0)
    config = CONFIGS["two bottleneck convs"]
    faces = torch.rand(4, 3, 32, 32)
    wrapper = QuantAware(build_model(config).eval(), 4, faces)
    names = [output.name for output in wrapper.outputs]
    assert wrapper.ranges.shape == (len(names), 2) and "bottleneck.0" in names and "bottleneck" in names
    def group_of(name: str) -> list[str]:
        return [names[i] for i in next(group for group in wrapper.groups if names.index(name) in group)]

    assert group_of("bottleneck") == ["enc3", "bottleneck"] and group_of("bottleneck.0") == ["bottleneck.0"]
    assert "residual/bottleneck/1/0" in wrapper.palettes and "residual/stem/0" not in wrapper.palettes
    with torch.no_grad():
        rounded, exact = wrapper(faces, clamp=False), wrapper.model(faces, clamp=False)
    assert torch.isfinite(rounded).all() and not torch.equal(rounded, exact)


@pytest.mark.parametrize("name", ["two bottleneck convs", "narrow"])
def test_the_skip_rescaling_is_float_exact_for_other_shapes(name):
    torch.manual_seed(0)
    model = build_model(CONFIGS[name]).eval()
    faces = torch.rand(3, 3, 32, 32)
    rescaled, factors = equalize_skips(model, faces)
    assert set(factors) == {"enc1", "enc2", "enc3"}
    with torch.no_grad():
        assert torch.allclose(rescaled(faces, clamp=False), model(faces, clamp=False), atol=1e-5)


@pytest.mark.parametrize(("field", "value"), [("bottleneck_convs", 0), ("bottleneck_width", 0),
                                              ("bottleneck_dilation", 0), ("in_channels", 1), ("widths", (8, 0, 8))])
def test_a_config_no_format_could_export_is_refused_when_built(field, value):
    with pytest.raises(ValueError, match=field):
        replace(NANO, **{field: value})
    with pytest.raises(ValueError, match=field):
        TinyBeautyConfig.from_dict(NANO.to_dict() | {field: value})


def _checkpoint_for(config: TinyBeautyConfig, base: dict, calibration: torch.Tensor, qat: bool) -> dict:
    """``base`` (a trained nano checkpoint: its split and training record) holding an untrained
    ``config`` network, as the float phase or the quantization-aware phase writes it."""
    torch.manual_seed(0)
    model = build_model(config).eval()
    if not qat:
        return base | {"phase": "float", "model": model.state_dict(), "model_config": config.to_dict()}
    wrapper = QuantAware(merge(model), 4, calibration)
    plain = wrapper.exported_model()
    return base | {"phase": "qat", "palette_bits": 4, "skip_factors": dict(wrapper.skip_factors),
                   "qat_state": {k: v.detach() for k, v in wrapper.state_dict().items()},
                   "model": plain.state_dict(), "model_config": plain.config.to_dict()}


EXPORTED = {
    "tiny, float phase": (VARIANTS["tiny"], False),
    "two bottleneck convs, quantization-aware": (CONFIGS["two bottleneck convs"], True),
    "three bottleneck convs, dilation 3, trained with branches": (
        replace(CONFIGS["three bottleneck convs, dilation 3"], reparam=True), False),
    "narrow, quantization-aware": (CONFIGS["narrow"], True),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPORTED)
def test_every_accepted_config_exports_every_format(name, checkpoint, tmp_path):
    from export.__main__ import main as export_main
    from export.formats import FORMATS
    from models.checkpoint import read_checkpoint, save_checkpoint

    config, qat = EXPORTED[name]
    base = read_checkpoint(checkpoint)
    path = save_checkpoint(tmp_path / "edge.pt", _checkpoint_for(config, base, torch.rand(8, 3, 64, 64), qat))
    out = tmp_path / "artifacts"
    assert export_main(["--checkpoint", str(path), "--out", str(out), "--calibration-images", "4",
                        "--val-images", "2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [record["format"] for record in manifest["artifacts"]] == [fmt.name for fmt in FORMATS]
    assert all(record["passed"] for record in manifest["artifacts"])
    if qat:
        assert list(manifest["activation_ranges"]) == [output.name for output in quantized_outputs(config)]
