"""A region-input network on the page, in Chromium: each face's region maps (lips, eyes, cheeks: what
faces.region_weights.region_masks draws from its mesh) are fed beside the face on a photo and on every camera
frame, in the file's layout (NCHW .onnx, NHWC .tflite), all 0 where the face has no mesh; a looks.json whose
region_inputs do not fit the file is refused. Skipped where no Chromium is installed, as tests/web/test_web.py is
(TINYBEAUTY_REQUIRE_BROWSER=1 fails instead).

The model: ``0.5 x (face + regions)``, in the shipped files' I/O contract (a face and ``regions`` [1, 3, S, S], the
.tflite's both NHWC, the maps given by keyword as the export gives them): the maps the runtime was fed can be read
back off its output, and on the camera red rises over green at the lips (the lips' map is added to the red
channel, the eyes' to the green), where all-0 maps would not."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest
from test_web import (  # noqa: F401 (fixtures: the astronaut scene, the camera's clip)
    FACE_FOLLOWED,
    LITERT_TOLERANCE,
    MODEL_WORKER,
    _need,
    camera_clip,
    scene,
)

from export.common import INPUT_NAME, OUTPUT_NAME
from export.manifest import LOOKS_FILE
from faces.region_weights import region_masks, region_shapes
from tools.browser import BrowserPage, PageError, find_chromium
from tools.region_fixture import MASK_NAMES

pytestmark = pytest.mark.slow

SIZE = 256
REGIONS_INPUT_NAME = "regions"  # a region-input file's maps input (the .onnx's; the .tflite's by keyword)
MAP_TOLERANCE = 1e-6  # float32 maps from the same points: the two languages' last bits
# A float graph in LiteRT.js's own kernels (0.5 x (face + regions)): a rounding or two of a value in [0, 1]
LITERT_FLOAT = 1e-5


def catalogue(region_inputs: list[str] | None) -> dict:
    """looks.json of a one-look region-input set (export/pipeline.py looks_document), naming its maps."""
    document = {"input": None, "image_size": SIZE, "looks": [{"name": "the file's look", "index": 0}]}
    return document if region_inputs is None else {**document, "region_inputs": region_inputs}


@pytest.fixture(scope="module")
def region_model(tmp_path_factory):
    """The set: the ONNX (onnxruntime-web), the .tflite (LiteRT.js; NHWC face and maps) and looks.json."""
    import litert_torch
    import litert_torch.progress
    import onnx
    import torch
    from onnx import TensorProto, helper

    shape = [1, len(MASK_NAMES), SIZE, SIZE]
    graph = helper.make_graph(
        [helper.make_node("Add", [INPUT_NAME, REGIONS_INPUT_NAME], ["sum"]),
         helper.make_node("Mul", ["sum", "half"], [OUTPUT_NAME])],
        "mix", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, SIZE, SIZE]),
                helper.make_tensor_value_info(REGIONS_INPUT_NAME, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])])
    folder = tmp_path_factory.mktemp("region_model")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # onnxruntime-web 1.30 reads IR <= 13
    onnx.save(model, str(folder / "tinybeauty.onnx"))

    class Mix(torch.nn.Module):  # the same function in the .tflite contract: NHWC face and maps
        def forward(self, face, regions):
            return (face + regions) * 0.5

    litert_torch.progress.console.quiet = True
    litert_torch.convert(Mix().eval(), (torch.rand(1, SIZE, SIZE, 3),),
                         {REGIONS_INPUT_NAME: torch.rand(1, SIZE, SIZE, len(MASK_NAMES))}).export(
        str(folder / "tinybeauty.tflite"))
    (folder / LOOKS_FILE).write_text(json.dumps(catalogue(list(MASK_NAMES))))
    return folder


FACE_TENSORS = """(key) => {
    const values = tinybeauty.state.faces[0][key];
    const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
}"""


def fed(page: BrowserPage, channels_last: bool, size: int = SIZE) -> dict[str, np.ndarray]:
    """The photo's first face as the page ran it: the face (3 x S x S), the maps it fed (K x S x S, read in the file's
    layout) and the model's output (3 x S x S)."""
    def read(key: str) -> np.ndarray:
        return np.frombuffer(base64.b64decode(page.page.evaluate(FACE_TENSORS, key)), np.float32)

    maps = read("regionMaps")
    maps = maps.reshape(size, size, -1).transpose(2, 0, 1) if channels_last else maps.reshape(-1, size, size)
    return {"face": read("face").reshape(3, size, size), "maps": maps, "output": read("madeUp").reshape(3, size, size)}


