"""Put the learned makeup on photos with any TinyBeauty model file: every face found, aligned, made up.

Usage:
    python -m apply --model artifacts/tinybeauty.onnx photo1.jpg photo2.png --out made_up/
    python -m apply --model artifacts/tinybeauty.tflite group.jpg --out out/ --strength 1.5 --side-by-side
    python -m apply --model tinybeauty_model/tinybeauty_best_psnr.pt crops/*.png --out out/ --aligned

For each photo (turned upright by its EXIF orientation): every face is detected with its
landmarks (BlazeFace, faces/), aligned to the FFHQ-style crop the model was trained on
(a similarity transform from the eyes and the mouth), and run through the model at the size
the file records (256x256 for the shipped files). The residual it adds is warped back with the inverse transform and blended through
a feathered face mask: ``photo + strength x mask x residual``. Pixels outside the faces keep
their exact values; the photo keeps its size, and its mode (RGBA keeps its alpha; greyscale
becomes RGB, since makeup adds colour). ``--aligned`` skips detection for photos that already
are aligned face crops: the model runs on the whole photo resized, and the residual is
upsampled onto it, so a 1024x1024 crop keeps its detail.

Writes OUT/NAME_makeup.png and, with --side-by-side, OUT/NAME_before_after.png. A photo with
no face, or one that cannot be read, is reported and nothing is written for it; the others go
on. Exit code 1 if any photo failed, 2 if the model (or the face detector) cannot be loaded.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from export.runtime import (
    ModelFileError,
    Runner,
    RuntimeUnavailable,
    load_model,
    silence_known_noise,
)
from faces import Alignment, DetectorUnavailable, FaceDetector
from models.atomic import atomic_path
from models.checkpoint import CheckpointError
from models.data import DataError, open_photo

log = logging.getLogger("apply")

MAX_STRENGTH = 2.0
# The feathered face mask, in fractions of the aligned crop: an ellipse over the face (FFHQ crops
# put the eyes at ~0.45 and the mouth at ~0.7 of the height) that fades to zero over FEATHER.
MASK_CENTRE, MASK_RADII, FEATHER = (0.5, 0.55), (0.36, 0.44), 0.12


class NoFaceFound(ValueError):
    """A photo in which the detector found no face."""


def face_mask(size: int) -> torch.Tensor:
    """1 x 1 x S x S feathered ellipse: 1 on the face, 0 from its edge outwards."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    radius = torch.sqrt(((u - MASK_CENTRE[0]) / MASK_RADII[0]) ** 2 + ((v - MASK_CENTRE[1]) / MASK_RADII[1]) ** 2)
    ramp = ((1 - radius) / FEATHER).clamp(0, 1)
    return (ramp * ramp * (3 - 2 * ramp))[None, None]  # smoothstep


