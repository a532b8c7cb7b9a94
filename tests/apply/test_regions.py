"""apply --regions: lips, eyes, cheeks and the rest of the face each at a strength of their own, placed from
each face's mesh (faces/regions.json); every strength at 1 is the plain face mask to the bit.

The model here is a known residual (every pixel + 0.2), so where the compositing puts it is what is tested;
the real model files go through the same code in tests/apply/test_apply.py (and here once, slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import av
import numpy as np
import pytest
from conftest import ROOT
from PIL import Image, ImageDraw
from skimage import data as skimage_data

from apply.__main__ import main as apply_main
from apply.composite import made_up_faces, make_up_frame, region_weights
from apply.photo import apply_to_file
from apply.video import apply_to_video
from faces import FaceTracker, still_faces
from faces.mesh import LEFT_EYE, LIPS_OUTER, RIGHT_EYE
from faces.region_weights import TEMPLATE
from faces.regions import NEUTRAL, REGION_NAMES

TINT = 0.2
LIPS_OFF = {**NEUTRAL, "lips": 0.0}


def tint(faces: np.ndarray) -> np.ndarray:
    """A model whose residual is known: + TINT everywhere (clipped)."""
    return np.clip(faces + TINT, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    """The public-domain astronaut portrait (Eileen Collins, NASA) as a file, its pixels and its face's mesh."""
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    [face] = still_faces(skimage_data.astronaut(), 256)
    assert face.by == "mesh"
    return path, skimage_data.astronaut(), face


@pytest.fixture(scope="module")
def stills():
    return FaceTracker(256, threads=1, smoothing=False)


def inside(landmarks: np.ndarray, rings: list[tuple[int, ...]], shape: tuple[int, int]) -> np.ndarray:
    """The pixels inside the mesh rings (image pixels), as a boolean H x W mask."""
    canvas = Image.new("L", shape[::-1])
    for ring in rings:
        ImageDraw.Draw(canvas).polygon([tuple(point) for point in landmarks[list(ring), :2]], fill=1)
    return np.asarray(canvas, bool)


def made_up_photo(astronaut, stills, out, regions, strength: float = 1.0) -> np.ndarray:
    path, _, _ = astronaut
    [written], _ = apply_to_file(tint, stills, path, out, 256, strength, False, regions)
    return np.asarray(Image.open(written)).astype(int)


def test_lips_at_zero_leave_the_lips_unchanged_while_the_eyes_change(astronaut, stills, tmp_path):
    _, original, face = astronaut
    lips, eyes = (inside(face.landmarks, rings, original.shape[:2]) for rings in ([LIPS_OUTER], [RIGHT_EYE, LEFT_EYE]))
    plain = made_up_photo(astronaut, stills, tmp_path / "plain", None)
    regions = made_up_photo(astronaut, stills, tmp_path / "regions", LIPS_OFF)
    assert lips.sum() > 400 and eyes.sum() > 100  # the rings are the face's, at this photo's scale
    assert (regions[lips] == original[lips]).all(), "the lips keep the photo's pixels"
    assert (plain[lips] != original[lips]).any(axis=-1).mean() > 0.9, "which the plain composite changes"
    assert (regions[eyes] != original[eyes]).any(axis=-1).mean() > 0.9, "the eyes are made up"
    assert (regions[eyes] == plain[eyes]).all(), "exactly as without --regions: their weight is 1"


def test_a_region_at_half_strength_gets_half_the_change(astronaut, stills, tmp_path):
    _, original, face = astronaut
    eyes = inside(face.landmarks, [RIGHT_EYE, LEFT_EYE], original.shape[:2])
    plain = made_up_photo(astronaut, stills, tmp_path / "plain", None)
    half = made_up_photo(astronaut, stills, tmp_path / "half", {**NEUTRAL, "eyes": 0.5})
    unclipped = eyes & (plain < 255).all(axis=-1)  # where the plain change is the whole + 0.2 x 255
    change, half_change = plain[unclipped] - original[unclipped], half[unclipped] - original[unclipped]
    assert unclipped.sum() > 100 and np.abs(half_change - change / 2).max() <= 1  # to 8-bit rounding


def test_every_strength_at_one_is_no_regions_to_the_bit(astronaut, stills, tmp_path):
    _, original, face = astronaut
    plain = made_up_photo(astronaut, stills, tmp_path / "plain", None, strength=1.5)
    assert (made_up_photo(astronaut, stills, tmp_path / "ones", dict(NEUTRAL), strength=1.5) == plain).all()
    [weights] = region_weights(dict(NEUTRAL), [(face.alignment, face.landmarks)])
    assert (weights == 1.0).all(), "the weight map itself is exactly 1, not merely close"


def test_an_aligned_crop_takes_the_template_regions(tmp_path):
    """No mesh on an aligned crop: the regions are where an average face has them (faces/regions.json)."""
    crop = np.full((256, 256, 3), 100, np.uint8)
    path = tmp_path / "crop.png"
    Image.fromarray(crop).save(path)
    [written], _ = apply_to_file(tint, None, path, tmp_path / "out", 256, 1.0, False, LIPS_OFF)
    result = np.asarray(Image.open(written)).astype(int)
    (centre_x, centre_y, *_), = TEMPLATE["lips"]
    assert (result[int(centre_y * 256), int(centre_x * 256)] == 100).all(), "the template's lips: unchanged"
    eye_x, eye_y = TEMPLATE["eyes"][0][:2]
    assert (result[int(eye_y * 256), int(eye_x * 256)] == 151).all(), "its eyes: + 0.2 x 255"


