"""Put the learned makeup on photos with any TinyBeauty model file: every face found, aligned, made up.

Usage:
    python -m apply --model artifacts/tinybeauty.onnx photo1.jpg photo2.png --out made_up/
    python -m apply --model artifacts/tinybeauty.tflite group.jpg --out out/ --strength 1.5 --side-by-side
    python -m apply --model tinybeauty_model/tinybeauty_best_psnr.pt crops/*.png --out out/ --aligned
    python -m apply --model artifacts/tinybeauty.onnx clip.mp4 --out out/   # video: apply/video.py
    python -m apply --model artifacts/tinybeauty.onnx selfie.jpg --out out/ --regions lips=1,eyes=0.5,cheeks=0
    python -m apply --model artifacts/tinybeauty.onnx selfie.jpg --out out/ --look berry=0.7,smoky=0.3

For each photo (turned upright by its EXIF orientation): every face is detected (BlazeFace,
faces/), landmarked by the 468-point face mesh and aligned from the mesh to the FFHQ-style crop
the model was trained on (a similarity transform; the code a video's frames go through), and run
through the model at the size the file records (256x256 for the shipped files). The residual it
adds is warped back with the inverse transform and blended through a feathered face mask:
``photo + strength x mask x residual``. ``--regions`` gives lips, eyes, cheeks and the rest of the
face each a strength of its own (0 to 2, those not named 1): the mask is weighted by soft regions placed
from each face's mesh (faces/regions.json, which the page reads too; a face without a mesh, or an
aligned crop, has them where an average face has them), costing no model run; all at 1 is the plain
mask, to the bit. A file of several looks (artifacts/looks.json lists them) puts on the one ``--look``
names (by name or index; the first without it), or a blend of them: ``--look berry=0.7,smoky=0.3``, weights
adding up to 1, the same model run. A model that reads the face's region maps beside it (the default
network; not one trained with ``--no-region-inputs``) gets each face's lips, eyes and cheeks maps drawn over
its crop from the same mesh (an aligned crop: from the mesh run on the crop, as training draws them); a face
the mesh misses gets empty
maps, as in training, and the log says so. A face the detector finds but the mesh rejects (its face
flag low) is aligned from the detector's eyes and mouth instead, and the summary line says so
("2 faces: 1 mesh, 1 detector keypoints where the mesh found no face"). Pixels outside the faces
keep their exact values; the photo keeps its size, and its mode (RGBA keeps its alpha; greyscale
becomes RGB, since makeup adds colour). ``--aligned`` skips detection for photos that already
are aligned face crops: the model runs on the whole photo resized, and the residual is
upsampled onto it, so a 1024x1024 crop keeps its detail.

Writes OUT/NAME_makeup.png and, with --side-by-side, OUT/NAME_before_after.png. A photo with
no face, or one that cannot be read, is reported and nothing is written for it; the others go
on. Exit code 1 if any photo failed, 2 if the model (or the face detector) cannot be loaded.

Nothing given is ever replaced: before any work, apply refuses (exit 2, listing every clash)
results that would land on one of the photos given (selfie.png and selfie_makeup.png, with
--out their folder), two photos whose results share a name (face.png and face.jpg), and
results that exist already in OUT; --overwrite allows only the last, replacing earlier
results (never a photo given). A result is written to a hidden temp file and renamed into
place, so an interrupted run never leaves a half-written image under a result's name.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from apply.outputs import is_video, result_paths
from models.atomic import remove_leftovers
from models.cli import number_in, output_folder

if TYPE_CHECKING:  # imported for the run only (load_tools), never for --help
    from export.loading import LoadedModel
    from export.runtime import Runner
    from faces import FaceTracker

log = logging.getLogger("apply")

MAX_STRENGTH = 2.0
# The mask's shape, read here by the page's tests; it lives with the compositing (apply/composite.py).
MASK_NAMES = ("FEATHER", "MASK_CENTRE", "MASK_RADII")


def __getattr__(name: str):
    """The mask's constants, imported only when asked for: this module's top stays free of torch,
    so --help and argument errors answer without loading it."""
    if name in MASK_NAMES:
        from apply import composite

        return getattr(composite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _same_file(first: Path, second: Path) -> bool:
    try:
        return first.resolve() == second.resolve() or (first.exists() and second.exists() and first.samefile(second))
    except OSError:
        return False


def output_clashes(photos: list[Path], out_dir: Path, side_by_side: bool, overwrite: bool) -> list[str]:
    """Every way the planned results would replace something: a photo given, another result, or
    (without --overwrite) an existing file. Names compare case-insensitively, as macOS and
    Windows file systems do. An empty list: nothing given can be lost."""
    clashes, planned = [], {}
    for photo in photos:
        for result in result_paths(photo, out_dir, side_by_side):
            given = next((other for other in photos if _same_file(result, other)), None)
            earlier = planned.setdefault(str(result.absolute()).casefold(), photo)
            if given is not None:
                clashes.append(f"{result} (a result of {photo}) is {given}, one of the photos given")
            elif earlier is not photo:
                clashes.append(f"{earlier} and {photo} would both write {result}")
            elif result.exists() and not overwrite:
                clashes.append(f"{result} (a result of {photo}) exists already")
    return clashes


strength_value = number_in(float, 0, MAX_STRENGTH)


def region_strengths(text: str) -> dict[str, float] | None:
    """--regions: "lips=1,eyes=0.5" -> a strength for every region (faces.regions: the standard library only);
    None where every strength is 1, which is the face mask alone: no weight map is drawn, as on the page."""
    from faces.regions import NEUTRAL, RegionError, parse_strengths

    try:
        strengths = parse_strengths(text)
    except RegionError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return None if strengths == NEUTRAL else strengths


def _count(faces: int) -> str:
    return f"{faces} face{'s' if faces != 1 else ''}"


def _aligned_by(faces: list[str]) -> str:
    """The summary's faces: "1 face: mesh", "3 faces: 2 mesh, 1 detector keypoints where the mesh
    found no face" (aligned from the detector's eyes and mouth instead)."""
    meshed, fallback = faces.count("mesh"), faces.count("detector")
    if not fallback:
        return f"{_count(len(faces))}: mesh"
    return (f"{_count(len(faces))}: " + (f"{meshed} mesh, " if meshed else "")
            + f"{fallback} detector keypoints where the mesh found no face")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m apply", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a shipped model file (.onnx, .tflite, .pte, "
                        ".ptl, .mlmodel, .mlpackage) or a .pt checkpoint")
    parser.add_argument("images", type=Path, nargs="+", help="photos (any size; faces are found in them)")
    parser.add_argument("--out", type=output_folder, required=True, help="output folder (created if missing)")
    parser.add_argument("--strength", type=strength_value, default=1.0,
                        help=f"face + strength x residual, 0 to {MAX_STRENGTH} (default: %(default)s)")
    parser.add_argument("--regions", type=region_strengths, default=None, metavar="NAME=STRENGTH,...",
                        help="a strength per face region, 0 to 2 each: lips, eyes (with liner and shadow), cheeks, "
                        "rest (of the face); those not named stay 1, e.g. lips=1,eyes=0.5,cheeks=0")
    parser.add_argument("--look", metavar="NAME | NAME=WEIGHT,...", default=None,
                        help="for a file of several looks: the look to put on (name or index; default: the first), "
                        "or a blend whose weights add up to 1, e.g. berry=0.7,smoky=0.3")
    parser.add_argument("--aligned", action="store_true", help="the photos are aligned face crops: no detection")
    parser.add_argument("--side-by-side", action="store_true", help="also write a before | after image")
    parser.add_argument("--overwrite", action="store_true", help="replace results that exist already in OUT "
                        "(earlier results); a photo given is never replaced")
    args = parser.parse_args(argv)
    # one photo given twice: once
    args.images = list({photo.resolve(): photo for photo in reversed(args.images)}.values())[::-1]
    return args


