"""Embedded dataset: procedural faces and a makeup look, in the amplification layout.

Usage:
    python -m train.synthetic --out data/synthetic --n 800 [--size 256] [--seed 0] [--look berry]

Writes ``OUT/source/image_0001.png`` (face without makeup), ``OUT/target/image_0001.png``
(the same face with the look) and ``OUT/mask/image_0001.png`` (exact face-parsing label map,
LaPa/MT convention: 0 background, 1 skin, 2/3 brows, 4/5 eyes, 6 nose, 7 upper lip, 8 mouth,
9 lower lip, 10 hair). Faces are roughly FFHQ-aligned (eyes near 40-47 % of the height).

The look (``--look``, from the catalogue in ``train/looks``) defaults to "berry", the built-in
set's: berry lipstick, mauve eyeshadow, a winged black eyeliner and a soft pink blush. It is subtle
like real amplified data: the untouched source scores about 31 dB PSNR against its target (31.0 dB
on the built-in set's validation and test splits). Every image is a pure function of (seed, index);
every look is drawn on the same faces.
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
from models.variants import DEFAULT_LOOK
from train.looks import BERRY, LOOKS, Look, look_named

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


def _blur(mask: np.ndarray, radius: float) -> np.ndarray:
    image = Image.fromarray(np.clip(mask * 255.0, 0, 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def _shape_mask(size: int, draw_fn) -> np.ndarray:
    image = Image.new("L", (size, size), 0)
    draw_fn(ImageDraw.Draw(image))
    return np.asarray(image, dtype=np.float32) / 255.0


def _in_box(image: np.ndarray, alpha: np.ndarray, blend) -> np.ndarray:
    """``blend(image, alpha[..., None])`` computed only over the box where ``alpha`` is not 0 (most masks
    cover a small part of the canvas). Each blend here is ``image * (1 - k * alpha) + ... * alpha``, which
    is ``image`` exactly where alpha is 0, so the result is the whole-canvas formula's to the bit."""
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    out = image.copy()
    if len(rows):
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        out[box] = blend(image[box], alpha[box][..., None])
    return out


def _blend(image: np.ndarray, color, alpha: np.ndarray) -> np.ndarray:
    color = np.asarray(color, np.float32)
    return _in_box(image, alpha, lambda image, a: image * (1.0 - a) + color * a)


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> list[float]:
    return [cx - rx, cy - ry, cx + rx, cy + ry]


def _eye_arc(cx, cy, rx, ry, n=12, upper=True):
    sign = -1 if upper else 1
    return [(cx + rx * math.cos(t), cy + sign * ry * math.sin(t)) for t in np.linspace(math.pi, 0, n)]


@dataclass(frozen=True)
class Canvas:
    """The drawing canvas: twice the output size, with the geometry written for a 256 canvas."""

    size: int  # pixels per side (2x the output: shapes are box-downsampled, anti-aliased like a photo)

    @property
    def scale(self) -> float:
        return self.size / 256.0

    def at(self, *values: float) -> list[float]:
        """256-canvas coordinates on this canvas."""
        return [v * self.scale for v in values]

    def mask(self, draw_fn) -> np.ndarray:
        return _shape_mask(self.size, draw_fn)


@dataclass(frozen=True)
class Face:
    """One face's random geometry (256-canvas coordinates) and colours."""

    cx: float
    cy: float
    face_rx: float
    face_ry: float
    eye_y: float
    eye_dx: float
    eye_rx: float
    eye_ry: float
    mouth_y: float
    mouth_rx: float
    upper_h: float
    lower_h: float
    skin: np.ndarray
    hair: np.ndarray
    lip_natural: np.ndarray
    brow_color: np.ndarray
    iris: np.ndarray


@dataclass(frozen=True)
class FaceMasks:
    """The soft masks the makeup is laid along."""

    skin: np.ndarray
    upper_lip: np.ndarray
    lower_lip: np.ndarray
    mouth: np.ndarray