def python_maps(landmarks: np.ndarray, region: dict, size: int = SIZE) -> np.ndarray:
    """faces.region_weights' maps for a face's mesh (image pixels) in its crop {origin, xAxis, yAxis}."""
    axes = np.array([region["xAxis"], region["yAxis"]], np.float64).T  # image = origin + axes @ (u, v)
    in_crop = np.linalg.solve(axes, (np.asarray(landmarks, np.float64)[:, :2] - region["origin"]).T).T
    return region_masks(region_shapes(in_crop), MASK_NAMES, size)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Two photos that are the model's crop (the page's "whole photo" mode, `apply --aligned`): an aligned face
    (skimage's public-domain astronaut) and one without a face (a smooth gradient), as S x S x 3 uint8 and PNG."""
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("region_crops")
    face = np.asarray(Image.fromarray(data.astronaut()[20:300, 100:380]).resize((SIZE, SIZE)))
    ramp = np.linspace(40, 200, SIZE, dtype=np.float64)
    faceless = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (SIZE, 1)), np.tile(ramp[:, None], (1, SIZE))],
                        axis=-1).round().astype(np.uint8)
    paths = {}
    for name, pixels in (("face", face), ("faceless", faceless)):
        Image.fromarray(pixels).save(folder / f"{name}.png")
        paths[name] = (folder / f"{name}.png", pixels)
    return paths


@pytest.mark.parametrize("model_file", ["tinybeauty.onnx", "tinybeauty.tflite"])
def test_a_photos_face_is_fed_the_region_maps_python_draws_from_its_mesh(region_model, scene, crops, model_file):  # noqa: F811
    """The astronaut in a landscape: the maps fed are faces.region_weights' for the page's own mesh of that face in
    its crop, and the runtime got them (its output is 0.5 x (face + maps)). A photo that is the face crop: its maps
    from the mesh run on the crop, as `apply --aligned` draws them; a crop without a face: all-0 maps."""
    from faces import still_faces

    _need(find_chromium)
    channels_last = model_file.endswith(".tflite")
    tolerance = LITERT_FLOAT if channels_last else MAP_TOLERANCE
    with BrowserPage(region_model, model_file) as page:
        assert "reads the face mesh's region maps: lips, eyes, cheeks" in page.page.locator("#model-name").inner_text()
        page.make_up(scene)
        assert page.page.evaluate("tinybeauty.state.mode") == "faces"
        assert page.page.evaluate("tinybeauty.state.alignedBy") == ["mesh"]
        meshed = fed(page, channels_last)
        [tracked] = page.page.evaluate("tinybeauty.state.stills.tracks.map((track) => track.face)")
        ran_on = page.regions[0]
        page.set_mode("whole")
        page.make_up(crops["face"][0])
        aligned = {**fed(page, channels_last), "shapes": page.page.evaluate("tinybeauty.state.faces[0].region.shapes")}
        page.make_up(crops["faceless"][0])
        faceless = fed(page, channels_last)
    for key in ("origin", "xAxis", "yAxis"):
        assert ran_on[key] == tracked["region"][key], "the face's crop is its mesh's"
    expected = python_maps(np.asarray(tracked["landmarks"]), tracked["region"])
    assert np.abs(meshed["maps"] - expected).max() <= MAP_TOLERANCE
    for k, name in enumerate(MASK_NAMES):
        assert expected[k].max() == 1.0 and (expected[k] == 0).mean() > 0.5, f"{name}: a region of the face"
    for run in (meshed, aligned, faceless):
        assert np.abs(run["output"] - 0.5 * (run["face"] + run["maps"])).max() <= tolerance, "the runtime got them"
    # The aligned crop: the page's mesh on it, as apply's (faces.still_faces on the crop's pixels, the largest face)
    assert np.abs(aligned["maps"] - region_masks(aligned["shapes"], MASK_NAMES, SIZE)).max() <= MAP_TOLERANCE
    [by_python] = [face for face in still_faces(crops["face"][1], SIZE) if face.landmarks is not None]
    python_aligned = region_masks(region_shapes(by_python.landmarks[:, :2] / SIZE), MASK_NAMES, SIZE)
    apart = np.abs(aligned["maps"] - python_aligned)
    print(f"the aligned crop's maps, page vs Python's mesh: mean {apart.mean():.5f}, max {apart.max():.4f}")
    assert aligned["maps"].max() == 1.0 and apart.mean() < 0.003, \
        "the same chain on the same pixels, up to the mesh input's resampling"
    assert not faceless["maps"].any(), "no face on the crop: no region known"


