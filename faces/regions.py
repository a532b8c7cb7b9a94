"""The face's regions for per-region strength: lips, eyes, cheeks and the rest of the face.

One definition for Python and the page: ``faces/regions.json`` (its ``about`` says what each entry
means) is read here and by ``web/static/regions.mjs``. It holds the face mesh's named contours
(faces/mesh.py's rings and brows come from it, and the training portraits use them), the region
names with their strength range, and each region's shape: soft ellipses in the model's crop, placed
from the mesh (:mod:`faces.region_weights` draws them), or where an average face has them when a
face has no mesh. This module needs nothing beyond the standard library, so a command line checks
``--regions`` before anything heavy is imported.
"""

from __future__ import annotations

import math
from pathlib import Path

from faces.shared_json import read_shared_json

REGIONS_FILE = Path(__file__).with_name("regions.json")
KEYS = ("contours", "inner_corner", "regions", "remainder", "strength", "shapes", "cheek", "template")


def load_definition(path: Path = REGIONS_FILE) -> dict:
    """The regions' definition (regions.json, also the page's), checked for every key read."""
    return read_shared_json(path, KEYS, "the face regions")


DEFINITION = load_definition()
CONTOURS: dict[str, tuple[int, ...]] = {name: tuple(ring) for name, ring in DEFINITION["contours"].items()}
REGION_NAMES: tuple[str, ...] = tuple(DEFINITION["regions"])
REMAINDER: str = DEFINITION["remainder"]
MIN_STRENGTH, MAX_STRENGTH = float(DEFINITION["strength"]["min"]), float(DEFINITION["strength"]["max"])
NEUTRAL = dict.fromkeys(REGION_NAMES, 1.0)  # every region at 1: the face mask alone


class RegionError(ValueError):
    """A --regions value that names no region, gives no usable number, or names one twice."""


def _strength(part: str, name: str, value: str, valid: str) -> float:
    try:
        strength = float(value)
    except ValueError:
        raise RegionError(f"{part!r}: {value!r} is not a number ({valid})") from None
    if not (math.isfinite(strength) and MIN_STRENGTH <= strength <= MAX_STRENGTH):
        raise RegionError(f"{part!r}: the strength of {name} must be between {MIN_STRENGTH:g} and "
                          f"{MAX_STRENGTH:g}, got {value} ({valid})")
    return strength


def parse_strengths(text: str) -> dict[str, float]:
    """``"lips=1,eyes=0.5,cheeks=0"`` -> a strength for every region (those not named: 1). Raises
    RegionError naming the part at fault and the regions there are."""
    valid = (f"the regions are {', '.join(REGION_NAMES)}, each {MIN_STRENGTH:g} to {MAX_STRENGTH:g}; "
             "write NAME=STRENGTH,... e.g. lips=1,eyes=0.5")
    strengths, named = dict(NEUTRAL), set()
    for part in text.split(","):
        name, equals, value = (piece.strip() for piece in part.partition("="))
        if not equals or not name or not value:
            raise RegionError(f"{part.strip()!r} is not NAME=STRENGTH ({valid})")
        if name not in strengths:
            raise RegionError(f"there is no region {name!r} ({valid})")
        if name in named:
            raise RegionError(f"{name} is given twice ({valid})")
        strengths[name] = _strength(part.strip(), name, value, valid)
        named.add(name)
    return strengths