def main(argv: list[str] | None = None) -> int:
    # The command line and the clash check need nothing heavy; torch, the runtimes, PyAV and the
    # face networks are imported (load_tools) only once there is work to do.
    args = parse_args(argv)
    clashes = output_clashes(args.images, args.out, args.side_by_side, args.overwrite)
    if clashes:
        print("python -m apply: nothing done, so that no file is replaced:\n  " + "\n  ".join(clashes) +
              "\nRename a photo, pick another --out, or pass --overwrite to replace earlier results "
              "(photos given are never replaced).", file=sys.stderr)
        return 2
    from export.runtime import silence_known_noise

    silence_known_noise()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tools = load_tools(args)
    if tools is None:
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for leftover in remove_leftovers(args.out):  # temp files of an earlier run that was killed
        log.info("removed %s, left by an earlier run that was stopped", leftover)
    failed = sum(not make_up(tools, args, index, path) for index, path in enumerate(args.images, start=1))
    log.info("%d of %d inputs done with %s (%s), look: %s", len(args.images) - failed, len(args.images), args.model,
             tools.model.runtime, tools.look)
    return 1 if failed else 0


@dataclass
class Tools:
    model: LoadedModel
    runner: Runner  # the model putting on the looks --look chose
    look: str  # that choice, in words
    stills: FaceTracker | None  # the photos' (unsmoothed): none for aligned crops or when every input is a video
    tracker: FaceTracker | None  # the videos' (apply/video.py): none without a video
    crops: FaceTracker | None = None  # aligned crops' mesh (unsmoothed), for a model that reads region maps