def _background(rng: np.random.Generator, canvas: Canvas) -> tuple[np.ndarray, np.ndarray]:
    """A vertical gradient between two random colours, and an all-background label map."""
    big = canvas.size
    top, bottom = rng.uniform(0.1, 0.95, 3), rng.uniform(0.1, 0.95, 3)
    ramp = np.linspace(0, 1, big, dtype=np.float32)[:, None, None]
    image = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (big, big, 3)).astype(np.float32).copy()
    return image, np.zeros((big, big), np.uint8)


def _random_face(rng: np.random.Generator) -> Face:
    """Face geometry with per-face jitter (roughly FFHQ-aligned), and its colours."""
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
    return Face(cx, cy, face_rx, face_ry, eye_y, eye_dx, eye_rx, eye_ry, mouth_y, mouth_rx, upper_h, lower_h,
                skin, hair, lip_natural, brow_color, iris)


def _draw_head(image: np.ndarray, labels: np.ndarray, face: Face, canvas: Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Hair behind the head, then neck and face; returns the image and the skin mask."""
    S, f = canvas.at, face
    hair_mask = canvas.mask(lambda d: d.ellipse(
        S(*_ellipse(f.cx, f.cy - 18, f.face_rx + 16, f.face_ry + 10)), fill=255))
    image = _blend(image, f.hair, hair_mask)
    labels[hair_mask > 0.5] = LABELS["hair"]
    neck = canvas.mask(lambda d: d.rectangle(S(f.cx - f.face_rx * 0.45, f.cy, f.cx + f.face_rx * 0.45, 256), fill=255))
    face_mask = canvas.mask(lambda d: d.ellipse(S(*_ellipse(f.cx, f.cy, f.face_rx, f.face_ry)), fill=255))
    fringe = canvas.mask(lambda d: d.chord(
        S(*_ellipse(f.cx, f.cy - f.face_ry * 0.55, f.face_rx * 1.02, f.face_ry * 0.55)), 180, 360, fill=255))
    skin_mask = np.clip(face_mask + neck, 0, 1) * (1 - fringe)
    image = _blend(image, f.skin, skin_mask)
    labels[skin_mask > 0.5] = LABELS["skin"]
    return image, skin_mask


def _light(image: np.ndarray, skin_mask: np.ndarray, rng: np.random.Generator, canvas: Canvas) -> np.ndarray:
    """A soft directional gradient over everything, and low-frequency skin texture."""
    big = canvas.size
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32) / big - 0.5
    light = 1.0 + rng.uniform(0.05, 0.18) * (np.cos(angle) * xx + np.sin(angle) * yy) * 2
    texture = _blur(rng.uniform(0, 1, (big // 8, big // 8)).repeat(8, 0).repeat(8, 1), 6 * canvas.scale) - 0.5
    return image * light[..., None] + 0.05 * texture[..., None] * skin_mask[..., None]


def _draw_brows_and_eyes(image: np.ndarray, labels: np.ndarray, face: Face, rng: np.random.Generator,
                         canvas: Canvas) -> np.ndarray:
    S, f = canvas.at, face
    for side, brow_label, eye_label in ((-1, "left_brow", "left_eye"), (1, "right_brow", "right_eye")):
        ex = f.cx + side * f.eye_dx
        brow_y = f.eye_y - rng.uniform(13, 17)
        brow = canvas.mask(lambda d, ex=ex, by=brow_y: d.line(
            S(ex - 15, by + 3, ex - 4 * side, by - 2, ex + 16 * side * side, by + 2), fill=255,
            width=int(4 * canvas.scale)))
        image = _blend(image, f.brow_color, brow * 0.9)
        labels[brow > 0.5] = LABELS[brow_label]
        eye = canvas.mask(lambda d, ex=ex: d.ellipse(S(*_ellipse(ex, f.eye_y, f.eye_rx, f.eye_ry)), fill=255))
        image = _blend(image, np.array([0.93, 0.92, 0.90]), eye)
        iris_mask = canvas.mask(lambda d, ex=ex: d.ellipse(
            S(*_ellipse(ex, f.eye_y, f.eye_ry * 0.95, f.eye_ry * 0.95)), fill=255)) * eye
        image = _blend(image, f.iris, iris_mask)
        pupil = canvas.mask(lambda d, ex=ex: d.ellipse(
            S(*_ellipse(ex, f.eye_y, f.eye_ry * 0.4, f.eye_ry * 0.4)), fill=255)) * eye
        image = _blend(image, np.array([0.02, 0.02, 0.02]), pupil)
        labels[eye > 0.5] = LABELS[eye_label]
    return image


def _draw_nose_and_lips(image: np.ndarray, labels: np.ndarray, face: Face,
                        canvas: Canvas) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Returns the image and the (upper lip, lower lip, mouth line) masks."""
    S, f = canvas.at, face
    nose = canvas.mask(lambda d: d.polygon(
        S(f.cx, f.eye_y + 6, f.cx - 9, f.mouth_y - 16, f.cx + 9, f.mouth_y - 16), fill=255))
    image = _blend(image, f.skin * 0.82, _blur(nose, 3 * canvas.scale) * 0.5)
    labels[(nose > 0.5) & (labels == LABELS["skin"])] = LABELS["nose"]

    upper = canvas.mask(lambda d: d.chord(S(*_ellipse(f.cx, f.mouth_y, f.mouth_rx, f.upper_h)), 180, 360, fill=255))
    lower = canvas.mask(lambda d: d.chord(S(*_ellipse(f.cx, f.mouth_y, f.mouth_rx * 0.9, f.lower_h)), 0, 180, fill=255))
    image = _blend(image, f.lip_natural, np.clip(upper + lower, 0, 1))
    mouth = canvas.mask(lambda d: d.line(S(f.cx - f.mouth_rx, f.mouth_y, f.cx + f.mouth_rx, f.mouth_y), fill=255,
                                         width=max(1, int(1.2 * canvas.scale))))
    image = _blend(image, f.lip_natural * 0.45, mouth)
    labels[upper > 0.5] = LABELS["upper_lip"]
    labels[lower > 0.5] = LABELS["lower_lip"]
    labels[mouth > 0.5] = LABELS["mouth"]
    return image, (upper, lower, mouth)


def _draw_face(rng: np.random.Generator, canvas: Canvas) -> tuple[np.ndarray, np.ndarray, Face, FaceMasks]:
    """The face without makeup (before sensor noise), its label map, geometry and masks."""
    image, labels = _background(rng, canvas)
    face = _random_face(rng)
    image, skin_mask = _draw_head(image, labels, face, canvas)
    image = _light(image, skin_mask, rng, canvas)
    image = _draw_brows_and_eyes(image, labels, face, rng, canvas)
    image, (upper, lower, mouth) = _draw_nose_and_lips(image, labels, face, canvas)
    return image, labels, face, FaceMasks(skin_mask, upper, lower, mouth)


def _apply_lipstick(source: np.ndarray, face: Face, masks: FaceMasks, look: Look, canvas: Canvas) -> np.ndarray:
    lips = _blur(np.clip(masks.upper_lip + masks.lower_lip, 0, 1) * (1 - masks.mouth), 1.0 * canvas.scale)
    natural = max(float(face.lip_natural.mean()), 1e-3)

    def blend(source: np.ndarray, lips: np.ndarray) -> np.ndarray:
        shade = source.mean(axis=2, keepdims=True) / natural
        lip_color = np.clip(np.asarray(look.lipstick, np.float32) * (0.6 + 0.4 * shade), 0, 1)
        return source * (1 - look.lipstick_alpha * lips) + lip_color * look.lipstick_alpha * lips

    return _in_box(source, lips, blend)


def _tint(target: np.ndarray, look: Look, alpha: float, mask: np.ndarray) -> np.ndarray:
    """The eyeshadow as a multiply blend, which keeps the shading under it."""
    shadow = np.asarray(look.eyeshadow, np.float32)
    return _in_box(target, mask, lambda target, m: target * (1 - alpha * m) + shadow * target * 1.6 * alpha * m)


def _eyeshadow(target: np.ndarray, eye_here: np.ndarray, ex: float, side: int, face: Face, look: Look,
               canvas: Canvas) -> np.ndarray:
    """Shadow on the lid (reaching ``shadow_height`` toward the brow) and, if the look has it, under the lashes."""
    S, f, s, height = canvas.at, face, canvas.scale, look.shadow_height
    lid = canvas.mask(lambda d: d.ellipse(
        S(*_ellipse(ex + side * 2, f.eye_y - f.eye_ry * 0.9 * height, f.eye_rx * 1.25, f.eye_ry * 1.6 * height)),
        fill=255))
    outside_eye = 1 - _blur(eye_here, 0.5 * s)
    target = _tint(target, look, look.eyeshadow_alpha, _blur(lid, 4 * s) * outside_eye)
    if look.lower_shadow_alpha > 0:
        lashes = canvas.mask(lambda d: d.ellipse(
            S(*_ellipse(ex + side * 2, f.eye_y + f.eye_ry * 0.45, f.eye_rx * 1.1, f.eye_ry * 0.9)), fill=255))
        target = _tint(target, look, look.lower_shadow_alpha, _blur(lashes, 2.5 * s) * outside_eye)
    return target


def _eyeliner(target: np.ndarray, ex: float, side: int, face: Face, look: Look, canvas: Canvas) -> np.ndarray:
    """A liner along the upper lid, flicked past the outer corner by ``wing``."""
    S, f, s = canvas.at, face, canvas.scale
    arc = _eye_arc(ex, f.eye_y - 0.6, f.eye_rx, f.eye_ry)
    tip = (ex + side * (f.eye_rx + 7 * look.wing), f.eye_y - f.eye_ry - 3 * look.wing)
    outer = arc[-1] if side > 0 else arc[0]

    def draw(d: ImageDraw.ImageDraw) -> None:
        d.line([tuple(S(*p)) for p in arc], fill=255, width=int(2.2 * s * look.liner_width), joint="curve")
        if look.wing > 0:
            d.line([tuple(S(*outer)), tuple(S(*tip))], fill=255, width=int(2.0 * s * look.liner_width))

    return _blend(target, look.eyeliner, look.eyeliner_alpha * canvas.mask(draw))


def _apply_eye_and_cheek_makeup(target: np.ndarray, labels: np.ndarray, face: Face, masks: FaceMasks,
                                look: Look, canvas: Canvas) -> np.ndarray:
    """Eyeshadow, eyeliner and blush on each side."""
    S, f, s = canvas.at, face, canvas.scale
    for side in (-1, 1):
        ex = f.cx + side * f.eye_dx
        eye_here = (labels == LABELS["left_eye" if side < 0 else "right_eye"]).astype(np.float32)
        target = _eyeshadow(target, eye_here, ex, side, face, look, canvas)
        target = _eyeliner(target, ex, side, face, look, canvas)
        cheek = canvas.mask(lambda d, ex=ex: d.ellipse(
            S(*_ellipse(ex + side * 4, (f.eye_y + f.mouth_y) / 2 + 2, 15, 10)), fill=255))
        target = _blend(target, look.blush, look.blush_alpha * _blur(cheek, 7 * s) * masks.skin)
    return target


def render_looks(index: int, seed: int = 0, size: int = 256, looks: tuple[Look, ...] = (BERRY,)
                 ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """(source, a target per look, labels): one face drawn once, then each of ``looks`` on it; float32 HxWx3
    images in [0, 1] and a uint8 label map.

    Shapes are drawn at 2x and box-downsampled, so edges are anti-aliased like a photo. The
    random draws happen in a fixed order (background, face, lighting, brows, noise), so every
    face is a pure function of (seed, index).
    """
    rng = np.random.default_rng([seed, index])
    canvas = Canvas(size * 2)
    image, labels, face, masks = _draw_face(rng, canvas)
    source = np.clip(image + rng.normal(0, 0.008, image.shape).astype(np.float32), 0, 1)

    def down(img: np.ndarray) -> np.ndarray:
        return img.reshape(size, 2, size, 2, 3).mean(axis=(1, 3))

    # A look draws nothing random, on top of the finished source face: every look has the same faces.
    targets = [down(np.clip(_apply_eye_and_cheek_makeup(_apply_lipstick(source, face, masks, look, canvas), labels,
                                                        face, masks, look, canvas), 0, 1)) for look in looks]
    return down(source), targets, labels[::2, ::2].copy()


def render_pair(index: int, seed: int = 0, size: int = 256, look: Look = BERRY):
    """(source, target, labels) of one face with ``look`` (:func:`render_looks`)."""
    source, (target,), labels = render_looks(index, seed, size, (look,))
    return source, target, labels


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _write_pair(job: tuple[tuple[tuple[str, Path], ...], int, int, int]) -> None:
    """One face and every look of ``job`` on it, into each look's folder; looks whose pair is complete are left."""
    folders, index, size, seed = job
    name = f"image_{index:04d}.png"
    missing = missing_looks(folders, name)
    if not missing:
        return
    source, targets, labels = render_looks(index, seed=seed, size=size, looks=tuple(LOOKS[look] for look, _ in missing))
    for (_, out), target in zip(missing, targets, strict=True):
        save_pair(out, name, source, target, labels)


# The three folders of a pair folder, each holding one file of every pair under the same name.
PAIR_PARTS = ("source", "target", "mask")


def pair_folders(folders: dict[str, Path]) -> dict[str, Path]:
    """Each look's pair folder (look name -> folder) with its source/, target/ and mask/ made; an unknown look
    fails here, naming the catalogue, before anything is drawn."""
    for look in folders:
        look_named(look)
    folders = {look: Path(out) for look, out in folders.items()}
    for out in folders.values():
        for sub in PAIR_PARTS:
            (out / sub).mkdir(parents=True, exist_ok=True)
    return folders


def missing_looks(folders: tuple[tuple[str, Path], ...], name: str) -> list[tuple[str, Path]]:
    """The (look, folder) pairs whose pair ``name`` is not complete yet (complete ones are kept)."""
    return [(look, out) for look, out in folders
            if not all((out / sub / name).exists() for sub in PAIR_PARTS)]


# zlib's fastest level: 6x quicker to write than PIL's default (7 against 42 ms a 256 px face) for 15% more
# bytes; writing was half of the built-in set's rendering time.
PNG_LEVEL = 1


def save_pair(out: Path, name: str, source: np.ndarray, target: np.ndarray, labels: np.ndarray) -> None:
    """A rendered pair's three files (label map first, the source and target last), each written whole."""
    for sub, array in (("mask", labels), ("source", to_uint8(source)), ("target", to_uint8(target))):
        with atomic_path(out / sub / name) as tmp:  # a killed run never leaves a half-written pair
            Image.fromarray(array).save(tmp, format="PNG", compress_level=PNG_LEVEL)


def write_looks(folders: dict[str, Path], n: int, size: int = 256, seed: int = 0, workers: int | None = None
                ) -> dict[str, Path]:
    """Render ``n`` faces, each drawn once with every look of ``folders`` (look name -> its pair folder) on it;
    pairs already complete are kept (re-runs are cheap)."""
    folders = pair_folders(folders)
    jobs = [(tuple(folders.items()), index, size, seed) for index in range(1, n + 1)]
    render_jobs(_write_pair, jobs, f"rendering {n} synthetic faces x {len(folders)} look(s)", workers)
    return folders


def write_dataset(out: Path, n: int, size: int = 256, seed: int = 0, workers: int | None = None,
                  look: str = DEFAULT_LOOK) -> Path:
    """Render ``n`` pairs of ``look`` (a name in train.looks.LOOKS) into ``out``; pairs already complete are kept."""
    return write_looks({look: out}, n, size, seed, workers)[look]


def render_jobs(write_pair, jobs: list, description: str, workers: int | None) -> None:
    """Run ``write_pair`` (a module-level function, for the spawned workers) on every job, with a
    progress bar: in this process for one worker, else in a pool of ``workers`` (default: up to 4)."""
    workers = workers or min(4, os.cpu_count() or 1)
    progress = dict(total=len(jobs), desc=description, unit="face")
    if workers == 1:
        for job in tqdm(jobs, **progress):
            write_pair(job)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for _ in tqdm(pool.imap_unordered(write_pair, jobs, chunksize=8), **progress):
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/synthetic"), help="output folder")
    parser.add_argument("--n", type=int, default=800, help="number of pairs")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--look", choices=list(LOOKS), default=DEFAULT_LOOK,
                        help="the look (train/looks; default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_dataset(args.out, args.n, args.size, args.seed, look=args.look)
    log.info("wrote %d pairs to %s (source/, target/, mask/)", args.n, args.out)


if __name__ == "__main__":
    main()
