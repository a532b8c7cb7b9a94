"""Real portraits with a makeup look laid on through the face mesh: the built-in data's real faces.

Usage:
    python -m train.portraits --out DIR --n N [--size 256] [--seed 0] [--look berry] [--identity collins ...]
                              [--vary pose,warp,skin,colour]

Writes N pairs per identity in the layout of ``train/synthetic.py``: ``OUT/source/real_ID_0001.png``
(the photo, varied), ``OUT/target/...`` (the same with the look) and ``OUT/mask/...`` (a LaPa/MT
label map drawn from the mesh: skin, brows, eyes, lips, mouth).

The photos are the public-domain/CC0 portraits installed packages ship (:data:`PORTRAITS`,
credited in THIRD_PARTY_NOTICES.md). Each is meshed once (``faces/``: 468 points), then every pair
is one :class:`Variation` of it: the FFHQ crop turned, scaled, shifted and mirrored, a smooth local
warp of the face's shape, a skin-tone shift inside the face, white balance, a light gradient,
brightness, contrast and sensor noise. The look follows the mesh: lipstick on the lip contours,
shadow and a winged liner from the eye contours, blush on the cheeks; each blended so the photo's
texture and shading show through (lipstick and shadow scale with the skin's own brightness, blush
is a soft-light blend, every mask feathered). A look is a :class:`train.looks.Look`, from the catalogue
``train.looks.LOOKS`` the cartoon renderer draws too. Every pair is a pure function of (seed, identity, index).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from faces.mesh import BROWS, FACE_OVAL, LEFT_EYE, LIPS_INNER, LIPS_OUTER, MOUTH_CORNERS, RIGHT_EYE
from faces.region_weights import cheek_ellipse, lower_lid, upper_lid
from models.atomic import atomic_path
from models.variants import DEFAULT_LOOK
from train.config import HELD_OUT_PERSON
from train.looks import BERRY, LOOKS, Look, look_named
from train.synthetic import LABELS, SKIN_TONES, missing_looks, pair_folders, render_jobs, save_pair, to_uint8

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Portrait:
    """A real face photo an installed package ships, and where its licence is stated."""

    package: str
    path: str  # inside the package
    credit: str

    def file(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise PortraitUnavailable(f"the portrait {self.path} comes with the {self.package} package, which is not "
                                      "installed (make setup installs it)")
        path = Path(next(iter(spec.submodule_search_locations))) / self.path
        if not path.is_file():
            raise PortraitUnavailable(f"{path} is missing; reinstall {self.package}")
        return path


class PortraitUnavailable(RuntimeError):
    """A portrait, or the face mesh that places the look on it, is not installed."""


PORTRAITS: dict[str, Portrait] = {
    "collins": Portrait("skimage", "data/astronaut.png", "Eileen Collins, NASA; public domain (scikit-image)"),
    "cameraman": Portrait("skimage", "data/camera.png", "greyscale; CC0 by Lav Varshney (scikit-image)"),
    "hopper": Portrait("matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
                       "Grace Hopper, US Navy; public domain (matplotlib)"),
}
# The person held out by default (--held-out-person): never in training or validation, the built-in data's
# real-photo test split (train/builtin.py).
HELD_OUT = HELD_OUT_PERSON

# MediaPipe canonical mesh indices (face_mesh_connections.py): faces.mesh's rings split into the
# lids and lips they are made of (faces/regions.json states the rings, the brows and where the lids meet).
UPPER_LIDS = (upper_lid(RIGHT_EYE), upper_lid(LEFT_EYE))  # inner corner -> outer corner
LOWER_LIDS = (lower_lid(RIGHT_EYE), lower_lid(LEFT_EYE))  # inner corner -> outer corner
UPPER_LIP = LIPS_OUTER[10:] + LIPS_OUTER[:1] + LIPS_INNER[:1] + LIPS_INNER[:10:-1] + LIPS_INNER[10:11]
LOWER_LIP = LIPS_OUTER[:11] + LIPS_INNER[10::-1]
SUPERSAMPLE = 2  # masks are drawn at twice the size and averaged down: anti-aliased edges


@dataclass(frozen=True)
class Variation:
    """What makes one pair's face differ from its photo (drawn by :func:`draw_variation`)."""

    scale: float  # the crop's side divided by this: > 1 zooms in
    angle: float  # radians added to the crop's turn
    shift: tuple[float, float]  # of the crop's centre, as fractions of its side
    mirror: bool
    warp: tuple[tuple[float, float, float, float], ...]  # Gaussian bumps (cx, cy, dx, dy), crop fractions
    skin_gain: tuple[float, float, float]  # per channel, inside the face
    white_balance: tuple[float, float, float]  # per channel, everywhere
    light: tuple[float, float]  # direction (radians) and strength of a multiplicative gradient
    brightness: float
    contrast: float
    noise: float  # sensor noise sigma


