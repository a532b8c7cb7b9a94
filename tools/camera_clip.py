"""A fake camera for the page: a real face moving along a known path, as a .y4m clip.

Usage:
    python -m tools.camera_clip clip.y4m                      # 1280x720, 30 frames/s, 4 s
    python -m tools.camera_clip clip.y4m --size 640x360 --seconds 2

Chromium plays such a file as its camera (``--use-fake-device-for-media-stream
--use-fake-ui-for-media-stream --use-file-for-fake-video-capture=clip.y4m``) and loops it, so
the page's camera mode can be tested and timed on a face whose position is known in every
frame. The face is skimage's astronaut portrait (Eileen Collins, NASA: public domain) on a flat
background, moving on a figure eight that closes at the clip's end (the loop has no jump). Each
frame carries its index as a row of black/white blocks along the top edge, so whoever reads
the page's frames knows which clip frame the page was shown (the camera drops and repeats
frames as it likes). YUV4MPEG2 with ``C420jpeg``: full-range BT.601 luma and 2x2-averaged
chroma, what PIL's JPEG-style YCbCr gives; a 1280x720 frame is 1.38 MB.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from models.atomic import atomic_path

BACKGROUND = (40, 90, 140)
CODE_BITS = 10       # frame index modulo 1024
CODE_ROWS = 16       # height of the code strip in pixels (the face never reaches it)
PORTRAIT = 0.75      # the portrait's side, in frame heights
SWING = (0.2, 0.06)  # the figure eight's half widths, in frame widths and heights (the portrait stays inside)


@dataclass(frozen=True)
class Clip:
    width: int = 1280
    height: int = 720
    fps: int = 30
    frames: int = 120
    swing: tuple[float, float] = SWING

    @property
    def portrait_side(self) -> int:
        return int(round(PORTRAIT * self.height))

    def offset(self, index: int) -> tuple[float, float]:
        """Where frame ``index`` puts the portrait's top-left corner (pixels; it loops)."""
        phase = 2 * np.pi * (index % self.frames) / self.frames
        side = self.portrait_side
        x = (self.width - side) / 2 + self.swing[0] * self.width * np.sin(phase)
        y = (self.height - side) / 2 + self.swing[1] * self.height * np.sin(2 * phase)
        return float(round(x)), float(round(y))

    def code_block(self) -> int:
        return self.width // (2 * CODE_BITS)


def portrait(side: int) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((side, side), Image.LANCZOS)


def frame(clip: Clip, index: int, face: Image.Image) -> Image.Image:
    """One RGB frame: the portrait at its place on the path, the index code along the top."""
    image = Image.new("RGB", (clip.width, clip.height), BACKGROUND)
    x, y = clip.offset(index)
    image.paste(face, (int(x), int(y)))
    pixels = np.asarray(image).copy()
    pixels[:CODE_ROWS] = 0
    block = clip.code_block()
    for bit in range(CODE_BITS):
        if (index >> bit) & 1:
            pixels[:CODE_ROWS, bit * 2 * block:(bit * 2 + 1) * block] = 255
    return Image.fromarray(pixels)


def read_code(top_rows: np.ndarray, clip: Clip) -> int:
    """The frame index (modulo 2^CODE_BITS) from the top rows of a shown frame (H x W x 3+)."""
    block = clip.code_block()
    row = np.asarray(top_rows, np.float64)[: CODE_ROWS // 2, :, :3].mean(axis=(0, 2))
    centres = [bit * 2 * block + block // 2 for bit in range(CODE_BITS)]
    return sum(1 << bit for bit, x in enumerate(centres) if row[x] > 128)


def yuv420(image: Image.Image) -> bytes:
    """Planar Y, Cb, Cr (full range, chroma averaged over 2x2 pixels)."""
    ycbcr = np.asarray(image.convert("YCbCr"), np.float32)
    height, width = ycbcr.shape[:2]
    chroma = ycbcr[:, :, 1:].reshape(height // 2, 2, width // 2, 2, 2).mean(axis=(1, 3))
    planes = [ycbcr[:, :, 0], chroma[:, :, 0], chroma[:, :, 1]]
    return b"".join(np.clip(np.round(plane), 0, 255).astype(np.uint8).tobytes() for plane in planes)


def write_clip(path: Path, clip: Clip = Clip()) -> Path:
    """Write the clip atomically (a killed run leaves nothing under ``path``)."""
    if clip.width % 2 or clip.height % 2 or clip.width < 20 * CODE_BITS:
        raise ValueError(f"{clip.width}x{clip.height}: the frame needs an even size, at least {20 * CODE_BITS} wide")
    face = portrait(clip.portrait_side)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        out.write(f"YUV4MPEG2 W{clip.width} H{clip.height} F{clip.fps}:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(clip.frames):
            out.write(b"FRAME\n" + yuv420(frame(clip, index, face)))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.camera_clip", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the .y4m file to write")
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT (default: %(default)s)")
    parser.add_argument("--fps", type=int, default=30, help="frames per second (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one loop (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        clip = Clip(width, height, args.fps, max(1, int(round(args.fps * args.seconds))))
        write_clip(args.out, clip)
    except ValueError as error:
        print(f"cannot write {args.out}: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {clip.frames} frames of {width}x{height} at {clip.fps} frames/s "
          f"({args.out.stat().st_size / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
