"""The figure of every look in the catalogue (train/looks), and the catalogue's listing.

Usage:
    python -m train.looks                              # the catalogue: name, swatch, description
    python -m train.looks --figure docs/looks.png      # every look on the same faces

The figure shows, per look, one cartoon (train/synthetic.py) and one real portrait
(train/portraits.py, its plain FFHQ crop), each as before | after | residual x4: the same faces in
every row, so only the look differs.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from models.atomic import atomic_path
from train import portraits, synthetic
from train.looks import LOOKS, catalogue
from train.portraits import PortraitUnavailable
from train.synthetic import to_uint8

log = logging.getLogger(__name__)

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
    rows = []
    for look in LOOKS.values():
        cartoon = synthetic.render_pair(FIGURE_CARTOON, seed=0, size=size, look=look)
        portrait = portraits.render_pair(FIGURE_PORTRAIT, 1, seed=0, size=size, look=look, kinds=())
        rows.append(np.concatenate(_row(*cartoon[:2]) + _row(*portrait[:2]), axis=1))
    return np.concatenate(rows, axis=0)


def write_figure(path: Path, size: int = 192) -> Path:
    """:func:`figure_image` with each row's look and each column named, written atomically as a PNG."""
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
    try:
        log.info("wrote %s", write_figure(args.figure, args.size))
    except PortraitUnavailable as error:
        log.error("%s", error)
        return 2
    return 0