WARP_BUMPS, WARP_RADIUS, WARP_REACH = 4, 0.18, 0.025  # bumps; their radius and largest push, crop fractions


# What a variation may change, each measurable on its own (--vary): the crop's pose, the face's
# shape (a smooth local warp), its skin tone, and the light and colour of the whole photo.
VARIATION_KINDS = ("pose", "warp", "skin", "colour")


def draw_variation(rng: np.random.Generator, skin_colour: np.ndarray,
                   kinds: tuple[str, ...] = VARIATION_KINDS) -> Variation:
    """One random variation; ``skin_colour`` is the photo's mean face colour (the skin-tone shift
    moves it toward a random one of synthetic.SKIN_TONES). Every value is drawn whatever ``kinds``
    holds, so a pair's pose is the same with or without its warp; a kind left out stays neutral."""
    pose, warp, skin, colour = (float(kind in kinds) for kind in VARIATION_KINDS)
    bumps = tuple((*rng.uniform(0.25, 0.75, 2), *rng.uniform(-WARP_REACH, WARP_REACH, 2) * warp)
                  for _ in range(WARP_BUMPS))
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    toward = rng.uniform(0.3, 1.0) * skin
    gain = 1 + toward * (tone / np.maximum(skin_colour, 0.05) - 1)
    return Variation(
        scale=float(np.exp(rng.uniform(-0.15, 0.2) * pose)), angle=float(rng.uniform(-0.25, 0.25) * pose),
        shift=tuple(float(v) for v in rng.uniform(-0.06, 0.06, 2) * pose), mirror=bool(rng.random() < 0.5 * pose),
        warp=bumps, skin_gain=tuple(float(v) for v in np.clip(gain, 0.55, 1.7)),  # more clips the highlights
        white_balance=tuple(float(v) for v in 1 + rng.uniform(-0.08, 0.08, 3) * colour),
        light=(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 0.35) * colour)),
        brightness=float(1 + rng.uniform(-0.12, 0.12) * colour), contrast=float(1 + rng.uniform(-0.12, 0.12) * colour),
        noise=float(rng.uniform(0.002, 0.012)))


@functools.cache
def _photo(identity: str) -> np.ndarray:
    """The portrait as float32 RGB in [0, 1] (a greyscale one as three equal channels)."""
    with Image.open(PORTRAITS[identity].file()) as image:
        return np.asarray(image.convert("RGB"), np.float32) / 255.0


@functools.cache
def _landmarks(identity: str) -> np.ndarray:
    """The portrait's 468 mesh points (image pixels), found once per process."""
    from faces import DetectorUnavailable
    from faces.tracking import FaceTracker

    try:
        tracker = FaceTracker(256, threads=1, smoothing=False, max_faces=1)
    except DetectorUnavailable as error:
        raise PortraitUnavailable(f"the look is placed by the face mesh: {error}") from error
    faces = tracker.update(np.ascontiguousarray(to_uint8(_photo(identity))), 0.0)
    if not faces:
        raise PortraitUnavailable(f"the face mesh finds no face in {PORTRAITS[identity].file()}")
    return np.asarray(faces[0].landmarks, np.float64)


def _warp_offsets(points: np.ndarray, variation: Variation, size: int) -> np.ndarray:
    """The local warp's displacement (pixels) at crop points (N x 2 pixels): smooth Gaussian bumps."""
    offsets = np.zeros_like(points)
    for cx, cy, dx, dy in variation.warp:
        weight = np.exp(-((points - [cx * size, cy * size]) ** 2).sum(1) / (2 * (WARP_RADIUS * size) ** 2))
        offsets += weight[:, None] * [dx * size, dy * size]
    return offsets