@pytest.mark.parametrize("model_file", ["tinybeauty.onnx", "tinybeauty.tflite"])
def test_every_camera_frame_feeds_its_tracked_face_the_maps_of_its_mesh(region_model, camera_clip, model_file):  # noqa: F811
    """The camera clip (the ONNX's model stage in its worker, the .tflite's in the frame loop): each frame with a
    face draws its maps, and at the face's lips red rises over green (the lips' map, fed as the red channel, lifts
    the output there to 0.5 x (face + 1), the eyes' as the green one leaves 0.5 x face), where all-0 maps would
    halve both."""
    _need(find_chromium)
    query = None if model_file.endswith(".tflite") else MODEL_WORKER
    with BrowserPage(region_model, model_file, camera_clip=camera_clip, query=query) as page:
        page.start_camera(frames=3)
        page.page.wait_for_function(FACE_FOLLOWED, timeout=60_000)
        recorded = page.record_camera(3)
        page.page.wait_for_function("tinybeauty.state.camera.regions.length === 1", timeout=60_000)
        page.stop_camera()
        last = page.page.evaluate("tinybeauty.state.camera")
        before, after = (page.shown_pixels(side) for side in ("before", "after"))
    assert last["where"] == ("page" if query is None else "worker")
    assert all(frame["ms"]["maps"] > 0 for frame in recorded if frame["regions"]), "each face's maps drawn"
    region = last["regions"][0]
    (centre_x, centre_y, *_), = region["shapes"]["lips"]
    x, y = np.add(region["origin"], centre_x * np.asarray(region["xAxis"]) + centre_y * np.asarray(region["yAxis"]))
    taken, shown = (pixels[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2].reshape(-1, 3).astype(int)
                    for pixels in (before, after))
    # red - green: 0.5 x (taken's) + 127.5 x (lips' map - eyes' map), that is + 127.5 there (all-0 maps: + 0)
    lift = (shown[:, 0] - shown[:, 1]) - 0.5 * (taken[:, 0] - taken[:, 1])
    assert (lift > 80).all(), ("the lips' map fed as the red channel", taken, shown)


@pytest.mark.parametrize(("model_file", "region_inputs", "words"), [
    ("tinybeauty.onnx", ["lips", "eyes"], "names 2 region map(s) (lips, eyes) but tinybeauty.onnx reads 3"),
    ("tinybeauty.tflite", ["lips", "nose", "cheeks"], "reads the region map(s) nose, which this page cannot draw"),
    ("plain.onnx", list(MASK_NAMES), "names region maps (lips, eyes, cheeks) but plain.onnx takes no regions input"),
])
def test_region_maps_a_looks_json_does_not_fit_are_refused_on_the_page(region_model, tmp_path, model_file,
                                                                       region_inputs, words):
    import onnx
    from onnx import TensorProto, helper

    _need(find_chromium)
    folder = tmp_path / "mismatched"
    shutil.copytree(region_model, folder)
    (folder / LOOKS_FILE).write_text(json.dumps(catalogue(region_inputs)))
    face = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3, SIZE, SIZE])
            for name in (INPUT_NAME, OUTPUT_NAME)]
    plain = helper.make_model(helper.make_graph([helper.make_node("Identity", [INPUT_NAME], [OUTPUT_NAME])], "plain",
                                                face[:1], face[1:]), opset_imports=[helper.make_opsetid("", 17)])
    plain.ir_version = 8
    onnx.save(plain, str(folder / "plain.onnx"))
    with pytest.raises(PageError) as refused:
        BrowserPage(folder, model_file).__enter__()
    assert "The model's region maps could not be set up" in str(refused.value) and words in str(refused.value)


