"""Embedded dataset: procedural faces and one makeup style, in the amplification layout.

Usage:
    python -m train.synthetic --out data/synthetic --n 800 [--size 256] [--seed 0]

Writes ``OUT/source/image_0001.png`` (face without makeup), ``OUT/target/image_0001.png``
(the same face with the style) and ``OUT/mask/image_0001.png`` (exact face-parsing label map,
LaPa/MT convention: 0 background, 1 skin, 2/3 brows, 4/5 eyes, 6 nose, 7 upper lip, 8 mouth,
9 lower lip, 10 hair). Faces are roughly FFHQ-aligned (eyes near 40-47 % of the height).

The style ("berry"): berry lipstick, mauve eyeshadow, a winged black eyeliner and a soft
pink blush. It is subtle like real amplified data: the untouched source scores about
26-31 dB PSNR against its target. Every image is a pure function of (seed, index).
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from models.atomic import atomic_path

log = logging.getLogger(__name__)

LABELS = {
    "background": 0, "skin": 1, "left_brow": 2, "right_brow": 3, "left_eye": 4,
    "right_eye": 5, "nose": 6, "upper_lip": 7, "mouth": 8, "lower_lip": 9, "hair": 10,
}

SKIN_TONES = np.array([
    [0.98, 0.86, 0.76], [0.94, 0.78, 0.66], [0.88, 0.70, 0.56], [0.78, 0.58, 0.44],
    [0.66, 0.46, 0.33], [0.52, 0.35, 0.24], [0.40, 0.26, 0.18],
])
HAIR_COLORS = np.array([
    [0.08, 0.06, 0.05], [0.22, 0.14, 0.08], [0.45, 0.30, 0.16], [0.75, 0.60, 0.35],
    [0.55, 0.20, 0.10], [0.60, 0.60, 0.60],
])
IRIS_COLORS = np.array([[0.25, 0.15, 0.08], [0.30, 0.45, 0.65], [0.30, 0.45, 0.25], [0.12, 0.08, 0.05]])


@dataclass(frozen=True)
class MakeupStyle:
    """One makeup look: colours (RGB in [0, 1]) and strengths (alpha)."""

    lipstick: tuple[float, float, float] = (0.62, 0.08, 0.24)
    lipstick_alpha: float = 0.55
    eyeshadow: tuple[float, float, float] = (0.50, 0.30, 0.52)
    eyeshadow_alpha: float = 0.40
    eyeliner: tuple[float, float, float] = (0.05, 0.03, 0.04)
    eyeliner_alpha: float = 0.90
    blush: tuple[float, float, float] = (0.92, 0.42, 0.50)
    blush_alpha: float = 0.22


STYLE = MakeupStyle()


def _blur(mask: np.ndarray, radius: float) -> np.ndarray:
    image = Image.fromarray(np.clip(mask * 255.0, 0, 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def _shape_mask(size: int, draw_fn) -> np.ndarray:
    image = Image.new("L", (size, size), 0)
    draw_fn(ImageDraw.Draw(image))
    return np.asarray(image, dtype=np.float32) / 255.0


def _blend(image: np.ndarray, color, alpha: np.ndarray) -> np.ndarray:
    return image * (1.0 - alpha[..., None]) + np.asarray(color, np.float32) * alpha[..., None]


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> list[float]:
    return [cx - rx, cy - ry, cx + rx, cy + ry]


def _eye_arc(cx, cy, rx, ry, n=12, upper=True):
    sign = -1 if upper else 1
    return [(cx + rx * math.cos(t), cy + sign * ry * math.sin(t)) for t in np.linspace(math.pi, 0, n)]


def render_pair(index: int, seed: int = 0, size: int = 256, style: MakeupStyle = STYLE):
    """Return (source, target, labels): two float32 HxWx3 images in [0, 1] and a uint8 label map.

    Shapes are drawn at 2x and box-downsampled, so edges are anti-aliased like a photo.
    """
    rng = np.random.default_rng([seed, index])
    big = size * 2
    s = big / 256.0  # geometry below is written for a 256 canvas

    # Background: a vertical gradient between two random colours, plus grain.
    top, bottom = rng.uniform(0.1, 0.95, 3), rng.uniform(0.1, 0.95, 3)
    ramp = np.linspace(0, 1, big, dtype=np.float32)[:, None, None]
    image = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (big, big, 3)).astype(np.float32).copy()
    labels = np.zeros((big, big), np.uint8)

    # Face geometry with per-face jitter (roughly FFHQ-aligned).
    cx = 128 + rng.normal(0, 3)
    cy = 140 + rng.normal(0, 3)
    face_rx = rng.uniform(64, 78)
    face_ry = face_rx * rng.uniform(1.18, 1.38)
    eye_y = cy - face_ry * rng.uniform(0.14, 0.22)
    eye_dx = face_rx * rng.uniform(0.40, 0.48)
    eye_rx, eye_ry = rng.uniform(11, 15), rng.uniform(4.5, 7.0)
    mouth_y = cy + face_ry * rng.uniform(0.45, 0.55)
    mouth_rx = rng.uniform(17, 25)
    upper_h, lower_h = rng.uniform(4, 7), rng.uniform(5, 9)

    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.93, 1.05, 3)
    hair = HAIR_COLORS[rng.integers(len(HAIR_COLORS))] * rng.uniform(0.85, 1.15)
    lip_natural = skin * np.array([0.95, 0.68, 0.68]) * rng.uniform(0.85, 1.0)
    brow_color = np.minimum(hair, skin * 0.45)
    iris = IRIS_COLORS[rng.integers(len(IRIS_COLORS))]

    def S(*values):  # scale 256-canvas coordinates to the drawing canvas
        return [v * s for v in values]

    # Hair behind the head, then neck and face.
    hair_mask = _shape_mask(big, lambda d: d.ellipse(S(*_ellipse(cx, cy - 18, face_rx + 16, face_ry + 10)), fill=255))
    image = _blend(image, hair, hair_mask)
    labels[hair_mask > 0.5] = LABELS["hair"]
    neck = _shape_mask(big, lambda d: d.rectangle(S(cx - face_rx * 0.45, cy, cx + face_rx * 0.45, 256), fill=255))
    face = _shape_mask(big, lambda d: d.ellipse(S(*_ellipse(cx, cy, face_rx, face_ry)), fill=255))
    fringe = _shape_mask(big, lambda d: d.chord(S(*_ellipse(cx, cy - face_ry * 0.55, face_rx * 1.02, face_ry * 0.55)), 180, 360, fill=255))
    skin_mask = np.clip(face + neck, 0, 1) * (1 - fringe)
    image = _blend(image, skin, skin_mask)
    labels[skin_mask > 0.5] = LABELS["skin"]

    # Lighting: a soft directional gradient over everything, and low-frequency skin texture.
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32) / big - 0.5
    light = 1.0 + rng.uniform(0.05, 0.18) * (np.cos(angle) * xx + np.sin(angle) * yy) * 2
    texture = _blur(rng.uniform(0, 1, (big // 8, big // 8)).repeat(8, 0).repeat(8, 1), 6 * s) - 0.5
    image = image * light[..., None] + 0.05 * texture[..., None] * skin_mask[..., None]

    # Brows, eyes, nose, lips.
    for side, brow_label, eye_label in ((-1, "left_brow", "left_eye"), (1, "right_brow", "right_eye")):
        ex = cx + side * eye_dx
        brow_y = eye_y - rng.uniform(13, 17)
        brow = _shape_mask(big, lambda d, ex=ex, by=brow_y: d.line(
            S(ex - 15, by + 3, ex - 4 * side, by - 2, ex + 16 * side * side, by + 2), fill=255, width=int(4 * s)))
        image = _blend(image, brow_color, brow * 0.9)
        labels[brow > 0.5] = LABELS[brow_label]
        eye = _shape_mask(big, lambda d, ex=ex: d.ellipse(S(*_ellipse(ex, eye_y, eye_rx, eye_ry)), fill=255))
        image = _blend(image, np.array([0.93, 0.92, 0.90]), eye)
        iris_mask = _shape_mask(big, lambda d, ex=ex: d.ellipse(S(*_ellipse(ex, eye_y, eye_ry * 0.95, eye_ry * 0.95)), fill=255)) * eye
        image = _blend(image, iris, iris_mask)
        pupil = _shape_mask(big, lambda d, ex=ex: d.ellipse(S(*_ellipse(ex, eye_y, eye_ry * 0.4, eye_ry * 0.4)), fill=255)) * eye
        image = _blend(image, np.array([0.02, 0.02, 0.02]), pupil)
        labels[eye > 0.5] = LABELS[eye_label]

    nose = _shape_mask(big, lambda d: d.polygon(S(cx, eye_y + 6, cx - 9, mouth_y - 16, cx + 9, mouth_y - 16), fill=255))
    image = _blend(image, skin * 0.82, _blur(nose, 3 * s) * 0.5)
    labels[(nose > 0.5) & (labels == LABELS["skin"])] = LABELS["nose"]

    upper = _shape_mask(big, lambda d: d.chord(S(*_ellipse(cx, mouth_y, mouth_rx, upper_h)), 180, 360, fill=255))
    lower = _shape_mask(big, lambda d: d.chord(S(*_ellipse(cx, mouth_y, mouth_rx * 0.9, lower_h)), 0, 180, fill=255))
    image = _blend(image, lip_natural, np.clip(upper + lower, 0, 1))
    mouth = _shape_mask(big, lambda d: d.line(S(cx - mouth_rx, mouth_y, cx + mouth_rx, mouth_y), fill=255, width=max(1, int(1.2 * s))))
    image = _blend(image, lip_natural * 0.45, mouth)
    labels[upper > 0.5] = LABELS["upper_lip"]
    labels[lower > 0.5] = LABELS["lower_lip"]
    labels[mouth > 0.5] = LABELS["mouth"]

    source = np.clip(image + rng.normal(0, 0.008, image.shape).astype(np.float32), 0, 1)

    # --- The makeup style, on top of the finished source face ---
    target = source.copy()
    lips = _blur(np.clip(upper + lower, 0, 1) * (1 - mouth), 1.0 * s)
    shade = source.mean(axis=2, keepdims=True) / max(float(lip_natural.mean()), 1e-3)
    lip_color = np.clip(np.asarray(style.lipstick, np.float32) * (0.6 + 0.4 * shade), 0, 1)
    target = target * (1 - style.lipstick_alpha * lips[..., None]) + lip_color * style.lipstick_alpha * lips[..., None]

    for side in (-1, 1):
        ex = cx + side * eye_dx
        lid = _shape_mask(big, lambda d, ex=ex: d.ellipse(S(*_ellipse(ex + side * 2, eye_y - eye_ry * 0.9, eye_rx * 1.25, eye_ry * 1.6)), fill=255))
        eye_here = (labels == LABELS["left_eye" if side < 0 else "right_eye"]).astype(np.float32)
        shadow = _blur(lid, 4 * s) * (1 - _blur(eye_here, 0.5 * s))
        tint = np.asarray(style.eyeshadow, np.float32) * target  # multiply blend keeps shading
        target = target * (1 - style.eyeshadow_alpha * shadow[..., None]) + tint * 1.6 * style.eyeshadow_alpha * shadow[..., None]

        arc = _eye_arc(ex, eye_y - 0.6, eye_rx, eye_ry)
        tip = (ex + side * (eye_rx + 7), eye_y - eye_ry - 3)
        outer = arc[-1] if side > 0 else arc[0]
        liner = _shape_mask(big, lambda d, arc=arc, tip=tip, outer=outer: (
            d.line([tuple(S(*p)) for p in arc], fill=255, width=int(2.2 * s), joint="curve"),
            d.line([tuple(S(*outer)), tuple(S(*tip))], fill=255, width=int(2.0 * s)),
        ))
        target = _blend(target, style.eyeliner, style.eyeliner_alpha * liner)

        cheek = _shape_mask(big, lambda d, ex=ex: d.ellipse(S(*_ellipse(ex + side * 4, (eye_y + mouth_y) / 2 + 2, 15, 10)), fill=255))
        target = _blend(target, style.blush, style.blush_alpha * _blur(cheek, 7 * s) * skin_mask)

    target = np.clip(target, 0, 1)

    def down(img: np.ndarray) -> np.ndarray:
        return img.reshape(size, 2, size, 2, 3).mean(axis=(1, 3))

    return down(source), down(target), labels[::2, ::2].copy()


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _write_pair(job: tuple[Path, int, int, int]) -> None:
    out, index, size, seed = job
    name = f"image_{index:04d}.png"
    if all((out / sub / name).exists() for sub in ("source", "target", "mask")):
        return
    source, target, labels = render_pair(index, seed=seed, size=size)
    for sub, array in (("mask", labels), ("source", to_uint8(source)), ("target", to_uint8(target))):
        with atomic_path(out / sub / name) as tmp:  # a killed run never leaves a half-written pair
            Image.fromarray(array).save(tmp, format="PNG")


def write_dataset(out: Path, n: int, size: int = 256, seed: int = 0, workers: int | None = None) -> Path:
    """Render ``n`` pairs into ``out``; pairs already complete are kept (re-runs are cheap)."""
    out = Path(out)
    for sub in ("source", "target", "mask"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(out, index, size, seed) for index in range(1, n + 1)]
    workers = workers or min(4, os.cpu_count() or 1)
    progress = dict(total=n, desc=f"rendering {n} synthetic pairs", unit="pair")
    if workers == 1:
        for job in tqdm(jobs, **progress):
            _write_pair(job)
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in tqdm(pool.imap_unordered(_write_pair, jobs, chunksize=8), **progress):
                pass
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/synthetic"), help="output folder")
    parser.add_argument("--n", type=int, default=800, help="number of pairs")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_dataset(args.out, args.n, args.size, args.seed)
    log.info("wrote %d pairs to %s (source/, target/, mask/)", args.n, args.out)


if __name__ == "__main__":
    main()
