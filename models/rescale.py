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

from models.tinybeauty import QuantizedOutput, TinyBeauty, example_look_weights, quantized_outputs


def concatenated_skips(outputs: tuple[QuantizedOutput, ...]) -> list[tuple[QuantizedOutput, QuantizedOutput]]:
    """(skip, the decoder tensor it is concatenated with) for each concatenation the network declares,
    in forward order of the convolution that reads it: the skip is its last input."""
    by_name = {output.name: output for output in outputs}
    return [(by_name[output.reads[-1]], by_name[output.reads[0]]) for output in outputs if len(output.reads) > 1]


def output_conv(residual: nn.Module, output: QuantizedOutput) -> nn.Conv2d:
    """The convolution of the residual network (plain, merged) that writes ``output``."""
    return residual.get_submodule(output.conv)


@torch.no_grad()
def activation_ranges(model: TinyBeauty, faces: torch.Tensor, modules: set[str],
                      regions: torch.Tensor | None = None) -> dict[str, float]:
    """Largest activation of each named residual-network module over ``faces`` (one at a time; with
    several looks, an even blend of them: the shared modules do not depend on it). ``regions``: each
    face's region maps, for a network that reads them beside the face (the default network)."""
    ranges = dict.fromkeys(modules, 0.0)
    residual = model.residual
    hooks = [residual.get_submodule(name).register_forward_hook(
        lambda _m, _i, output, name=name: ranges.__setitem__(name, max(ranges[name], float(output.max()))))
        for name in modules]
    try:
        for index, face in enumerate(faces):
            maps = None if regions is None else regions[index:index + 1]
            model(face[None], example_look_weights(model.config), regions=maps)
    finally:
        for hook in hooks:
            hook.remove()
    return ranges


@torch.no_grad()
def skip_factors(model: TinyBeauty, calibration: torch.Tensor,
                 regions: torch.Tensor | None = None) -> dict[str, float]:
    """``k`` per encoder stage: (range of the decoder input) / (range of the skip) on ``calibration``
    (with ``regions``, the calibration faces' region maps, for a region-input network)."""
    skips = concatenated_skips(quantized_outputs(model.config))
    ranges = activation_ranges(model.eval(), calibration, {output.module for pair in skips for output in pair},
                               regions)
    return {skip.name: ranges[partner.module] / ranges[skip.module] for skip, partner in skips
            if ranges[skip.module] > 0 and ranges[partner.module] > 0}  # a dead stage: nothing to fit


def rescaled_parameters(model: TinyBeauty, factors: dict[str, float],
                        parameters: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The model's parameters (``parameters`` overriding some, by state-dict name) with the skips
    rescaled by ``factors``: differentiable, so quantization-aware training can round exactly the
    tensors the export ships. The skip's convolution is multiplied by ``k``, and every convolution
    that reads the skip (the next encoder stage, the decoder that reads the concatenation) divides
    its weights over the skip's channels by ``k``."""
    values = dict(model.named_parameters()) | (parameters or {})
    residual = model.residual
    outputs = quantized_outputs(model.config)
    by_name = {output.name: output for output in outputs}
    for skip, _partner in concatenated_skips(outputs):
        if skip.name not in factors:
            continue
        k = factors[skip.name]
        values[f"residual.{skip.conv}.weight"] = values[f"residual.{skip.conv}.weight"] * k
        values[f"residual.{skip.conv}.bias"] = values[f"residual.{skip.conv}.bias"] * k
        for reader in (output for output in outputs if skip.name in output.reads):
            widths = [output_conv(residual, by_name[read]).out_channels for read in reader.reads]
            position = reader.reads.index(skip.name)
            start = sum(widths[:position])
            name = f"residual.{reader.conv}.weight"
            values[name] = _divide_input_channels(values[name], start, start + widths[position], k)
    return values


def _divide_input_channels(weight: torch.Tensor, start: int, stop: int, k: float) -> torch.Tensor:
    """``weight`` with its input channels ``start:stop`` divided by ``k`` (all of them: one division)."""
    if start == 0 and stop == weight.shape[1]:
        return weight / k
    return torch.cat([weight[:, :start], weight[:, start:stop] / k, weight[:, stop:]], dim=1)


@torch.no_grad()
def equalize_skips(model: TinyBeauty, calibration: torch.Tensor, factors: dict[str, float] | None = None,
                   regions: torch.Tensor | None = None) -> tuple[TinyBeauty, dict[str, float]]:
    """A copy of ``model`` with each skip rescaled to its decoder partner's range (float-exact).
    ``factors``: the ones a quantization-aware fine-tune trained with (kept in its checkpoint),
    else measured on ``calibration`` (and ``regions``, its region maps, for a region-input network).
    Returns (the copy, the factor per encoder stage)."""
    rescaled = copy.deepcopy(model).eval()
    factors = dict(factors) if factors else skip_factors(rescaled, calibration, regions)
    values = rescaled_parameters(rescaled, factors)
    for name, parameter in rescaled.named_parameters():
        parameter.copy_(values[name])
    return rescaled, factors
