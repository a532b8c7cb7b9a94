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


def _conv(root: nn.Module, name: str) -> nn.Conv2d:
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
def equalize_skips(model: TinyBeauty, calibration: torch.Tensor) -> tuple[TinyBeauty, dict[str, float]]:
    """A copy of ``model`` with each skip rescaled to its decoder partner's range (float-exact).
    Returns (the copy, the factor per encoder stage)."""
    rescaled = copy.deepcopy(model).eval()
    ranges = activation_ranges(rescaled, calibration, {name for skip in SKIPS for name in skip[:2]})
    residual = rescaled.residual
    factors = {}
    for skip, partner, reader, decoder in SKIPS:
        if ranges[skip] <= 0 or ranges[partner] <= 0:
            continue  # a dead stage: nothing to fit
        k = ranges[partner] / ranges[skip]
        producer, next_conv, dec_conv = _conv(residual, skip), _conv(residual, reader), _conv(residual, decoder)
        producer.weight.mul_(k)
        producer.bias.mul_(k)
        next_conv.weight.div_(k)
        dec_conv.weight[:, -producer.out_channels:].div_(k)  # cat([decoder, skip]): the skip comes last
        factors[skip] = k
    return rescaled, factors
