"""Several looks in one network (models/tinybeauty.py): each look gates the channels of dec3, dec2 and dec1.
One-hot weights pick a look (the one-look network with its gates folded in), a blend mixes the looks' gates,
and one look is exactly the one-look network."""

from dataclasses import replace

import pytest
import torch

from models.tinybeauty import (
    GATE_SHARPNESS,
    GATED_OUTPUTS,
    VARIANTS,
    TinyBeautyConfig,
    build_model,
    merge,
    one_hot_looks,
    quantized_outputs,
)
from train.keep_looks import narrowed_weights
from train.qat import QuantAware

LOOKS = ("berry", "natural", "classic", "smoky")
TODAYS_TINY_HEAD = [12, 16, 1, 1]  # the one-look head: 3 colours x 2x2 pixel shuffle from dec1's 16 channels


def several(variant: str = "nano", looks=LOOKS, reparam: bool = False):
    torch.manual_seed(0)
    model = build_model(replace(VARIANTS[variant], looks=looks), reparam=reparam).eval()
    with torch.no_grad():  # a trained-looking head and gates: the initial head is almost zero, the gates all alike
        model.residual.head.weight.normal_(0, 0.3)
        model.residual.head.bias.normal_(0, 0.05)
        model.residual.look_gates.weight.normal_(0, 0.1)
    return model


def residual(model, face, weights):
    with torch.no_grad():
        return model(face, weights, clamp=False) - face


def test_one_hot_weights_pick_that_looks_gates():
    """Look l of the network equals the one-look network with l's gates folded into the convolutions after them."""
    model, face = several(), torch.rand(3, 3, 32, 32)
    for look in range(len(LOOKS)):
        single = build_model("nano").eval()
        single.load_state_dict(narrowed_weights(model, model.state_dict(), [look]))
        picked = model(face, one_hot_looks(torch.full((3,), look), model.config))
        torch.testing.assert_close(picked, single(face), atol=1e-6, rtol=1e-6)
    singles = [residual(model, face, one_hot_looks(torch.full((3,), look), model.config)) for look in range(4)]
    assert not torch.allclose(singles[0], singles[3], atol=1e-3)  # the looks differ


def test_a_blend_mixes_the_looks_gates():
    """Weights w put on the look whose gates are w @ gates: a network whose first look holds those gates gives
    the blend's output."""
    model, face = several(), torch.rand(2, 3, 32, 32)
    weights = torch.tensor([[0.7, 0.0, 0.3, 0.0], [0.7, 0.0, 0.3, 0.0]])
    mixed = several()
    with torch.no_grad():
        mix = weights[0] @ model.residual.look_gates.gates()
        mixed.residual.look_gates.weight[0] = torch.logit(mix) / GATE_SHARPNESS
    first = one_hot_looks(torch.zeros(2), model.config)
    torch.testing.assert_close(residual(model, face, weights), residual(mixed, face, first), atol=1e-5, rtol=1e-4)
    ends = [residual(model, face, one_hot_looks(torch.full((2,), look), model.config)) for look in (0, 2)]
    assert all(not torch.allclose(residual(model, face, weights), end, atol=1e-4) for end in ends)


def test_each_sample_takes_its_own_look():
    model, face = several(), torch.rand(1, 3, 32, 32).repeat(2, 1, 1, 1)
    both = model(face, one_hot_looks(torch.tensor([0, 3]), model.config))
    torch.testing.assert_close(both[1:], model(face[1:], one_hot_looks(torch.tensor([3]), model.config)))
    assert not torch.allclose(both[0], both[1], atol=1e-3)


def test_one_look_is_todays_network():
    todays = build_model("tiny")
    named = build_model(replace(VARIANTS["tiny"], looks=("berry",)))
    assert list(todays.state_dict()) == list(named.state_dict())
    assert list(todays.residual.head.weight.shape) == TODAYS_TINY_HEAD
    assert "looks" not in todays.config.to_dict()  # checkpoints' model_config as before several looks
    assert TinyBeautyConfig.from_dict(todays.config.to_dict()) == todays.config
    face = torch.rand(1, 3, 32, 32)
    assert todays(face).shape == face.shape
    with pytest.raises(ValueError, match="one look"):
        todays(face, torch.ones(1, 1))


def test_several_looks_cost_their_gates():
    """The per-look part is a gate on each channel of dec3, dec2 and dec1: c2 + 2 c1 = 56 weights a look in the
    tiny network, and one look has none."""
    one, four = build_model("tiny"), build_model(replace(VARIANTS["tiny"], looks=LOOKS))
    extra = sum(p.numel() for p in four.parameters()) - sum(p.numel() for p in one.parameters())
    c1, c2, _ = VARIANTS["tiny"].widths
    assert extra == len(LOOKS) * (c2 + 2 * c1) == 224
    assert list(four.state_dict()) == list(one.state_dict()) + ["residual.look_gates.weight"]
    assert list(four.residual.look_gates.channels) == list(GATED_OUTPUTS)
    # The quantized points are the same, and the head still writes the 12-channel residual.
    assert quantized_outputs(four.config) == quantized_outputs(one.config)
    assert four.residual.head.weight.shape == one.residual.head.weight.shape


def test_missing_or_misshapen_look_weights_name_the_looks():
    model, face = several(), torch.rand(2, 3, 32, 32)
    for weights in (None, torch.ones(2, 3), torch.ones(1, 4)):
        with pytest.raises(ValueError, match="4 looks \\(berry, natural, classic, smoky\\).*shape \\[2, 4\\]"):
            model(face, weights)


def test_config_refuses_duplicate_or_no_looks():
    for looks in ((), ("berry", "berry"), ("berry", "")):
        with pytest.raises(ValueError, match="looks must be distinct"):
            TinyBeautyConfig(looks=looks)


def test_merge_keeps_the_looks():
    branched = several(reparam=True)
    plain, face = merge(branched), torch.rand(2, 3, 32, 32)
    weights = one_hot_looks(torch.tensor([1, 2]), branched.config)
    torch.testing.assert_close(plain(face, weights), branched(face, weights), atol=1e-5, rtol=1e-5)
    assert plain.config.looks == LOOKS


def test_quantization_aware_forward_takes_the_looks():
    """The fine-tuning rounds each decoder output before its gates, and each sample's look still picks its
    gates."""
    model, face = several(), torch.rand(4, 3, 32, 32)
    looks = one_hot_looks(torch.tensor([0, 1, 2, 3]), model.config)
    wrapper = QuantAware(model, 0, face, calibration_looks=looks).eval()
    with torch.no_grad():
        rounded, exact = wrapper(face, looks), model(face, looks)
    assert (rounded - exact).abs().max() < 0.05
    assert not torch.allclose(rounded[0], wrapper(face, one_hot_looks(torch.tensor([3] * 4), model.config))[0])
