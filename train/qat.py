"""Quantization-aware fine-tuning: the last epochs of training see what the shipped files do.

Every int8 file (ONNX, ExecuTorch, TorchScript Lite, LiteRT) rounds the same things: each
convolution's weights per output channel (symmetric int8), and each activation a convolution
writes per tensor (8 bits over its calibrated range); the residual add and the clamp stay in
float. The ``.mlpackage`` stores each large convolution's weights as a 4-bit look-up table
(k-means palettization). After float training has converged, post-training rounding of a
network that never saw it costs 0.01-0.23 dB depending on the seed (docs/training.md).

:class:`QuantAware` wraps the trained :class:`~models.tinybeauty.TinyBeauty` for the final
phase (``--qat-epochs``):

- the large convolutions' weights become ``palette_bits``-bit look-up tables (1-D k-means per
  tensor, assignments then fixed, the table entries trained): the export's palettization of
  such a tensor is exact, so the ``.mlpackage`` gets 4 bits there at no cost in quality;
- every weight the network uses is fake-quantized per output channel to int8, and every
  convolution's output per tensor to 8 bits over a running range (straight-through gradients),
  so the weights settle where int8 rounding does no harm.

Concatenations: the int8 runtimes give a ``cat`` one scale for all its inputs, and the export
first rescales each encoder skip to its decoder partner's range (models/rescale.py, exact in
float), which moves precision from the decoder's weights that read the skip to the skip itself.
The phase measures those factors once, at its start, and rounds the *rescaled* network: each
weight after rescaling, each concatenation's inputs with one shared range. The factors go into
the checkpoint (``skip_factors``) and the export rescales with them, so the int8 files round the
very tensors this phase trained with. (Trained without the rescaling, a fine-tune made the int8
files worse than none: 0.30-0.40 dB lost instead of 0.17-0.23 on seed 1.)

Region inputs (the default network): the stem reads the face and its region maps concatenated, one
input tensor of the int8 files, so the phase rounds that concatenation with one scale over [0, 1]
(models/int8.py: ``STEM_INPUT_RANGE``; both face and maps lie there), and measures the skip factors
and first ranges with the calibration faces' own maps. A network of the face alone keeps its
unrounded input, as before (its int8 files calibrate the face's input range themselves).

The phase writes plain checkpoints: :meth:`QuantAware.exported_model` puts the weights (the
table entries, before rescaling and unrounded: each exporter rescales and rounds them itself)
back into a plain TinyBeauty with the same layers, so export, benchmark and apply read it as
any other.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from models.int8 import STEM_INPUT_RANGE, shared_range_groups
from models.rescale import rescaled_parameters, skip_factors
from models.tinybeauty import TinyBeauty, quantized_outputs

RANGE_MOMENTUM = 0.01  # running activation range: an exponential average of each batch's extremes
KMEANS_STEPS = 50


def kmeans_1d(values: torch.Tensor, clusters: int, steps: int = KMEANS_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on scalars, started at the quantiles (deterministic). Returns (sorted
    centroids, the index of each value's centroid)."""
    values = values.detach().flatten().double()
    clusters = min(clusters, values.numel())
    quantiles = torch.linspace(0.5 / clusters, 1 - 0.5 / clusters, clusters, dtype=torch.float64)
    centroids = torch.quantile(values, quantiles)
    for _ in range(steps):
        centroids = centroids.sort().values
        assign = torch.bucketize(values, (centroids[1:] + centroids[:-1]) / 2)
        sums = torch.zeros_like(centroids).index_add_(0, assign, values)
        counts = torch.zeros_like(centroids).index_add_(0, assign, torch.ones_like(values))
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    centroids = centroids.sort().values
    assign = torch.bucketize(values, (centroids[1:] + centroids[:-1]) / 2)
    return centroids.float(), assign


class Palette(nn.Module):
    """One convolution's weight as ``2**bits`` trained values and a fixed assignment."""

    def __init__(self, weight: torch.Tensor, bits: int):
        super().__init__()
        centroids, assign = kmeans_1d(weight, 2 ** bits)
        self.centroids = nn.Parameter(centroids)
        self.register_buffer("assign", assign.view(weight.shape))

    def forward(self) -> torch.Tensor:
        return self.centroids[self.assign]


def fake_int8_per_channel(weight: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 per output channel (what every int8 exporter does to a conv weight)."""
    scale = (weight.detach().abs().amax(dim=(1, 2, 3)) / 127).clamp(min=1e-12)
    zero = torch.zeros(weight.shape[0], dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -127, 127)


def fake_uint8(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """8-bit per tensor over [low, high] (low <= 0 <= high, so zero is exact), straight-through."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max((high - low) / 255, 1e-8)
    zero_point = int(min(max(round(-low / scale), 0), 255))
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 255)


def _convs(model: TinyBeauty) -> dict[str, nn.Conv2d]:
    """Residual-network convolutions by parameter prefix (``residual.enc1.0``), in forward order."""
    return {name: module for name, module in model.named_modules() if isinstance(module, nn.Conv2d)}


