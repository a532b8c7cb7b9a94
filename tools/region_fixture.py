"""Per-region strength's recorded faces and its template (faces/regions.json, faces/region_weights.py).

Usage:
    python -m tools.region_fixture             # writes tests/traces/regions/*.json
    python -m tools.region_fixture --template  # prints the template shapes for faces/regions.json

The fixtures are real faces' meshes (public-domain portraits the installed packages ship, through
``faces.still_faces``), in fractions of their model crop, with the shapes and the weight maps
faces.region_weights gives them for a few strength settings, the region masks a region-input network reads
beside the face (``region_masks``: lips, eyes, cheeks, each its own soft mask), and the template's for a
face without a mesh. ``web/test/regions.test.mjs`` checks the page's regions.mjs against them;
tests/faces/test_face_regions.py checks they are still what Python gives.

The template is where a face without a mesh has its regions (a face aligned from the detector's
keypoints, an aligned crop, a box placed by hand): the mean of the shapes of the two frontal portraits
and their mirror images (so it is symmetric), each in its FFHQ crop.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from faces.region_weights import TEMPLATE, region_masks, region_shapes, weight_map
from faces.regions import NEUTRAL, REGION_NAMES, REMAINDER

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "traces" / "regions"
MAP_SIZE = 32  # the weight maps' side: small files, every ellipse still many pixels wide
POINT_DECIMALS = 6  # a mesh point to a millionth of the crop
# Strength settings the fixtures record: one that turns each region off, up, and the rest alone.
SETTINGS = ({"lips": 0.0, "eyes": 0.5, "cheeks": 2.0, "rest": 1.0},
            {"lips": 2.0, "eyes": 2.0, "cheeks": 2.0, "rest": 0.0},
            {"lips": 1.0, "eyes": 1.0, "cheeks": 1.0, "rest": 0.3}, NEUTRAL)
FRONTAL = ("astronaut", "hopper")
# The masks a region-input network reads, in its channel order (train/region_maps.py REGION_INPUTS).
MASK_NAMES = tuple(name for name in REGION_NAMES if name != REMAINDER)


def portraits() -> dict[str, np.ndarray]:
    """Real faces as RGB arrays: two frontal, one turned (the astronaut is Eileen Collins, NASA, public domain;
    Grace Hopper, US Navy, public domain; the cameraman, CC0: THIRD_PARTY_NOTICES.md)."""
    import matplotlib.cbook
    from PIL import Image
    from skimage import data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as file:
        hopper = np.asarray(Image.open(file).convert("RGB"))
    return {"astronaut": data.astronaut(), "hopper": hopper, "cameraman": np.stack([data.camera()] * 3, axis=-1)}


def mesh_in_crop(image: np.ndarray, size: int = 256) -> np.ndarray:
    """The largest face's mesh, 468 x 2 in fractions of its model crop."""
    from faces import still_faces

    faces = [face for face in still_faces(image, size) if face.landmarks is not None]
    if not faces:
        raise RuntimeError("the face mesh found no face in a portrait it always found: is faces/ intact?")
    face = max(faces, key=lambda found: found.alignment.side)
    return face.alignment.to_crop(face.landmarks[:, :2]) / size


def fixture(about: str, points: np.ndarray | None) -> dict:
    """A face's recorded points, shapes, weight maps and region masks (the template's where ``points`` is None)."""
    if points is not None:
        points = np.round(points, POINT_DECIMALS)
    shapes = TEMPLATE if points is None else region_shapes(points)
    weights = [{"strengths": strengths, "map": weight_map(shapes, strengths, MAP_SIZE).tolist()}
               for strengths in SETTINGS]
    masks = {"names": list(MASK_NAMES), "maps": region_masks(shapes, MASK_NAMES, MAP_SIZE).tolist()}
    return {"about": about, "points": None if points is None else points.tolist(), "shapes": shapes,
            "size": MAP_SIZE, "weights": weights, "masks": masks}


def template() -> dict[str, list[list[float]]]:
    """The mean shapes over the frontal portraits and their mirror images, rounded to 1e-4."""
    shapes = []
    for name, image in portraits().items():
        if name in FRONTAL:
            mirrored = np.ascontiguousarray(image[:, ::-1])
            shapes += [region_shapes(mesh_in_crop(image)), region_shapes(mesh_in_crop(mirrored))]
    return {region: np.round(np.mean([face[region] for face in shapes], axis=0), 4).tolist() for region in shapes[0]}


def write(out: Path) -> list[Path]:
    from tools.tracking_traces import write as write_records

    photos = portraits()
    fixtures = {"astronaut": fixture("A frontal face (the astronaut portrait).", mesh_in_crop(photos["astronaut"])),
                "cameraman": fixture("A turned face (the cameraman).", mesh_in_crop(photos["cameraman"])),
                "template": fixture("A face without a mesh: the template's shapes.", None)}
    return write_records(fixtures, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.region_fixture", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=FIXTURES, help="folder of the fixtures (default: %(default)s)")
    parser.add_argument("--template", action="store_true", help="print the template shapes instead")
    args = parser.parse_args(argv)
    if args.template:
        print(json.dumps(template()))
        return 0
    for path in write(args.out):
        print(f"{path} ({path.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
