"""apply with a model that reads the face's region maps beside it (``--region-inputs``): each face's maps drawn
over its crop from its mesh, at the model's size, on every model run (photos, aligned crops, video frames);
empty maps for a face without a mesh; a model of the face alone run exactly as before.

The maps' placement is checked on a rendered face whose label map says where its lips and eyes are
(train/synthetic.py, as tests/train/test_region_inputs.py checks training's maps); the runs use the
``region_checkpoint`` fixture (a 2-epoch nano network at 64 px)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from test_regions import write_clip  # a short H.264 clip of the frames

from apply.__main__ import main as apply_main
from apply.composite import face_regions, made_up_faces
from apply.photo import apply_to_file, crop_mesh_shapes
from apply.video import apply_to_video
from export.loading import load_model
from export.runtime import pytorch_runner
from faces import FaceTracker, still_faces
from faces.regions import NEUTRAL
from models.data import EYE_LABELS, LIP_LABELS
from models.tinybeauty import VARIANTS, build_model
from train.region_maps import REGION_INPUTS
from train.synthetic import render_pair, to_uint8

SIZE = 64  # the region checkpoint's
CANVAS = (320, 400)  # height, width of the photo the rendered face is pasted into
FACE_AT, FACE_SIDE = (60, 150), 200  # its top-left corner (row, column) and side there


@pytest.fixture(scope="module")
def rendered():
    """A rendered face pasted into a larger grey photo, and its label map in the photo's pixels."""
    source, _, labels = render_pair(3, seed=0, size=256)
    face = np.asarray(Image.fromarray(to_uint8(source)).resize((FACE_SIDE, FACE_SIDE), Image.LANCZOS))
    label_map = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((FACE_SIDE, FACE_SIDE), Image.NEAREST))
    photo, photo_labels = np.full((*CANVAS, 3), 90, np.uint8), np.zeros(CANVAS, np.uint8)
    rows, columns = slice(FACE_AT[0], FACE_AT[0] + FACE_SIDE), slice(FACE_AT[1], FACE_AT[1] + FACE_SIDE)
    photo[rows, columns], photo_labels[rows, columns] = face, label_map
    return photo, photo_labels, to_uint8(source), labels


@pytest.fixture(scope="module")
def photo_file(rendered, tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "face.png"
    Image.fromarray(rendered[0]).save(path)
    return path


@pytest.fixture(scope="module")
def stills():
    return FaceTracker(SIZE, threads=1, smoothing=False)


def labels_in_crop(labels: np.ndarray, alignment) -> np.ndarray:
    """The photo's label map read at each crop pixel's centre (nearest), 0 outside the photo."""
    centres = np.arange(alignment.size) + 0.5
    rows, columns = np.meshgrid(centres, centres, indexing="ij")
    points = alignment.to_image(np.stack([columns.ravel(), rows.ravel()], axis=1)).round().astype(int)
    inside = ((points >= 0) & (points < [labels.shape[1], labels.shape[0]])).all(axis=1)
    crop = np.zeros(len(points), labels.dtype)
    crop[inside] = labels[points[inside, 1], points[inside, 0]]
    return crop.reshape(alignment.size, alignment.size)


def assert_on_the_lips_and_eyes(maps: np.ndarray, crop_labels: np.ndarray) -> None:
    """maps: K x S x S in REGION_INPUTS' order; each labelled part lies in its map, about its centre."""
    size = crop_labels.shape[0]
    for channel, wanted in ((REGION_INPUTS.index("lips"), LIP_LABELS), (REGION_INPUTS.index("eyes"), EYE_LABELS)):
        truth, found = np.isin(crop_labels, wanted), maps[channel] > 0.5
        assert truth.sum() > 10, "the labelled part is in the crop"
        assert found[truth].mean() > 0.9, "the labelled part lies inside its map"
        centre = lambda mask: np.argwhere(mask).mean(0)  # noqa: E731
        assert np.abs(centre(found) - centre(truth)).max() < 0.06 * size, "about it"
        assert found.mean() < 0.1, "not the whole crop"


def test_the_maps_drawn_for_a_crop_lie_on_its_lips_and_eyes(rendered):
    photo, labels, _, _ = rendered
    for size in (SIZE, 256):  # the model's size, and the shipped files'
        [face] = still_faces(photo, size)
        assert face.by == "mesh"
        drawn = face_regions(None, REGION_INPUTS, [(face.alignment, face.landmarks)])
        [maps] = drawn.maps
        assert maps.shape == (1, len(REGION_INPUTS), size, size) and maps.dtype == np.float32
        assert drawn.weights is None and drawn.unmeshed == 0
        assert 0 <= maps.min() and maps.max() <= 1
        assert_on_the_lips_and_eyes(maps[0], labels_in_crop(labels, face.alignment))


def test_a_face_without_a_mesh_gets_empty_maps_and_one_mesh_serves_maps_and_strengths(rendered):
    photo, _, _, _ = rendered
    [face] = still_faces(photo, SIZE)
    faces = [(face.alignment, face.landmarks), (face.alignment, None)]
    drawn = face_regions({**NEUTRAL, "lips": 0.0}, REGION_INPUTS, faces)
    assert drawn.unmeshed == 1 and not drawn.maps[1].any() and drawn.maps[0].any()
    # the strengths read the same shapes: zero weight where the lips' map is 1
    lips = drawn.maps[0][0, REGION_INPUTS.index("lips")] == 1
    assert lips.any() and (drawn.weights[0][lips] == 0).all()
    assert face_regions(None, (), faces).maps is None  # a model of the face alone: nothing drawn


class Recording:
    """A runner that keeps the region maps each model run was given (None: none) and passes everything on."""

    def __init__(self, runner, replace_maps=None):
        self.runner, self.replace_maps, self.maps = runner, replace_maps, []

    def __call__(self, faces, **inputs):
        self.maps.append(inputs.get("regions"))
        if self.replace_maps is not None and "regions" in inputs:
            inputs["regions"] = self.replace_maps(inputs["regions"])
        return self.runner(faces, **inputs)


@pytest.fixture(scope="module")
def region_model(region_checkpoint):
    model = load_model(region_checkpoint, threads=1)
    assert model.region_inputs == REGION_INPUTS and model.image_size == SIZE
    return model


def made_up(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


def test_a_photo_through_a_region_input_checkpoint_reads_each_faces_maps(region_checkpoint, region_model, rendered,
                                                                          photo_file, stills, tmp_path):
    photo = rendered[0]
    recorded = Recording(region_model.runner)
    [with_maps], faces = apply_to_file(recorded, stills, photo_file, tmp_path / "maps", SIZE, 1.0, False, None,
                                       region_model.region_inputs)
    [face] = still_faces(photo, SIZE, stills)
    [expected] = face_regions(None, REGION_INPUTS, [(face.alignment, face.landmarks)]).maps
    assert faces == ["mesh"] and len(recorded.maps) == 1 and np.array_equal(recorded.maps[0], expected)
    emptied = Recording(region_model.runner, replace_maps=np.zeros_like)
    [with_empty], _ = apply_to_file(emptied, stills, photo_file, tmp_path / "empty", SIZE, 1.0, False, None,
                                    region_model.region_inputs)
    assert (made_up(with_maps) != made_up(with_empty)).any(axis=-1).sum() > 50, "the maps reach the model"
    # the command: the checkpoint's region inputs found and fed, a --regions strength beside them
    assert apply_main(["--model", str(region_checkpoint), str(photo_file), "--out",
                       str(tmp_path / "command"), "--regions", "lips=0.5"]) == 0
    assert (tmp_path / "command" / "face_makeup.png").is_file()


def test_an_aligned_crop_reads_the_maps_the_mesh_places_on_it(region_model, rendered, stills, tmp_path):
    _, _, face, labels = rendered
    path = tmp_path / "crop.png"
    Image.fromarray(face).save(path)
    recorded = Recording(region_model.runner)
    apply_to_file(recorded, None, path, tmp_path / "out", SIZE, 1.0, False, None, region_model.region_inputs,
                  stills)
    [maps] = recorded.maps
    small = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((SIZE, SIZE), Image.NEAREST))
    assert maps.shape == (1, len(REGION_INPUTS), SIZE, SIZE)
    assert_on_the_lips_and_eyes(maps[0], small)
    # no face on the crop: empty maps, as training gives an image the mesh finds nothing in
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((SIZE, SIZE, 3), 128, np.uint8)).save(blank)
    assert crop_mesh_shapes(torch.full((1, 3, SIZE, SIZE), 0.5), stills) is None
    apply_to_file(recorded, None, blank, tmp_path / "out", SIZE, 1.0, False, None, region_model.region_inputs, stills)
    assert recorded.maps[1].shape == maps.shape and not recorded.maps[1].any()