@pytest.fixture(scope="module")
def exported_regions(region_checkpoint, tmp_path_factory):
    """The region-input network (tests/conftest.py region_checkpoint) through `python -m export`: its int8 .onnx
    and .tflite, each with the regions input, and the set's looks.json naming the maps."""
    from export.__main__ import main as export_main

    out = tmp_path_factory.mktemp("region_artifacts")
    assert export_main(["--checkpoint", str(region_checkpoint), "--out", str(out), "--formats", "onnx", "tflite",
                        "--calibration-images", "8", "--val-images", "2"]) == 0
    return out


@pytest.mark.parametrize(("model_file", "tolerance"), [("tinybeauty.onnx", MAP_TOLERANCE),
                                                       ("tinybeauty.tflite", LITERT_TOLERANCE)])
def test_an_exported_region_input_network_runs_a_photo_as_its_runtime_in_python(exported_regions, scene,  # noqa: F811
                                                                                model_file, tolerance):
    """The files `python -m export` writes for a --region-inputs checkpoint, in the page, on the astronaut in a
    landscape: its face's maps fed (Python's for the page's mesh) and the output the same file gives in Python's
    runtime for that face and those maps (int8 ONNX: the same integer arithmetic; the .tflite: within the few int8
    steps LiteRT.js rounds otherwise, as test_web.py holds the one-look file to)."""
    from export.loading import load_model

    _need(find_chromium)
    loaded = load_model(exported_regions / model_file)
    assert loaded.region_inputs == MASK_NAMES
    with BrowserPage(exported_regions, model_file, threads=2) as page:
        page.make_up(scene)
        assert page.page.evaluate("tinybeauty.state.model.regionNames") == list(MASK_NAMES)
        size = page.model_info["size"]
        ran = fed(page, model_file.endswith(".tflite"), size)
        [tracked] = page.page.evaluate("tinybeauty.state.stills.tracks.map((track) => track.face)")
    drawn = python_maps(np.asarray(tracked["landmarks"]), tracked["region"], size)
    assert size == loaded.image_size and np.abs(ran["maps"] - drawn).max() <= MAP_TOLERANCE
    expected = loaded.runner(ran["face"][None], regions=ran["maps"][None])[0]
    without = loaded.runner(ran["face"][None], regions=loaded.empty_regions())[0]
    apart = np.abs(ran["output"] - expected).max()
    print(f"{model_file}: page vs Python {apart:.2g}; the maps move Python's output by up to "
          f"{np.abs(expected - without).max():.3g}")
    assert apart <= tolerance and np.abs(expected - without).max() > 0, "the network reads the maps"


def test_an_exported_region_input_network_on_the_camera_feeds_every_frame_its_maps(exported_regions, camera_clip):  # noqa: F811
    """The exported .onnx on the camera clip, its model stage in a worker: every frame with a face is made up with
    the maps drawn from that frame's mesh."""
    _need(find_chromium)
    with BrowserPage(exported_regions, "tinybeauty.onnx", camera_clip=camera_clip, query=MODEL_WORKER) as page:
        page.start_camera(frames=3)
        page.page.wait_for_function(FACE_FOLLOWED, timeout=60_000)
        recorded = page.record_camera(4)
        jobs = page.page.evaluate("""({where: tinybeauty.state.camera.where,
                                       failed: Boolean(tinybeauty.state.workers.makeUp?.failure)})""")
        page.stop_camera()
    faced = [frame for frame in recorded if frame["regions"]]
    assert jobs == {"where": "worker", "failed": False} and len(faced) >= 2, (jobs, len(faced))
    for frame in faced:
        assert set(frame["regions"][0]["shapes"]) == set(MASK_NAMES), "its regions from its own mesh"
        assert frame["ms"]["maps"] > 0 and frame["ms"]["model"] > 0, frame["ms"]
