import pytest
import torch

from models.tinybeauty import VARIANTS, TinyBeautyConfig, build_model, count_macs, count_parameters


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
