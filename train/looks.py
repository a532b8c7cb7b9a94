"""The catalogue of makeup looks both built-in renderers draw (cartoon faces and real portraits).

Usage:
    python -m train.looks                              # the catalogue: name, swatch, description
    python -m train.looks --figure docs/looks.png      # every look on the same faces

A :class:`Look` is one definition: colours, strengths and the shape of each part (how high the
shadow reaches, a smudge under the lower lashes, the liner's width and wing). ``train/synthetic.py``
lays it along a cartoon face's drawn shapes, ``train/portraits.py`` along a photo's face mesh; both
read the same fields, so a look means the same on either. :data:`LOOKS` names the catalogue;
``berry`` is the look the built-in training set is made of. The figure shows, per look, a cartoon
and a real portrait, each as before | after | residual x4.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

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


RESIDUAL_GAIN = 4  # the figure's residual: mid-grey plus 4x (after - before), so a sheer look shows
FIGURE_CARTOON = 1  # the cartoon pair the figure shows (index, seed 0)
FIGURE_PORTRAIT = "collins"  # and the portrait, at its plain FFHQ crop
LABEL_WIDTH, HEADER_HEIGHT = 72, 24  # pixels of the left column that names each row's look, and of the top row
COLUMNS = ("cartoon: before", "after", f"residual x{RESIDUAL_GAIN}", f"portrait ({FIGURE_PORTRAIT}): before", "after",
           f"residual x{RESIDUAL_GAIN}")


def _row(before: np.ndarray, after: np.ndarray) -> list[np.ndarray]:
    return [before, after, np.clip(0.5 + RESIDUAL_GAIN * (after - before), 0, 1)]


def figure_image(size: int = 192) -> np.ndarray:
    """Every look on the same cartoon and portrait: per look one row, before | after | residual for each face."""
    # The renderers import this module for the looks, so they are imported when a figure is drawn.
    from train import portraits, synthetic

    rows = []
    for look in LOOKS.values():
        cartoon = synthetic.render_pair(FIGURE_CARTOON, seed=0, size=size, look=look)
        portrait = portraits.render_pair(FIGURE_PORTRAIT, 1, seed=0, size=size, look=look, kinds=())
        rows.append(np.concatenate(_row(*cartoon[:2]) + _row(*portrait[:2]), axis=1))
    return np.concatenate(rows, axis=0)


def write_figure(path: Path, size: int = 192) -> Path:
    """:func:`figure_image` with each row's look and each column named, written atomically as a PNG."""
    from PIL import Image, ImageDraw

    from models.atomic import atomic_path
    from train.synthetic import to_uint8

    grid = Image.fromarray(to_uint8(figure_image(size)))
    canvas = Image.new("RGB", (grid.width + LABEL_WIDTH, grid.height + HEADER_HEIGHT), (255, 255, 255))
    canvas.paste(grid, (LABEL_WIDTH, HEADER_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    for column, title in enumerate(COLUMNS):
        draw.text((LABEL_WIDTH + column * size + 6, HEADER_HEIGHT // 2 - 6), title, fill=(0, 0, 0))
    for row, name in enumerate(LOOKS):
        draw.text((8, HEADER_HEIGHT + row * size + size // 2 - 6), name, fill=(0, 0, 0))
    with atomic_path(Path(path)) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.looks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figure", type=Path, help="write every look on the same faces here (docs/looks.png)")
    parser.add_argument("--size", type=int, default=192, help="side of each face in the figure (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.figure is None:
        for entry in catalogue():
            print(f"{entry['name']:8s} {entry['swatch_hex']}  {entry['description']}")
        return 0
    if args.size < 32:
        parser.error("--size must be at least 32")
    from train.portraits import PortraitUnavailable

    try:
        log.info("wrote %s", write_figure(args.figure, args.size))
    except PortraitUnavailable as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
