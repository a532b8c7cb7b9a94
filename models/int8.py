"""What the int8 files round, shared by quantization-aware fine-tuning and the export.

Every int8 format (ONNX, ExecuTorch, TorchScript Lite, LiteRT) holds each convolution's output
(conv + ReLU, or the head's conv) as an 8-bit tensor over one range, and gives a concatenation one
range for all its inputs. The fine-tuning phase (train/qat.py) learns those ranges while it trains
through the rounding: a running average of each batch's extremes, one range per concatenation
group. A checkpoint of that phase stores them (``qat_state["ranges"]``, rows in
:data:`QUANTIZED_OUTPUTS` order), and the export sets every int8 format's activation ranges to
exactly them (:func:`trained_activation_ranges`), so each file rounds where the network learned
to be rounded. Re-calibrating instead (a histogram observer, as post-training quantization does)
clips where the network never saw clipping: on seed 2 of the default recipe the ``.ptl`` then lost
0.09 dB against PyTorch; with the trained ranges it scores 0.21 dB above it (docs/training.md).

It lives in models/ because both stages read it, and neither may import the other.
"""

from __future__ import annotations

from models.rescale import SKIPS

# Residual-network modules whose output tensor is 8-bit on device, in forward order.
QUANTIZED_OUTPUTS = ("stem", "enc1", "enc2", "enc3", "bottleneck", "dec3", "dec2", "dec1", "head")


def shared_range_groups() -> list[list[int]]:
    """Indices into QUANTIZED_OUTPUTS that one concatenation joins (the skip and its decoder partner),
    then every other output on its own."""
    groups = [[QUANTIZED_OUTPUTS.index(skip), QUANTIZED_OUTPUTS.index(partner)] for skip, partner, _, _ in SKIPS]
    grouped = {i for group in groups for i in group}
    return groups + [[i] for i in range(len(QUANTIZED_OUTPUTS)) if i not in grouped]


def group_ranges(ranges) -> dict[str, tuple[float, float]]:
    """Rows of ``(low, high)`` per QUANTIZED_OUTPUTS entry -> the range each output is rounded
    over: its group's union, widened to hold zero (so zero is exact, as the fake rounding does)."""
    rows = [(min(float(low), 0.0), max(float(high), 0.0)) for low, high in ranges]
    if len(rows) != len(QUANTIZED_OUTPUTS):
        raise ValueError(f"{len(rows)} activation ranges for {len(QUANTIZED_OUTPUTS)} quantized outputs")
    found = {}
    for group in shared_range_groups():
        low, high = min(rows[i][0] for i in group), max(rows[i][1] for i in group)
        found |= {QUANTIZED_OUTPUTS[i]: (low, high) for i in group}
    return {name: found[name] for name in QUANTIZED_OUTPUTS}


def trained_activation_ranges(checkpoint: dict) -> dict[str, tuple[float, float]] | None:
    """The activation ranges a quantization-aware checkpoint was trained with, by output name;
    None for a float-phase checkpoint (its int8 files are calibrated on training faces instead)."""
    ranges = (checkpoint.get("qat_state") or {}).get("ranges")
    if checkpoint.get("phase") != "qat" or ranges is None:
        return None
    return group_ranges(ranges.tolist())


def output_of(module_path: str) -> str | None:
    """The quantized output a module path belongs to (``residual.enc1.0`` -> ``enc1``), else None."""
    parts = module_path.split(".")
    if parts and parts[0] == "residual":
        parts = parts[1:]
    return parts[0] if parts and parts[0] in QUANTIZED_OUTPUTS else None