class QuantAware(nn.Module):
    """``model`` with int8 rounding (and palettized large weights) in its forward pass.

    Same call as TinyBeauty: ``forward(face, look_weights=None, clamp=True, regions=None)``. Trains the table
    entries, the unpalettized weights and every bias; the running activation ranges update in train mode.
    ``factors``: the skip rescaling to train with (a resumed phase's); default: measured on
    ``calibration``, which also sets the initial activation ranges (with several looks, each face
    under ``calibration_looks``, its look's one-hot weights; with region inputs, each face with
    ``calibration_regions``, its region maps)."""

    def __init__(self, model: TinyBeauty, palette_bits: int, calibration: torch.Tensor,
                 factors: dict[str, float] | None = None, calibration_looks: torch.Tensor | None = None,
                 calibration_regions: torch.Tensor | None = None):
        super().__init__()
        self.model = model
        self.config = model.config
        self.palette_bits = palette_bits
        self.convs = _convs(model)
        self.outputs = quantized_outputs(model.config)
        self.palettes = nn.ModuleDict()
        if palette_bits:
            palettized = {f"residual.{output.conv}" for output in self.outputs if output.palettized}
            for name, conv in self.convs.items():
                if name in palettized:
                    self.palettes[name.replace(".", "/")] = Palette(conv.weight, palette_bits)
                    conv.weight.requires_grad_(False)  # its table is what trains
        self.skip_factors = dict(factors) if factors else skip_factors(model, calibration, calibration_regions)
        self.register_buffer("ranges", torch.zeros(len(self.outputs), 2))
        self.groups = shared_range_groups(self.outputs)
        self._set_initial_ranges(calibration, calibration_looks, calibration_regions)
        for index, output in enumerate(self.outputs):
            model.residual.get_submodule(output.module).register_forward_hook(self._quantize_output(index))
        if model.config.region_inputs:
            model.residual.stem.register_forward_pre_hook(self._quantize_input)

    def weight(self, name: str) -> torch.Tensor:
        """The float weight the network uses for conv ``name`` (its table's values if palettized)."""
        key = name.replace(".", "/")
        return self.palettes[key]() if key in self.palettes else self.convs[name].weight

    @torch.no_grad()
    def _set_initial_ranges(self, faces: torch.Tensor, look_weights: torch.Tensor | None,
                            regions: torch.Tensor | None) -> None:
        extremes = {output.module: [0.0, 0.0] for output in self.outputs}

        def record(name):
            def hook(_module, _inputs, output):
                extremes[name][0] = min(extremes[name][0], float(output.min()))
                extremes[name][1] = max(extremes[name][1], float(output.max()))
            return hook

        hooks = [self.model.residual.get_submodule(name).register_forward_hook(record(name)) for name in extremes]
        try:
            batches = len(faces.split(8))
            weights = look_weights.split(8) if look_weights is not None else [None] * batches
            maps = regions.split(8) if regions is not None else [None] * batches
            for batch, batch_weights, batch_maps in zip(faces.split(8), weights, maps, strict=True):
                self._float_forward(batch, batch_weights, batch_maps)
        finally:
            for hook in hooks:
                hook.remove()
        self.ranges.copy_(torch.tensor(list(extremes.values())))

    def _quantize_output(self, index: int):
        group = next(g for g in self.groups if index in g)

        def hook(_module, _inputs, output: torch.Tensor) -> torch.Tensor:
            if not self._active:
                return output
            if self.training:
                seen = torch.stack([output.detach().min().clamp(max=0), output.detach().max().clamp(min=0)])
                self.ranges[index].lerp_(seen, RANGE_MOMENTUM)
            low = min(float(self.ranges[i, 0]) for i in group)  # one scale across a concatenation
            high = max(float(self.ranges[i, 1]) for i in group)
            return fake_uint8(output, low, high)
        return hook

    def _quantize_input(self, _module, inputs: tuple[torch.Tensor]) -> tuple[torch.Tensor] | None:
        """The stem's input (face and region maps concatenated) as the int8 files hold it: one 8-bit scale."""
        if not self._active:
            return None
        return (fake_uint8(inputs[0], *STEM_INPUT_RANGE),)

    _active = False  # the hooks round only inside forward(), not during calibration

    def rescaled_parameters(self) -> dict[str, torch.Tensor]:
        """Every parameter as the int8 files hold it before rounding: table values, skips rescaled."""
        weights = {f"{name}.weight": self.weight(name) for name in self.convs}
        return rescaled_parameters(self.model, self.skip_factors, weights)

    def _float_forward(self, face: torch.Tensor, look_weights: torch.Tensor | None,
                       regions: torch.Tensor | None) -> torch.Tensor:
        return torch.func.functional_call(self.model, self.rescaled_parameters(), (face, look_weights),
                                          {"clamp": False, "regions": regions})

    def forward(self, face: torch.Tensor, look_weights: torch.Tensor | None = None, clamp: bool = True,
                regions: torch.Tensor | None = None) -> torch.Tensor:
        weights = self.rescaled_parameters()
        weights |= {f"{name}.weight": fake_int8_per_channel(weights[f"{name}.weight"]) for name in self.convs}
        self._active = True
        try:
            made_up = torch.func.functional_call(self.model, weights, (face, look_weights),
                                                 {"clamp": False, "regions": regions})
        finally:
            self._active = False
        return torch.clamp(made_up, 0.0, 1.0) if clamp else made_up

    @torch.no_grad()
    def exported_model(self) -> TinyBeauty:
        """A plain TinyBeauty holding the weights this phase trained (unrounded float values)."""
        plain = copy.deepcopy(self.model)
        for hook_owner in plain.modules():
            hook_owner._forward_hooks.clear()
            hook_owner._forward_pre_hooks.clear()
        for name, conv in _convs(plain).items():
            conv.weight.copy_(self.weight(name))
            conv.weight.requires_grad_(True)
        return plain
