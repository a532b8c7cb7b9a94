"""Several looks in one network (models/tinybeauty.py): each look's head slice over look-weighted copies of
dec1. Blends are exact, one-hot weights pick a look's head, and one look is exactly the one-look network."""

from dataclasses import replace

import pytest
import torch

from models.tinybeauty import (
    VARIANTS,
    TinyBeautyConfig,
    build_model,
    merge,
    one_hot_looks,
    quantized_outputs,
)
from train.qat import QuantAware

LOOKS = ("berry", "natural", "classic", "smoky")
TODAYS_TINY_HEAD = [12, 16, 1, 1]  # the one-look head: 3 colours x 2x2 pixel shuffle from dec1's 16 channels


def several(variant: str = "nano", looks=LOOKS, reparam: bool = False):
    torch.manual_seed(0)
    model = build_model(replace(VARIANTS[variant], looks=looks), reparam=reparam).eval()
    with torch.no_grad():  # a trained-looking head: the initial one is almost zero
        model.residual.head.weight.normal_(0, 0.3)
        model.residual.head.bias.normal_(0, 0.05)
    return model


def residual(model, face, weights):
    with torch.no_grad():
        return model(face, weights, clamp=False) - face


def test_blends_are_the_weighted_sum_of_the_looks():
    model, face = several(), torch.rand(2, 3, 32, 32)
    singles = [residual(model, face, one_hot_looks(torch.tensor([look, look]), model.config))
               for look in range(len(LOOKS))]
    weights = torch.tensor([[0.7, 0.0, 0.3, 0.0], [0.1, 0.2, 0.3, 0.4]])
    expected = sum(weights[:, look, None, None, None] * singles[look] for look in range(len(LOOKS)))
    torch.testing.assert_close(residual(model, face, weights), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(singles[0], singles[3], atol=1e-3)  # the looks' heads differ


def test_one_hot_weights_pick_that_looks_head():
    """Look l of the network equals a one-look network with the same shared layers and l's head slice."""
    model, face = several(), torch.rand(3, 3, 32, 32)
    channels = model.config.widths[0]
    for look in range(len(LOOKS)):
        single = build_model("nano").eval()
        state = model.state_dict()
        state["residual.head.weight"] = state["residual.head.weight"][:, look * channels:(look + 1) * channels]
        single.load_state_dict(state)
        picked = model(face, one_hot_looks(torch.full((3,), look), model.config))
        torch.testing.assert_close(picked, single(face), atol=1e-6, rtol=1e-6)


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


def test_several_looks_cost_one_head_slice_each():
    """The per-look part is 12 x C weights: 192 bytes of int8 per extra look in the tiny network."""
    one, four = build_model("tiny"), build_model(replace(VARIANTS["tiny"], looks=LOOKS))
    extra = sum(p.numel() for p in four.parameters()) - sum(p.numel() for p in one.parameters())
    assert extra == 3 * 12 * VARIANTS["tiny"].widths[0] == 576
    assert list(four.state_dict()) == list(one.state_dict())
    # The quantized points are the same, and the head still writes the 12-channel residual.
    assert quantized_outputs(four.config) == quantized_outputs(one.config)
    assert four.residual.head.out_channels == one.residual.head.out_channels


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
    """The fine-tuning rounds dec1 before the look-weighted copies: one-hot copies are dec1's rounded
    values and zeros, and each sample's look still picks its head."""
    model, face = several(), torch.rand(4, 3, 32, 32)
    looks = one_hot_looks(torch.tensor([0, 1, 2, 3]), model.config)
    wrapper = QuantAware(model, 0, face, calibration_looks=looks).eval()
    with torch.no_grad():
        rounded, exact = wrapper(face, looks), model(face, looks)
    assert (rounded - exact).abs().max() < 0.05
    assert not torch.allclose(rounded[0], wrapper(face, one_hot_looks(torch.tensor([3] * 4), model.config))[0])