def test_a_face_without_a_mesh_takes_the_template_regions(astronaut):
    """A face aligned from the detector's keypoints has no landmarks: the template's regions, in its crop."""
    _, original, face = astronaut
    photo = np.asarray(original, np.float32).transpose(2, 0, 1)[None] / 255
    import torch

    [from_mesh] = region_weights(LIPS_OFF, [(face.alignment, face.landmarks)])
    [from_template] = region_weights(LIPS_OFF, [(face.alignment, None)])
    assert not np.array_equal(from_mesh, from_template) and from_template.min() == 0.0
    made_up, _ = made_up_faces(tint, torch.from_numpy(photo), [face.alignment], 1.0, [from_template])
    (centre_x, centre_y, *_), = TEMPLATE["lips"]
    x, y = face.alignment.to_image(np.array([[centre_x * 256, centre_y * 256]]))[0].round().astype(int)
    assert np.allclose(made_up[0, :, y, x].numpy() * 255, original[y, x], atol=1e-3)


def write_clip(path, frames: list[np.ndarray]) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def decoded(path) -> np.ndarray:
    with av.open(str(path)) as video:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in video.decode(video=0)])


def test_a_video_takes_the_regions_of_each_frames_faces(tmp_path):
    portrait = np.asarray(Image.fromarray(skimage_data.astronaut()).resize((240, 240)))
    frames = []
    for index in range(5):
        frame = np.full((288, 320, 3), 60, np.uint8)
        frame[20:260, 30 + 4 * index:270 + 4 * index] = portrait
        frames.append(frame)
    clip = tmp_path / "clip.mp4"
    write_clip(clip, frames)
    outputs = {name: decoded(apply_to_video(tint, FaceTracker(256), clip, tmp_path / name, 1.0, progress=False,
                                            regions=regions).path)
               for name, regions in (("plain", None), ("ones", dict(NEUTRAL)), ("lips_off", LIPS_OFF))}
    assert np.array_equal(outputs["ones"], outputs["plain"])
    assert not np.array_equal(outputs["lips_off"], outputs["plain"])


def test_make_up_frame_weighs_each_face_in_its_own_region(astronaut):
    """The video's per-frame compositing, without an encoder: lips off on a frame, the lips keep their pixels."""
    _, original, face = astronaut
    frame = original.copy()
    weights = region_weights(LIPS_OFF, [(face.alignment, face.landmarks)])
    assert make_up_frame(tint, frame, [face.alignment], 1.0, weights) == 1
    lips = inside(face.landmarks, [LIPS_OUTER], original.shape[:2])
    assert (frame[lips] == original[lips]).all() and (frame != original).any()


BAD = {"nose=1": ["'nose'"], "lips=3": ["'lips=3'", "between 0 and 2"], "lips=-0.5": ["'lips=-0.5'"],
       "eyes=abc": ["'eyes=abc'", "not a number"], "lips=1,lips=0": ["lips is given twice"],
       "lips": ["'lips' is not NAME=STRENGTH"], "lips=nan": ["'lips=nan'"], "lips=1,,eyes=1": ["'' is not"]}
# Run as a person runs it, listing the heavy modules imported by the time the command line is refused.
PROBE = """
import runpy, sys
sys.argv = ["apply", *sys.argv[1:]]
try:
    runpy.run_module("apply", run_name="__main__", alter_sys=True)
except SystemExit as done:
    print(repr(done.code), sorted({"numpy", "torch", "PIL"} & set(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("value", sorted(BAD))
def test_a_bad_regions_value_is_refused_naming_it_before_any_work(value, tmp_path):
    done = subprocess.run([sys.executable, "-c", PROBE, "--model", str(tmp_path / "m.onnx"), str(tmp_path / "a.png"),
                           "--out", str(tmp_path / "out"), "--regions", value],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    *said, last = done.stderr.rstrip("\n").split("\n")
    assert last == "2 []", done.stderr  # exit 2, and neither numpy, PIL nor torch was imported
    message = "\n".join(said)
    assert "argument --regions" in message and all(part in message for part in BAD[value]), message
    assert ", ".join(REGION_NAMES) in message, "the regions there are are listed"
    assert not (tmp_path / "out").exists()


def test_the_command_line_with_a_model_file(artifacts, astronaut, tmp_path):
    """python -m apply with an exported model: all at 1 is the plain result byte for byte; lips at 0 differ."""
    path, _, _ = astronaut
    model = artifacts / "tinybeauty.onnx"
    results = {}
    for name, extra in (("plain", []), ("ones", ["--regions", "lips=1,eyes=1,cheeks=1,rest=1"]),
                        ("off", ["--regions", "lips=0, cheeks=0"])):
        assert apply_main(["--model", str(model), str(path), "--out", str(tmp_path / name), *extra]) == 0
        results[name] = (tmp_path / name / "astronaut_makeup.png").read_bytes()
    assert results["ones"] == results["plain"] and results["off"] != results["plain"]
    assert json.loads(json.dumps(NEUTRAL)) == dict.fromkeys(REGION_NAMES, 1.0)
