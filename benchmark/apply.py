"""Put the learned makeup on photos with any TinyBeauty model file.

Usage:
    python -m benchmark.apply --model artifacts/tinybeauty.onnx face1.jpg face2.png --out made_up/
    python -m benchmark.apply --model tinybeauty_model/tinybeauty_best_psnr.pt photos/*.jpg --out out/ --side-by-side

Like the official demo, the model runs at its input size (256x256): the face is resized down,
the predicted residual (made-up minus input) is upsampled to the photo's resolution and added
to the full-resolution photo, so a 1024x1024 face keeps its detail. Photos should be aligned
faces (FFHQ-style crops), as the model was trained on.

Writes OUT/NAME_makeup.png (same size; RGBA keeps its alpha, grayscale becomes RGB since makeup
adds colour) and, with --side-by-side, OUT/NAME_before_after.png. One bad file does not stop
the others; the exit code is 1 if any failed, 2 if the model cannot be loaded.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from benchmark.runtimes import ModelFileError, load_runner
from export.common import Runner, RuntimeUnavailable, silence_known_noise
from models.atomic import atomic_path
from models.checkpoint import CheckpointError
from train.data import DataError, open_image

log = logging.getLogger("apply")


def made_up_full_resolution(runner: Runner, photo: np.ndarray, model_size: int) -> np.ndarray:
    """photo: H x W x 3 float in [0, 1]. Runs the model at model_size, adds the upsampled residual."""
    full = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    small = F.interpolate(full, size=(model_size, model_size), mode="bilinear", antialias=True, align_corners=False)
    made_up_small = torch.from_numpy(runner(small.clamp(0, 1).numpy()))
    residual = F.interpolate(made_up_small - small, size=full.shape[-2:], mode="bilinear", align_corners=False)
    return (full + residual).clamp(0, 1)[0].permute(1, 2, 0).numpy()


def apply_to_file(runner: Runner, path: Path, out_dir: Path, model_size: int, side_by_side: bool) -> list[Path]:
    image = open_image(path, None)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    image = image.convert("RGBA" if has_alpha else "RGB")
    alpha = image.getchannel("A") if has_alpha else None
    rgb = np.asarray(image.convert("RGB"), np.float32) / 255.0
    made_up = (made_up_full_resolution(runner, rgb, model_size) * 255).round().astype(np.uint8)
    result = Image.fromarray(made_up, "RGB")
    if alpha is not None:
        result.putalpha(alpha)
    written = [_save(result, out_dir / f"{path.stem}_makeup.png")]
    if side_by_side:
        before = image.convert(result.mode)
        pair = Image.new(result.mode, (before.width * 2, before.height))
        pair.paste(before, (0, 0))
        pair.paste(result, (before.width, 0))
        written.append(_save(pair, out_dir / f"{path.stem}_before_after.png"))
    return written


def _save(image: Image.Image, path: Path) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.apply", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a .onnx, .ptl, .mlmodel or .pt checkpoint")
    parser.add_argument("images", type=Path, nargs="+", help="photos of aligned faces")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--model-size", type=int, default=256, help="the model's input size (default: %(default)s)")
    parser.add_argument("--side-by-side", action="store_true", help="also write a before | after image")
    args = parser.parse_args(argv)
    silence_known_noise()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        runner, runtime = load_runner(args.model)
    except (RuntimeUnavailable, CheckpointError, ModelFileError, FileNotFoundError) as error:
        log.error("cannot use %s: %s", args.model, error)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for index, path in enumerate(args.images, start=1):
        try:
            written = apply_to_file(runner, path, args.out, args.model_size, args.side_by_side)
            log.info("[%d/%d] %s -> %s", index, len(args.images), path, ", ".join(str(p) for p in written))
        except (DataError, OSError) as error:
            failed += 1
            log.error("[%d/%d] skipped %s: %s", index, len(args.images), path, error)
    log.info("%d of %d images done with %s (%s)", len(args.images) - failed, len(args.images), args.model, runtime)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
