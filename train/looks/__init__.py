"""The catalogue of makeup looks both built-in renderers draw (cartoon faces and real portraits).

A :class:`Look` is one definition: colours, strengths and the shape of each part (how high the
shadow reaches, a smudge under the lower lashes, the liner's width and wing). ``train/synthetic.py``
lays it along a cartoon face's drawn shapes, ``train/portraits.py`` along a photo's face mesh; both
read the same fields, so a look means the same on either. :data:`LOOKS` names the catalogue;
``berry`` is the look the built-in training set is made of. ``python -m train.looks`` lists them and
draws them (``train/looks/figure.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

Colour = tuple[float, float, float]  # RGB in [0, 1]


@dataclass(frozen=True)
class Look:
    """One makeup look. An alpha of 0 leaves that part off; shape factors are 1 for berry's shapes."""

    description: str
    swatch: Colour  # the colour an app shows for the look (its most telling part)
    lipstick: Colour
    lipstick_alpha: float
    eyeshadow: Colour  # a multiply tint: shading under it stays
    eyeshadow_alpha: float
    eyeliner: Colour
    eyeliner_alpha: float
    blush: Colour
    blush_alpha: float
    shadow_height: float = 1.0  # how far the shadow reaches from the lid toward the brow
    lower_shadow_alpha: float = 0.0  # the shadow's colour smudged under the lower lashes
    liner_width: float = 1.0
    wing: float = 1.0  # the liner's flick past the outer corner; 0: none

    def swatch_hex(self) -> str:
        return "#" + "".join(f"{round(channel * 255):02x}" for channel in self.swatch)


BERRY = Look(
    description="berry lipstick, mauve eyeshadow, a winged black eyeliner and a soft pink blush",
    swatch=(0.62, 0.08, 0.24),
    lipstick=(0.62, 0.08, 0.24), lipstick_alpha=0.55,
    eyeshadow=(0.50, 0.30, 0.52), eyeshadow_alpha=0.40,
    eyeliner=(0.05, 0.03, 0.04), eyeliner_alpha=0.90,
    blush=(0.92, 0.42, 0.50), blush_alpha=0.22,
)

LOOKS: dict[str, Look] = {
    "berry": BERRY,
    "natural": Look(
        description="sheer rosy lips, a thin light-brown liner without a wing and a soft peach blush",
        swatch=(0.86, 0.50, 0.50),
        lipstick=(0.86, 0.44, 0.46), lipstick_alpha=0.32,
        eyeshadow=(0.80, 0.62, 0.52), eyeshadow_alpha=0.0,
        eyeliner=(0.24, 0.15, 0.10), eyeliner_alpha=0.6,
        blush=(1.00, 0.60, 0.45), blush_alpha=0.26,
        liner_width=0.7, wing=0.0,
    ),
    "classic": Look(
        description="a full red lip, a long winged black liner, bare lids and a touch of blush",
        swatch=(0.78, 0.04, 0.08),
        lipstick=(0.78, 0.04, 0.08), lipstick_alpha=0.82,
        eyeshadow=(0.80, 0.62, 0.52), eyeshadow_alpha=0.0,
        eyeliner=(0.03, 0.02, 0.02), eyeliner_alpha=0.95,
        blush=(0.92, 0.45, 0.45), blush_alpha=0.12,
        liner_width=1.25, wing=1.3,
    ),
    "smoky": Look(
        description="a smoky grey-brown eye, smudged under the lashes, with a dark liner and nude lips",
        swatch=(0.30, 0.25, 0.23),
        lipstick=(0.74, 0.54, 0.48), lipstick_alpha=0.25,
        eyeshadow=(0.30, 0.25, 0.23), eyeshadow_alpha=0.88,
        eyeliner=(0.07, 0.05, 0.05), eyeliner_alpha=0.85,
        blush=(0.78, 0.52, 0.42), blush_alpha=0.10,
        shadow_height=1.35, lower_shadow_alpha=0.75, liner_width=1.4, wing=0.35,
    ),
}


def look_named(name: str) -> Look:
    """The catalogue's look ``name``; an unknown name is an error that lists the known ones."""
    if name not in LOOKS:
        raise KeyError(f"no look named {name!r}; the catalogue has {', '.join(LOOKS)}")
    return LOOKS[name]


def catalogue() -> list[dict]:
    """The catalogue as plain data (name, swatch as #rrggbb, and every field), in catalogue order."""
    return [{"name": name, "swatch_hex": look.swatch_hex(), **asdict(look)} for name, look in LOOKS.items()]
