"""What the int8 files round, shared by quantization-aware fine-tuning and the export.

Every int8 format (ONNX, ExecuTorch, TorchScript Lite, LiteRT) holds each convolution's output
(conv + ReLU, or the head's conv) as an 8-bit tensor over one range, and gives a concatenation one
range for all its inputs. The fine-tuning phase (train/qat.py) learns those ranges while it trains
through the rounding: a running average of each batch's extremes, one range per concatenation
group. A checkpoint of that phase stores them (``qat_state["ranges"]``, one row per quantized
output in the order the network declares them: models/tinybeauty.py, ``quantized_outputs``), and
the export sets every int8 format's activation ranges to exactly them
(:func:`trained_activation_ranges`), so each file rounds where the network learned to be rounded.
Re-calibrating instead (a histogram observer, as post-training quantization does) clips where the
network never saw clipping: on seed 2 of the default recipe the ``.ptl`` then lost 0.09 dB
against PyTorch; with the trained ranges it scores 0.21 dB above it (docs/training.md).

A region-input network (the default network) reads the face and its region maps concatenated
(models/tinybeauty.py: ``network_input``): the int8 files quantize that one input tensor, so face and
maps share one scale, and both lie in [0, 1]. The fine-tuning rounds the stem's input over
:data:`STEM_INPUT_RANGE` (8 bits, zero exact: steps of 1/255), and an int8 file that holds the face
and the maps in one input tensor rounds them the same way when its input range is that one.

It lives in models/ because both stages read it, and neither may import the other.
"""

from __future__ import annotations

from models.tinybeauty import QuantizedOutput, TinyBeautyConfig, quantized_outputs

STEM_INPUT_RANGE = (0.0, 1.0)  # what a region-input network's stem reads: face and maps, each in [0, 1]


def shared_range_groups(outputs: tuple[QuantizedOutput, ...]) -> list[list[int]]:
    """Indices into ``outputs`` that one concatenation joins (the skip and its decoder partner),
    then every other output on its own."""
    joined: dict[str, list[int]] = {}
    for i, output in enumerate(outputs):
        if output.joins:
            joined.setdefault(output.joins, []).append(i)
    return list(joined.values()) + [[i] for i, output in enumerate(outputs) if not output.joins]


def group_ranges(ranges, outputs: tuple[QuantizedOutput, ...]) -> dict[str, tuple[float, float]]:
    """Rows of ``(low, high)`` per entry of ``outputs`` -> the range each output is rounded over: its
    group's union, widened to hold zero (so zero is exact, as the fake rounding does)."""
    rows = [(min(float(low), 0.0), max(float(high), 0.0)) for low, high in ranges]
    if len(rows) != len(outputs):
        raise ValueError(f"{len(rows)} activation ranges for {len(outputs)} quantized outputs")
    found = {}
    for group in shared_range_groups(outputs):
        low, high = min(rows[i][0] for i in group), max(rows[i][1] for i in group)
        found |= {outputs[i].name: (low, high) for i in group}
    return {output.name: found[output.name] for output in outputs}


def trained_activation_ranges(checkpoint: dict) -> dict[str, tuple[float, float]] | None:
    """The activation ranges a quantization-aware checkpoint was trained with, by output name;
    None for a float-phase checkpoint (its int8 files are calibrated on training faces instead)."""
    ranges = (checkpoint.get("qat_state") or {}).get("ranges")
    if checkpoint.get("phase") != "qat" or ranges is None:
        return None
    outputs = quantized_outputs(TinyBeautyConfig.from_dict(checkpoint["model_config"]))
    return group_ranges(ranges.tolist(), outputs)


def output_of(module_path: str, outputs: tuple[QuantizedOutput, ...]) -> str | None:
    """The quantized output a module path belongs to (``residual.enc1.0`` -> ``enc1``,
    ``bottleneck.1.1`` -> ``bottleneck`` for two bottleneck convs), else None."""
    path = module_path.removeprefix("residual.")
    return next((output.name for output in outputs
                 if path == output.module or path.startswith(output.module + ".")), None)