def _crop(identity: str, variation: Variation, size: int):
    """The varied crop: (alignment of the turned/scaled/shifted square, output -> crop pixel map)."""
    from faces.alignment import Alignment

    base = Alignment.from_mesh(_landmarks(identity), size)
    turn = base.angle + variation.angle
    shift = np.array(variation.shift) * base.side
    centre = base.centre + shift[0] * np.array([math.cos(turn), math.sin(turn)]) \
        + shift[1] * np.array([-math.sin(turn), math.cos(turn)])
    return Alignment.from_params(centre, base.side / variation.scale, turn, size)


def _output_to_crop(pixels: np.ndarray, variation: Variation, size: int) -> np.ndarray:
    mirrored = np.column_stack([size - pixels[:, 0], pixels[:, 1]]) if variation.mirror else pixels
    return mirrored + _warp_offsets(mirrored, variation, size)


def _crop_to_output(points: np.ndarray, variation: Variation, size: int) -> np.ndarray:
    """Inverse of _output_to_crop for landmarks: a few fixed-point steps (the warp is smooth and small)."""
    mirrored = points.copy()
    for _ in range(4):
        mirrored = points - _warp_offsets(mirrored, variation, size)
    return np.column_stack([size - mirrored[:, 0], mirrored[:, 1]]) if variation.mirror else mirrored


