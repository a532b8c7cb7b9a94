"""The network's named variants and its input contract as plain data, read without torch: the
command lines offer the variants as choices before anything heavy is imported, and
models/tinybeauty.py builds each variant's TinyBeautyConfig from the same entries."""

from __future__ import annotations

# The look a network without a looks entry holds, and the built-in set's: the catalogue's berry
# (train/looks).
DEFAULT_LOOK = "berry"

# Inputs' sides must be divisible by this: the stem's stride 2 times two 2x max-pools.
INPUT_MULTIPLE = 8

# Named variants: the TinyBeautyConfig fields each sets (tiny: the defaults). One dict, one factory
# (models/tinybeauty.py `build_model`).
VARIANT_FIELDS: dict[str, dict] = {
    "tiny": {},
    "nano": {"widths": (8, 16, 24), "bottleneck_width": 24},  # tests and smoke runs
}
