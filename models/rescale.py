"""Float-exact rescaling of the encoder so that each skip connection and the decoder tensor it is
concatenated with span the same range: what int8 concatenation needs.

Int8 runtimes give a concatenation one scale for all its inputs (XNNPACK, QNNPACK, and the
FX / PT2E quantizers that share one observer across a ``cat``). In a trained TinyBeauty the
skips span a few units while the decoder tensors they join span tens, so a shared scale
leaves the skips a handful of int8 levels. ReLU and max-pool commute with a positive scale, so
multiplying an encoder conv's weights and bias by ``k`` and dividing every weight that reads
its output by ``k`` changes nothing in float (to ~1e-7) but scales that skip by ``k``.
``k`` = (range of the decoder input) / (range of the skip), ranges measured on calibration
(training) faces only.

It lives in models/ because two stages use it: the export (every format with int8 activations)
and quantization-aware fine-tuning (train/qat.py), which trains the rescaled network so that what
it rounds is what the export ships.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from models.tinybeauty import TinyBeauty

# (encoder stage whose output is a skip, module whose output it is concatenated with, the
# convolution that reads the skip through the encoder path, the decoder conv that reads the cat)
SKIPS = (
    ("enc3", "bottleneck", "bottleneck.0.0", "dec3"),
    ("enc2", "dec3", "enc3", "dec2"),
    ("enc1", "dec2", "enc2", "dec1"),
)


def output_conv(root: nn.Module, name: str) -> nn.Conv2d:
    """The convolution of module ``name`` of ``root``: the module itself, or the first conv of its
    conv + activation block (models/int8.py names the outputs by these modules too)."""
    module = root.get_submodule(name)
    return module if isinstance(module, nn.Conv2d) else next(m for m in module.modules() if isinstance(m, nn.Conv2d))


@torch.no_grad()
def activation_ranges(model: TinyBeauty, faces: torch.Tensor, names: set[str]) -> dict[str, float]:
    """Largest activation of each named residual-network module over ``faces`` (one at a time)."""
    ranges = dict.fromkeys(names, 0.0)
    residual = model.residual
    hooks = [residual.get_submodule(name).register_forward_hook(
        lambda _m, _i, output, name=name: ranges.__setitem__(name, max(ranges[name], float(output.max()))))
        for name in names]
    try:
        for face in faces:
            model(face[None])
    finally:
        for hook in hooks:
            hook.remove()
    return ranges


@torch.no_grad()
def skip_factors(model: TinyBeauty, calibration: torch.Tensor) -> dict[str, float]:
    """``k`` per encoder stage: (range of the decoder input) / (range of the skip) on ``calibration``."""
    ranges = activation_ranges(model.eval(), calibration, {name for skip in SKIPS for name in skip[:2]})
    return {skip: ranges[partner] / ranges[skip] for skip, partner, _, _ in SKIPS
            if ranges[skip] > 0 and ranges[partner] > 0}  # a dead stage: nothing to fit


def rescaled_parameters(model: TinyBeauty, factors: dict[str, float],
                        parameters: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The model's parameters (``parameters`` overriding some, by state-dict name) with the skips
    rescaled by ``factors``: differentiable, so quantization-aware training can round exactly the
    tensors the export ships."""
    values = dict(model.named_parameters()) | (parameters or {})
    residual = model.residual
    for skip, _partner, reader, decoder in SKIPS:
        if skip not in factors:
            continue
        k = factors[skip]
        producer = _conv_name(residual, skip)
        values[f"{producer}.weight"] = values[f"{producer}.weight"] * k
        values[f"{producer}.bias"] = values[f"{producer}.bias"] * k
        next_name = _conv_name(residual, reader)
        values[f"{next_name}.weight"] = values[f"{next_name}.weight"] / k
        channels = output_conv(residual, skip).out_channels
        dec_name = _conv_name(residual, decoder)
        weight = values[f"{dec_name}.weight"]  # cat([decoder, skip]): the skip comes last
        values[f"{dec_name}.weight"] = torch.cat([weight[:, :-channels], weight[:, -channels:] / k], dim=1)
    return values


def _conv_name(residual: nn.Module, name: str) -> str:
    """State-dict prefix (from the TinyBeauty root) of the convolution of residual module ``name``:
    the module itself, or the first layer of its conv + activation block."""
    return f"residual.{name}" if isinstance(residual.get_submodule(name), nn.Conv2d) else f"residual.{name}.0"


@torch.no_grad()
def equalize_skips(model: TinyBeauty, calibration: torch.Tensor,
                   factors: dict[str, float] | None = None) -> tuple[TinyBeauty, dict[str, float]]:
    """A copy of ``model`` with each skip rescaled to its decoder partner's range (float-exact).
    ``factors``: the ones a quantization-aware fine-tune trained with (kept in its checkpoint),
    else measured on ``calibration``. Returns (the copy, the factor per encoder stage)."""
    rescaled = copy.deepcopy(model).eval()
    factors = dict(factors) if factors else skip_factors(rescaled, calibration)
    values = rescaled_parameters(rescaled, factors)
    for name, parameter in rescaled.named_parameters():
        parameter.copy_(values[name])
    return rescaled, factors