def _sample(image: torch.Tensor, points_xy: np.ndarray, out_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear samples of a 1 x C x H x W image at continuous pixel coordinates (zeros outside)."""
    height, width = image.shape[-2:]
    grid = torch.from_numpy(points_xy.astype(np.float32)).view(1, *out_hw, 2)
    grid = grid / torch.tensor([width, height], dtype=torch.float32) * 2 - 1
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _pixel_centres(x0: int, y0: int, x1: int, y1: int, step: float = 1.0) -> np.ndarray:
    xs = np.arange(x0, x1, step) + step / 2
    ys = np.arange(y0, y1, step) + step / 2
    grid_x, grid_y = np.meshgrid(xs, ys)
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)


def made_up_faces(runner: Runner, photo: torch.Tensor, alignments: list[Alignment], strength: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """photo: 1 x 3 x H x W in [0, 1]. Returns (made-up photo, mask coverage), same size."""
    height, width = photo.shape[-2:]
    result, coverage = photo.clone(), torch.zeros(1, 1, height, width)
    mask = face_mask(alignments[0].size) if alignments else None
    for alignment in alignments:
        size = alignment.size
        # Supersample the crop when the face is larger than the crop (no aliasing), then average.
        factor = max(1, min(4, math.ceil(np.hypot(*alignment.x_axis) / size)))
        points = alignment.to_image(_pixel_centres(0, 0, size, size, 1 / factor))
        crop = F.avg_pool2d(_sample(result, points, (size * factor, size * factor)), factor).clamp(0, 1)
        residual = torch.from_numpy(np.asarray(runner(crop.numpy()), np.float32)) - crop
        x0, y0, x1, y1 = alignment.image_bounds(width, height)
        if x1 <= x0 or y1 <= y0:
            continue
        crop_points = alignment.to_crop(_pixel_centres(x0, y0, x1, y1))
        # Sample in crop pixel units: _sample expects coordinates over an image of the crop's size.
        back = _sample(torch.cat([residual * mask, mask], dim=1), crop_points, (y1 - y0, x1 - x0))
        result[..., y0:y1, x0:x1] = (result[..., y0:y1, x0:x1] + strength * back[:, :3]).clamp(0, 1)
        coverage[..., y0:y1, x0:x1] = torch.maximum(coverage[..., y0:y1, x0:x1], back[:, 3:])
    return result, coverage


def made_up_aligned(runner: Runner, photo: torch.Tensor, model_size: int, strength: float) -> torch.Tensor:
    """An already aligned crop: the model at model_size, its residual upsampled onto the photo."""
    small = F.interpolate(photo, size=(model_size, model_size), mode="bilinear", antialias=True, align_corners=False)
    small = small.clamp(0, 1)
    residual = torch.from_numpy(np.asarray(runner(small.numpy()), np.float32)) - small
    residual = F.interpolate(residual, size=photo.shape[-2:], mode="bilinear", align_corners=False)
    return (photo + strength * residual).clamp(0, 1)


def apply_to_file(runner: Runner, detector: FaceDetector | None, path: Path, out_dir: Path, model_size: int,
                  strength: float, side_by_side: bool) -> tuple[list[Path], int]:
    """Returns (files written, faces made up). Raises DataError / NoFaceFound before writing anything."""
    image = open_photo(path)  # upright by EXIF, 8 bits per channel, RGB or RGBA
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    rgb = image.convert("RGB")
    original = np.asarray(rgb)
    photo = torch.from_numpy(original.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    if detector is None:
        made_up, outside, faces = made_up_aligned(runner, photo, model_size, strength), None, 1
    else:
        faces_found = detector(rgb)
        if not faces_found:
            raise NoFaceFound(f"no face found in {path}; nothing written for it (if it is already an aligned "
                              "face crop, pass --aligned)")
        alignments = [Alignment.from_face(face, model_size) for face in faces_found]
        made_up, coverage = made_up_faces(runner, photo, alignments, strength)
        outside, faces = (coverage[0, 0] <= 0).numpy(), len(faces_found)
    pixels = (made_up[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    if outside is not None:
        pixels[outside] = original[outside]  # exactly the photo wherever no face mask reaches
    result = Image.fromarray(pixels, "RGB")
    if alpha is not None:
        result.putalpha(alpha)
    written = [_save(result, out_dir / f"{path.stem}_makeup.png")]
    if side_by_side:
        pair = Image.new(result.mode, (image.width * 2, image.height))
        pair.paste(image.convert(result.mode), (0, 0))
        pair.paste(result, (image.width, 0))
        written.append(_save(pair, out_dir / f"{path.stem}_before_after.png"))
    return written, faces


def _save(image: Image.Image, path: Path) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def strength_value(text: str) -> float:
    value = float(text)
    if not 0 <= value <= MAX_STRENGTH:
        raise argparse.ArgumentTypeError(f"strength must be between 0 and {MAX_STRENGTH}, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apply", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a shipped model file (.onnx, .tflite, .pte, "
                        ".ptl, .mlmodel, .mlpackage) or a .pt checkpoint")
    parser.add_argument("images", type=Path, nargs="+", help="photos (any size; faces are found in them)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--strength", type=strength_value, default=1.0,
                        help=f"face + strength x residual, 0 to {MAX_STRENGTH} (default: %(default)s)")
    parser.add_argument("--aligned", action="store_true", help="the photos are aligned face crops: no detection")
    parser.add_argument("--side-by-side", action="store_true", help="also write a before | after image")
    args = parser.parse_args(argv)
    silence_known_noise()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        model = load_model(args.model)
        detector = None if args.aligned else FaceDetector()
    except (RuntimeUnavailable, CheckpointError, ModelFileError, DetectorUnavailable, FileNotFoundError) as error:
        log.error("cannot use %s: %s", args.model, error)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for index, path in enumerate(args.images, start=1):
        try:
            written, faces = apply_to_file(model.runner, detector, path, args.out, model.image_size,
                                           args.strength, args.side_by_side)
            what = "aligned crop" if args.aligned else f"{faces} face{'s' if faces != 1 else ''}"
            log.info("[%d/%d] %s (%s) -> %s", index, len(args.images), path, what, ", ".join(map(str, written)))
        except (DataError, NoFaceFound, OSError) as error:
            failed += 1
            log.error("[%d/%d] skipped %s: %s", index, len(args.images), path, error)
    log.info("%d of %d photos done with %s (%s)", len(args.images) - failed, len(args.images), args.model, model.runtime)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
