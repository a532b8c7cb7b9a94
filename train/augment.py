"""Augmentation for training crops: colour and geometry changes drawn per pair and applied
identically to its source and target (and, for geometry, its eye mask), so the pair still shows
the same makeup on the same face (``--augment``; ``train/dataset.py: PairDataset`` draws).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

# Small on purpose: the style is one colour, so large hue or brightness changes would teach
# the network other makeup; a face still reads as a face at +-10% scale and +-10 degrees.
# (name, neutral value, +- range) of each value drawn, uniformly, in draw order.
# No gamma: a power of every value cost as much as the rest of the colour change together.
PHOTOMETRIC_DRAWS = (("brightness", 1.0, 0.10), ("contrast", 1.0, 0.10), ("saturation", 1.0, 0.10),
                     ("hue_degrees", 0.0, 5.0))
GEOMETRIC_DRAWS = (("scale", 1.0, 0.10), ("rotation_degrees", 0.0, 10.0),
                   ("shift_x", 0.0, 0.05), ("shift_y", 0.0, 0.05))  # shifts: fractions of the side
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
AUGMENT_STREAM = 1  # the third seed word of the augmentation's own random stream
BLEND_STREAM = 2  # ... and of a catalogue's blends of looks (train/dataset.py)


def colour_matrix(saturation: float, hue_degrees: float) -> np.ndarray:
    """3x3 RGB matrix: saturation about the luma grey, then a hue rotation about the grey axis
    (Rodrigues' rotation about (1, 1, 1) / sqrt(3)). In numpy: 3x3 torch ops cost more here."""
    saturate = saturation * np.eye(3) + (1 - saturation) * np.tile(LUMA, (3, 1))
    angle = math.radians(hue_degrees)
    cross = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / math.sqrt(3)
    rotate = math.cos(angle) * np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) / 3 * np.ones((3, 3))
    return (rotate @ saturate).astype(np.float32)


def photometric(images: list[torch.Tensor], draw: dict[str, float]) -> list[torch.Tensor]:
    """One colour transform, a function of each pixel alone, on images (3 x H x W in [0, 1]):
    saturation and hue (colour_matrix), contrast about the first image's mean luma, brightness,
    a clamp to [0, 1] (``draw``: the values named in PHOTOMETRIC_DRAWS). One matrix product and
    offset per image, in numpy on the channels-last pixels (twice as fast as torch's for a
    3 x 3 matrix); each image on its own, so equal images stay bit-equal."""
    pixels = [image.permute(1, 2, 0).numpy().reshape(-1, 3) for image in images]
    pivot = float((pixels[0] @ LUMA).mean())  # the source's, for every image; a column mean is 20x slower
    gain = draw["brightness"] * draw["contrast"]
    matrix = (gain * colour_matrix(draw["saturation"], draw["hue_degrees"])).T.astype(np.float32)
    offset = np.float32(draw["brightness"] * (1 - draw["contrast"]) * pivot)
    changed = []
    for image, values in zip(images, pixels, strict=True):
        mixed = values @ matrix
        mixed += offset
        np.clip(mixed, 0.0, 1.0, out=mixed)
        changed.append(torch.from_numpy(mixed.reshape(image.shape[1], image.shape[2], 3)).permute(2, 0, 1))
    return changed


def warp_window(arrays: list[np.ndarray], window: tuple[int, int, int], draw: dict[str, float],
                flip: bool) -> torch.Tensor:
    """The square ``window`` (top, left, side) of ``arrays`` (H x W x C uint8 each, one image),
    zoomed, rotated about its centre, shifted and mirrored (``draw``: the values named in
    GEOMETRIC_DRAWS), resampled bilinearly; what falls outside the image is its reflection.
    Returns their channels stacked, float in [0, 1], C x side x side."""
    (top, left, side), (height, width) = window, arrays[0].shape[:2]
    angle, scale = math.radians(draw["rotation_degrees"]), draw["scale"]
    centre_x, centre_y = left + side * (0.5 + draw["shift_x"]), top + side * (0.5 + draw["shift_y"])
    # Only the part of the image the window can reach is converted to float (2 px for bilinear's
    # neighbours): a quarter of the cost at 128 px crops of 256 px images.
    reach = side / 2 / scale * (abs(math.cos(angle)) + abs(math.sin(angle))) + 2
    x0, x1 = max(0, math.floor(centre_x - reach)), min(width, math.ceil(centre_x + reach))
    y0, y1 = max(0, math.floor(centre_y - reach)), min(height, math.ceil(centre_y + reach))
    # Channels stay last in memory (a permuted view): grid_sample reads it as fast, and no copy is made.
    region = np.concatenate([a[y0:y1, x0:x1] for a in arrays], axis=2)
    stack = torch.from_numpy(region).permute(2, 0, 1).float().div_(255.0)
    grid = affine_grid(side, (x1 - x0, y1 - y0), (centre_x - x0, centre_y - y0), angle, scale, flip)
    return torch.nn.functional.grid_sample(stack[None], grid, mode="bilinear", padding_mode="reflection",
                                           align_corners=False)[0]


@functools.lru_cache(maxsize=4)
def _output_pixels(side: int) -> np.ndarray:
    """(x, y, 1) of each output pixel centre of a side x side square, in [-1, 1]: side^2 x 3 float32."""
    axis = (np.arange(side, dtype=np.float32) + 0.5) * (2 / side) - 1
    ys, xs = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([xs, ys, np.ones_like(xs)], axis=-1).reshape(-1, 3)


def affine_grid(side: int, size: tuple[int, int], centre: tuple[float, float], angle: float, scale: float,
                flip: bool) -> torch.Tensor:
    """grid_sample's 1 x side x side x 2 grid (input coordinates in [-1, 1], align_corners=False) for
    an output square centred on ``centre`` (pixels) of an input of ``size`` (width, height), rotated
    by ``angle``, zoomed by ``scale``, mirrored if ``flip``: torch's affine_grid of that matrix, as
    one numpy product with cached pixel centres (4x faster than torch at this size)."""
    cos, sin, mirror = math.cos(angle), math.sin(angle), -1.0 if flip else 1.0
    fx, fy = side / size[0] / scale, side / size[1] / scale
    theta = np.array([[mirror * fx * cos, mirror * fy * sin],
                      [-fx * sin, fy * cos],
                      [2 * centre[0] / size[0] - 1, 2 * centre[1] / size[1] - 1]], np.float32)
    return torch.from_numpy(_output_pixels(side) @ theta).reshape(1, side, side, 2)


def draw_values(rng: np.random.Generator, draws: tuple[tuple[str, float, float], ...]) -> dict[str, float]:
    """One value per (name, neutral, range) of ``draws``, uniform in neutral +- range, from ``rng``."""
    limits = np.array([limit for _, _, limit in draws])
    values = rng.uniform(-limits, limits)
    return {name: neutral + float(value) for (name, neutral, _), value in zip(draws, values, strict=True)}