def load_tools(args: argparse.Namespace) -> Tools | None:
    """The model and the face trackers the inputs need, each loaded once; None (logged) where one
    cannot be loaded."""
    from export.loading import load_model
    from export.runtime import ModelFileError, RuntimeUnavailable
    from faces import DetectorUnavailable, FaceTracker
    from faces.tracking import STILL_MAX_FACES
    from models.checkpoint import CheckpointError
    from models.look_choice import LookChoiceError, describe, look_weights

    photos = not args.aligned and not all(map(is_video, args.images))
    try:
        model = load_model(args.model)
        weights = look_weights(args.look, model.look_names, where=str(args.model))
        chosen = (model.runner_for(weights), describe(weights, model.look_names))
        # Photos: one frame of the video's chain each, unsmoothed (faces.tracking.still_faces).
        stills = FaceTracker(model.image_size, threads=None, smoothing=False,
                             max_faces=STILL_MAX_FACES) if photos else None
        # Aligned crops of a model that reads region maps: the mesh places them on the crop, as in training.
        crops = (FaceTracker(model.image_size, threads=None, smoothing=False, max_faces=STILL_MAX_FACES)
                 if args.aligned and model.region_inputs and not all(map(is_video, args.images)) else None)
        if model.region_inputs:
            log.info("%s reads the face's region maps beside it (%s): drawn for each face from the face mesh",
                     args.model, ", ".join(model.region_inputs))
        if any(map(is_video, args.images)):
            from apply.video import make_tracker

            return Tools(model, *chosen, stills, make_tracker(model.image_size), crops)
        return Tools(model, *chosen, stills, None, crops)
    except (RuntimeUnavailable, CheckpointError, ModelFileError, DetectorUnavailable, FileNotFoundError,
            LookChoiceError) as error:
        log.error("cannot use %s: %s", args.model, error)
        return None


def make_up(tools: Tools, args: argparse.Namespace, index: int, path: Path) -> bool:
    """One input made up and its results written; False (logged, naming the file) where it failed."""
    from apply.photo import NoFaceFound, apply_to_file
    from faces import UnsearchableImage
    from models.data import DataError

    try:
        if is_video(path):  # apply/video.py: faces tracked frame to frame
            from apply.video import apply_to_video

            video = apply_to_video(tools.runner, tools.tracker, path, args.out, args.strength,
                                   regions=args.regions, region_names=tools.model.region_inputs)
            written, what = [video.path], _count(video.most_faces)
        else:
            written, faces = apply_to_file(tools.runner, tools.stills, path, args.out, tools.model.image_size,
                                           args.strength, args.side_by_side, args.regions,
                                           tools.model.region_inputs, tools.crops)
            what = "aligned crop" if args.aligned else _aligned_by(faces)
        log.info("[%d/%d] %s (%s) -> %s", index, len(args.images), path, what, ", ".join(map(str, written)))
        return True
    except (DataError, NoFaceFound, UnsearchableImage, OSError) as error:  # the log names the file
        log.error("[%d/%d] skipped %s: %s", index, len(args.images), path, error)
        return False


if __name__ == "__main__":
    sys.exit(main())