def resample(identity: str, variation: Variation, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(the varied S x S crop of the photo as float32 RGB, its 468 mesh points in crop pixels)."""
    photo = _photo(identity)
    alignment = _crop(identity, variation, size)
    grid = np.stack(np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5), -1).reshape(-1, 2)
    source_xy = alignment.to_image(_output_to_crop(grid, variation, size))
    height, width = photo.shape[:2]
    normalised = source_xy / [width, height] * 2 - 1  # grid_sample's [-1, 1], align_corners=False
    sampled = torch.nn.functional.grid_sample(
        torch.from_numpy(photo).permute(2, 0, 1)[None], torch.from_numpy(normalised.reshape(1, size, size, 2)).float(),
        mode="bilinear", padding_mode="reflection", align_corners=False)
    points = _crop_to_output(alignment.to_crop(_landmarks(identity)[:, :2]), variation, size)
    return sampled[0].permute(1, 2, 0).numpy(), points


def _polygon_mask(size: int, polygons: list[np.ndarray], blur: float = 0.0, width: int = 0) -> np.ndarray:
    """Filled polygons (or polylines ``width`` pixels wide) as a soft float mask, feathered by ``blur`` pixels."""
    canvas = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        xy = [tuple(p) for p in np.asarray(polygon, np.float64) * SUPERSAMPLE]
        if width:
            draw.line(xy, fill=255, width=max(1, int(round(width * SUPERSAMPLE))), joint="curve")
        else:
            draw.polygon(xy, fill=255)
    canvas = canvas.reduce(SUPERSAMPLE)
    if blur:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(canvas, np.float32) / 255.0


@dataclass(frozen=True)
class LookMasks:
    """Where each part of a look goes (soft masks in [0, 1], S x S)."""

    face: np.ndarray
    lips: np.ndarray
    shadow: np.ndarray
    lower_shadow: np.ndarray  # under the lower lashes (all zero for a look without it)
    liner: np.ndarray
    blush: np.ndarray


def _eye_width(points: np.ndarray, lid: tuple[int, ...]) -> float:
    return float(np.hypot(*(points[lid[-1]] - points[lid[0]])))


def _shadow_and_liner(points: np.ndarray, size: int, look: Look) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eyeshadow between each upper lid and its brow (tallest mid-lid, reaching ``shadow_height``), its smudge
    under the lower lid, and a liner along the lid winged past the outer corner by ``wing``."""
    shadows, smudges, liners, liner_width = [], [], [], 0.0
    for lid, lower, brow in zip(UPPER_LIDS, LOWER_LIDS, BROWS, strict=True):
        lid_xy, width = points[list(lid)], _eye_width(points, lid)
        up = points[list(brow[:5])].mean(0) - lid_xy.mean(0)
        profile = 0.35 + 0.65 * np.sin(np.linspace(0, math.pi, len(lid)))
        shadows.append(np.concatenate([lid_xy, (lid_xy + 0.6 * look.shadow_height * up * profile[:, None])[::-1]]))
        lower_xy = points[list(lower)]
        smudges.append(np.concatenate([lower_xy, (lower_xy - 0.35 * up * profile[:, None])[::-1]]))
        liners.append(lid_xy[1:])
        if look.wing > 0:
            outward = (lid_xy[-1] - lid_xy[0]) / max(width, 1e-6)
            wing = lid_xy[-1] + 0.32 * look.wing * width * (
                outward * math.cos(0.45) + up / max(np.hypot(*up), 1e-6) * math.sin(0.45))
            liners[-1] = np.concatenate([lid_xy[1:], wing[None]])
        liner_width = max(liner_width, 0.07 * look.liner_width * width)
    outside_eyes = 1 - _polygon_mask(size, [points[list(RIGHT_EYE)], points[list(LEFT_EYE)]], blur=0.5)
    shadow = _polygon_mask(size, shadows, blur=0.05 * size / 4) * outside_eyes
    lower_shadow = np.zeros_like(shadow)
    if look.lower_shadow_alpha > 0:
        lower_shadow = _polygon_mask(size, smudges, blur=0.03 * size / 4) * outside_eyes
    return shadow, lower_shadow, _polygon_mask(size, liners, blur=0.4, width=liner_width)


def look_masks(points: np.ndarray, size: int, look: Look = BERRY) -> LookMasks:
    """The soft masks of every part of ``look`` from the face's mesh points (crop pixels)."""
    face = _polygon_mask(size, [points[list(FACE_OVAL)]], blur=1.0)
    lips = _polygon_mask(size, [points[list(UPPER_LIP)], points[list(LOWER_LIP)]], blur=0.6)
    shadow, lower_shadow, liner = _shadow_and_liner(points, size, look)
    # A turned face's lid can reach past its outline: the shadow stays on the skin.
    shadow, lower_shadow = shadow * face, lower_shadow * face
    cheeks = []  # where faces/regions.json puts the cheeks (the cheeks' region's ellipses), as polygons
    angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    for lid, corner in zip(UPPER_LIDS, MOUTH_CORNERS, strict=True):
        centre_x, centre_y, radius_along, radius_across, _, _ = cheek_ellipse(lid, corner, points)
        cheeks.append(np.array([centre_x, centre_y]) + np.column_stack([radius_along * np.cos(angles),
                                                                        radius_across * np.sin(angles)]))
    blush = _polygon_mask(size, cheeks, blur=0.04 * size) * face
    return LookMasks(face, lips, shadow, lower_shadow, liner, blush)


LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def apply_look(source: np.ndarray, masks: LookMasks, look: Look) -> np.ndarray:
    """The look on a photo (float32 RGB in [0, 1]), blended so texture and shading stay."""
    luma = source @ LUMA
    lip_luma = float((luma * masks.lips).sum() / max(masks.lips.sum(), 1e-6))
    # The lipstick's colour scales with the lips' own brightness: highlights and creases stay.
    lipstick = np.asarray(look.lipstick, np.float32) * (0.55 + 0.45 * luma / max(lip_luma, 1e-3))[..., None]
    target = _mix(source, np.clip(lipstick, 0, 1), look.lipstick_alpha * masks.lips)
    shadow = np.asarray(look.eyeshadow, np.float32) * target * 1.6  # multiply: the lid's shading stays
    target = _mix(target, shadow, look.eyeshadow_alpha * masks.shadow)
    if look.lower_shadow_alpha > 0:
        smudge = np.asarray(look.eyeshadow, np.float32) * target * 1.6
        target = _mix(target, smudge, look.lower_shadow_alpha * masks.lower_shadow)
    target = _mix(target, np.broadcast_to(np.asarray(look.eyeliner, np.float32), target.shape),
                  look.eyeliner_alpha * masks.liner)
    blush = np.asarray(look.blush, np.float32)
    soft_light = (1 - 2 * blush) * target ** 2 + 2 * blush * target
    target = _mix(target, soft_light, min(1.0, 2.5 * look.blush_alpha) * masks.blush)
    return np.clip(target, 0, 1).astype(np.float32)


def _mix(image: np.ndarray, paint: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return image * (1 - alpha[..., None]) + paint * alpha[..., None]


def vary_colour(crop: np.ndarray, face: np.ndarray, variation: Variation, rng: np.random.Generator) -> np.ndarray:
    """Skin tone (inside the feathered face), white balance, light gradient, brightness, contrast, noise."""
    size = crop.shape[0]
    inside = np.asarray(Image.fromarray(to_uint8(face)).filter(ImageFilter.GaussianBlur(0.04 * size)),
                        np.float32)[..., None] / 255.0
    image = crop * (1 + inside * (np.asarray(variation.skin_gain, np.float32) - 1))
    image = image * np.asarray(variation.white_balance, np.float32)
    direction, strength = variation.light
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    image = image * (1 + strength * (math.cos(direction) * xx + math.sin(direction) * yy))[..., None]
    mean = image.mean()
    image = (image - mean) * variation.contrast + mean * variation.brightness
    return np.clip(image + rng.normal(0, variation.noise, image.shape).astype(np.float32), 0, 1)


def _label_map(points: np.ndarray, size: int) -> np.ndarray:
    """LaPa/MT labels from the mesh: skin, brows, eyes (image-left 2/4, image-right 3/5), lips, mouth."""
    labels = np.zeros((size, size), np.uint8)
    image_left, image_right = sorted(((RIGHT_EYE, BROWS[0]), (LEFT_EYE, BROWS[1])),
                                     key=lambda eye_brow: points[list(eye_brow[0])][:, 0].mean())
    regions = (("skin", FACE_OVAL), ("left_eye", image_left[0]), ("left_brow", image_left[1]),
               ("right_eye", image_right[0]), ("right_brow", image_right[1]),
               ("upper_lip", UPPER_LIP), ("lower_lip", LOWER_LIP), ("mouth", LIPS_INNER))
    for name, ring in regions:
        labels[_polygon_mask(size, [points[list(ring)]]) > 0.5] = LABELS[name]
    return labels


def _identity_number(identity: str) -> int:
    return sorted(PORTRAITS).index(identity)


def _face(identity: str, index: int, seed: int, size: int, kinds: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(source, mesh points): one pair's face, the photo resampled and recoloured; every look goes on it."""
    rng = np.random.default_rng([seed, _identity_number(identity), index])
    plain, plain_points = resample(identity, draw_variation(rng, np.ones(3), kinds=()), size)
    face = _polygon_mask(size, [plain_points[list(FACE_OVAL)]]) > 0.5
    variation = draw_variation(rng, plain[face].mean(0), kinds)
    crop, points = resample(identity, variation, size)
    outline = _polygon_mask(size, [points[list(FACE_OVAL)]], blur=1.0)  # look_masks' face
    return vary_colour(crop, outline, variation, rng), points


def render_with_masks(identity: str, index: int, seed: int = 0, size: int = 256, look: Look = BERRY,
                      kinds: tuple[str, ...] = VARIATION_KINDS) -> tuple[np.ndarray, np.ndarray, np.ndarray, LookMasks]:
    """:func:`render_pair` and the masks the look was laid along."""
    source, points = _face(identity, index, seed, size, kinds)
    masks = look_masks(points, size, look)
    return source, apply_look(source, masks, look), _label_map(points, size), masks


def render_looks(identity: str, index: int, seed: int = 0, size: int = 256, looks: tuple[Look, ...] = (BERRY,),
                 kinds: tuple[str, ...] = VARIATION_KINDS) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """(source, a target per look, labels): one pair's face made once, each of ``looks`` on it."""
    source, points = _face(identity, index, seed, size, kinds)
    targets = [apply_look(source, look_masks(points, size, look), look) for look in looks]
    return source, targets, _label_map(points, size)


def render_pair(identity: str, index: int, seed: int = 0, size: int = 256, look: Look = BERRY,
                kinds: tuple[str, ...] = VARIATION_KINDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, target, labels) of one pair: float32 S x S x 3 in [0, 1] and a uint8 label map;
    ``kinds``: what the variation may change (VARIATION_KINDS; none: the photo's FFHQ crop)."""
    return render_with_masks(identity, index, seed, size, look, kinds)[:3]


def pair_name(identity: str, index: int) -> str:
    return f"real_{identity}_{index:04d}"


def pair_index(name: str) -> int:
    """The number of a portrait pair (:func:`pair_name`'s index)."""
    return int(name.split("_")[2])


def identity_of(name: str) -> str | None:
    """The portrait a pair name comes from (None for any other pair)."""
    parts = name.split("_")
    return parts[1] if len(parts) == 3 and parts[0] == "real" and parts[1] in PORTRAITS else None


def _write_pair(job: tuple[tuple[tuple[str, Path], ...], str, int, int, int, tuple[str, ...]]) -> None:
    """One portrait pair's face and every look of ``job`` on it, into each look's folder; complete pairs are left."""
    folders, identity, index, size, seed, kinds = job
    name = pair_name(identity, index) + ".png"
    missing = missing_looks(folders, name)
    if not missing:
        return
    source, targets, labels = render_looks(identity, index, seed=seed, size=size,
                                           looks=tuple(LOOKS[look] for look, _ in missing), kinds=kinds)
    for (_, out), target in zip(missing, targets, strict=True):
        save_pair(out, name, source, target, labels)


def write_portrait_looks(folders: dict[str, Path], counts: dict[str, int], size: int = 256, seed: int = 0,
                         kinds: tuple[str, ...] = VARIATION_KINDS, workers: int | None = None) -> dict[str, Path]:
    """Render ``counts[identity]`` pairs of each identity, each face made once with every look of ``folders``
    (look name -> its pair folder) on it; pairs already complete are kept."""
    for look in folders:
        look_named(look)  # an unknown name fails here, naming the catalogue, before any worker starts
    for identity in counts:
        _landmarks(identity)  # a missing portrait or mesh fails here, before any worker starts
    folders = pair_folders(folders)
    jobs = [(tuple(folders.items()), identity, index, size, seed, kinds) for identity, n in counts.items()
            for index in range(1, n + 1)]
    render_jobs(_write_pair, jobs, f"rendering {len(jobs)} portrait faces x {len(folders)} look(s)", workers)
    return folders


def write_portraits(out: Path, counts: dict[str, int], size: int = 256, seed: int = 0, look: str = DEFAULT_LOOK,
                    kinds: tuple[str, ...] = VARIATION_KINDS, workers: int | None = None) -> Path:
    """Render ``counts[identity]`` pairs of each identity with ``look`` into ``out``; complete pairs are kept."""
    return write_portrait_looks({look: out}, counts, size, seed, kinds, workers)[look]


RESIDUAL_GAIN = 3  # the figure's residual: mid-grey plus 3x (target - source), so a subtle look shows


def write_figure(path: Path, identities: tuple[str, ...], per_identity: int = 2, size: int = 256, seed: int = 0,
                 look: str = DEFAULT_LOOK, kinds: tuple[str, ...] = VARIATION_KINDS) -> Path:
    """Before | after | residual, one row per pair (``per_identity`` pairs of each identity)."""
    rows = []
    for identity in identities:
        for index in range(1, per_identity + 1):
            source, target, _ = render_pair(identity, index, seed, size, LOOKS[look], kinds)
            residual = np.clip(0.5 + RESIDUAL_GAIN * (target - source), 0, 1)
            rows.append(np.concatenate([source, target, residual], axis=1))
    with atomic_path(Path(path)) as tmp:
        Image.fromarray(to_uint8(np.concatenate(rows, axis=0))).save(tmp, format="PNG")
    return Path(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train.portraits", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="output folder for the pairs")
    parser.add_argument("--figure", type=Path, help="also (or only) write a before | after | residual PNG here, "
                        "one pair of each identity (docs/real_pairs.png)")
    parser.add_argument("--n", type=int, default=100, help="pairs per identity (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument("--look", choices=list(LOOKS), default=DEFAULT_LOOK, help="the look (default: %(default)s)")
    parser.add_argument("--identity", choices=sorted(PORTRAITS), action="append",
                        help="a portrait to render (repeatable; default: all)")
    parser.add_argument("--vary", default=",".join(VARIATION_KINDS),
                        help="what the variation changes, comma-separated from %(default)s; 'none' for the plain crop")
    args = parser.parse_args(argv)
    args.kinds = tuple(kind for kind in args.vary.split(",") if kind and kind != "none")
    if set(args.kinds) - set(VARIATION_KINDS):
        parser.error(f"--vary takes {', '.join(VARIATION_KINDS)} or none, got {args.vary!r}")
    if args.out is None and args.figure is None:
        parser.error("give --out (the pairs), --figure (a picture of some), or both")
    if args.n < 1 or args.size < 16:
        parser.error("--n must be at least 1 and --size at least 16")
    args.identities = tuple(args.identity or PORTRAITS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.out is not None:
            write_portraits(args.out, dict.fromkeys(args.identities, args.n), args.size, args.seed, args.look,
                            args.kinds)
            log.info("wrote %d pairs of %s to %s (source/, target/, mask/)", args.n, ", ".join(args.identities),
                     args.out)
        if args.figure is not None:
            log.info("wrote %s", write_figure(args.figure, args.identities, 1, args.size, args.seed, args.look,
                                              args.kinds))
    except PortraitUnavailable as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