def test_a_video_through_apply_feeds_each_frames_maps(region_checkpoint, region_model, rendered, tmp_path):
    photo = rendered[0]
    clip = tmp_path / "clip.mp4"
    write_clip(clip, [np.roll(photo, 3 * index, axis=1) for index in range(4)])
    recorded = Recording(region_model.runner)
    result = apply_to_video(recorded, FaceTracker(SIZE), clip, tmp_path / "out", 1.0, progress=False,
                            region_names=region_model.region_inputs)
    assert result.frames == 4 and result.most_faces == 1 and len(recorded.maps) == 4
    for maps in recorded.maps:
        assert maps.shape == (1, len(REGION_INPUTS), SIZE, SIZE) and maps.dtype == np.float32
        assert all(maps[0, channel].max() > 0.9 for channel in range(len(REGION_INPUTS))), "every region placed"
    assert apply_main(["--model", str(region_checkpoint), str(clip), "--out",
                       str(tmp_path / "command")]) == 0
    assert (tmp_path / "command" / "clip_makeup.mp4").is_file()


def test_a_model_without_region_inputs_runs_on_the_face_alone_with_todays_pixels(rendered, photo_file, stills,
                                                                                   tmp_path):
    """A model of the face alone is called with the face alone (a runner taking nothing else), and its pixels
    are those of the composite without any maps: drawing maps that the model ignores changes nothing either."""
    torch.manual_seed(0)
    network = build_model(VARIANTS["nano"]).eval()
    runner = pytorch_runner(network)

    def face_alone(faces):
        return runner(faces)

    def ignoring_maps(faces, regions):
        assert regions.shape == (len(faces), len(REGION_INPUTS), SIZE, SIZE)
        return runner(faces)

    photo = torch.from_numpy(rendered[0].astype(np.float32) / 255).permute(2, 0, 1)[None]
    [face] = still_faces(rendered[0], SIZE, stills)
    today, coverage = made_up_faces(face_alone, photo, [face.alignment], 1.0)
    expected = (today[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    outside = (coverage[0, 0] <= 0).numpy()
    expected[outside] = rendered[0][outside]
    for name, model, names in (("alone", face_alone, ()), ("ignoring", ignoring_maps, REGION_INPUTS)):
        [written], _ = apply_to_file(model, stills, photo_file, tmp_path / name, SIZE, 1.0, False, None, names)
        assert np.array_equal(np.asarray(Image.open(written)), expected), name
