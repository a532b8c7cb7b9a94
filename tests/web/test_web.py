"""The browser page in real Chromium (Debian's package, driven by Playwright), against Python.

Skipped where no Chromium/Playwright/onnxruntime-web is installed, unless
TINYBEAUTY_REQUIRE_BROWSER=1 (CI sets it), which turns a missing browser into a failure.
"""

from __future__ import annotations

import base64
import io
import os
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from export.formats import BY_NAME
from models.checkpoint import checkpoint_split, load_checkpoint
from models.data import faces_as_tensors, load_split
from tools.browser import (
    LAUNCH_ARGS,
    BrowserPage,
    BrowserUnavailable,
    PageError,
    find_chromium,
    playwright,
    write_face_png,
)
from tools.camera_clip import CODE_ROWS, Clip, portrait, read_code, write_clip
from tools.camera_clip import frame as clip_frame
from web.server import (
    DEFAULT_MODEL,
    DETECTOR,
    LITERT_WASM,
    MESH,
    MESH_TFLITE,
    ORT_FILES,
    TRACKING_PARAMS,
    SetupError,
    check_runtime_installed,
    serve_in_thread,
)

pytestmark = pytest.mark.slow


def _need(check) -> None:
    try:
        check()
    except (BrowserUnavailable, SetupError) as missing:
        if os.environ.get("TINYBEAUTY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TINYBEAUTY_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(str(missing))


@pytest.fixture(scope="module")
def served(artifacts):
    _need(check_runtime_installed)
    with serve_in_thread(artifacts) as url:
        yield url


@pytest.fixture(scope="module")
def page(artifacts, served):
    """The page on the int8 ONNX (onnxruntime-web): the photo tests' page."""
    _need(find_chromium)
    _need(playwright)
    with BrowserPage(artifacts, "tinybeauty.onnx") as opened:
        yield opened


@pytest.fixture(scope="module")
def litert_page(artifacts, served):
    """The page as it opens by default: the int8 .tflite in LiteRT.js, on 2 threads."""
    _need(find_chromium)
    _need(playwright)
    with BrowserPage(artifacts, threads=2) as opened:
        yield opened


@pytest.fixture(scope="module")
def val_faces(checkpoint, tmp_path_factory):
    """Three validation faces as PNG files (exactly the pixels the checkpoint's split decodes)."""
    model, saved = load_checkpoint(checkpoint)
    source, _ = faces_as_tensors(load_split(checkpoint_split(saved, checkpoint), "val"))
    folder = tmp_path_factory.mktemp("web_faces")
    return [(write_face_png(face.numpy(), folder / f"val_{i}.png"), face.numpy()[None])
            for i, face in enumerate(source[:3])]


def _get(url: str):
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), b""


def test_server_sends_isolation_headers_and_only_its_files(served, artifacts):
    status, headers, body = _get(served)
    assert status == 200 and b"tinybeauty" in body.lower()
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    status, headers, body = _get(served + "ort/" + ORT_FILES[-1])
    assert status == 200 and headers["Content-Type"] == "application/wasm" and body[:4] == b"\0asm"
    assert _get(served + "app.mjs")[1]["Content-Type"] == "text/javascript"
    status, headers, body = _get(served + "tracking.json")  # the tracker's numbers, faces/ and the page's both
    assert status == 200 and headers["Content-Type"] == "application/json" and body == TRACKING_PARAMS.read_bytes()
    for model in ("tinybeauty.onnx", "tinybeauty.tflite"):
        status, _, body = _get(served + "model/" + model)
        assert status == 200 and body == (artifacts / model).read_bytes(), model
    for network in (DETECTOR, MESH, MESH_TFLITE):  # the page's face networks, from make setup
        status, _, body = _get(served + "detector/" + network.name)
        assert status == 200 and body == network.read_bytes(), network
    # LiteRT.js: its module (its helper imported by a path, which a worker can load), its wasm builds
    status, headers, body = _get(served + "litert/index.js")
    assert status == 200 and headers["Content-Type"] == "text/javascript"
    assert b'"./wasm-utils.js"' in body and b"@litertjs/wasm-utils" not in body
    assert _get(served + "litert/wasm-utils.js")[0] == 200
    for name in LITERT_WASM:
        status, _, body = _get(served + "litert/wasm/" + name)
        assert status == 200 and (body[:4] == b"\0asm" or name.endswith(".js")), name
    for private in ("model/../manifest.json", "model/%2e%2e/tinybeauty.onnx", "model/reference/../../x.onnx",
                    "ort/ort.all.min.mjs", "model/tinybeauty.pte", "../web/server.py", "server.py", "..", "%2e%2e",
                    "..%2fserver.py", "%2e%2e%2f__init__.py", "detector/", "litert/package.json",
                    "litert/wasm/litert_wasm_jspi_internal.wasm", "litert/../onnxruntime-web/package.json"):
        assert _get(served + private)[0] == 404, private


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def test_page_output_matches_python_onnxruntime(page, val_faces, artifacts, tmp_path):
    info = page.model_info
    assert info["isolated"] is True and info["threads"] >= 1
    assert info["bytes"] == (artifacts / "tinybeauty.onnx").stat().st_size
    python_onnx = BY_NAME["onnx"].load(artifacts / "tinybeauty.onnx")
    page.set_mode("whole")  # aligned face crops, as `apply --aligned`
    try:
        for png, face in val_faces:
            made_up = page.make_up(png, pixels=True)
            expected = python_onnx(face, regions=made_up["regions"])  # the maps the page drew from its mesh
            # int8 QDQ: the same integer arithmetic in wasm and in Python's onnxruntime
            assert np.abs(made_up["output"] - expected).max() <= 1e-6, png
            shown = made_up["pixels"]
            assert shown.shape == (face.shape[2], face.shape[3], 4) and (shown[..., 3] == 255).all()
            # A face crop at the model's size: the page shows the model's output, rounded to 8 bits.
            python_pixels = np.round(np.clip(expected[0], 0, 1) * 255).transpose(1, 2, 0)
            assert np.abs(shown[..., :3].astype(int) - python_pixels).max() <= 1, png
            assert made_up["model_ms"] > 0
    finally:
        page.set_mode("auto")
    print("screenshot:", page.screenshot(tmp_path / "page.png"))


def test_page_output_matches_python_litert(litert_page, val_faces, artifacts):
    """The page's default: the .tflite in LiteRT.js (XNNPACK in wasm, 2 threads) against the same file
    in Python's LiteRT (native XNNPACK): the same int8 network, up to a few requantizations rounded
    the other way."""
    info = litert_page.model_info
    assert info["runtime"] == "LiteRT.js" and info["threads"] == 2 and info["isolated"] is True
    assert info["bytes"] == (artifacts / "tinybeauty.tflite").stat().st_size
    python_litert = BY_NAME["tflite"].load(artifacts / "tinybeauty.tflite")
    litert_page.set_mode("whole")
    try:
        for png, face in val_faces:
            made_up = litert_page.make_up(png, pixels=True)
            expected = python_litert(face, regions=made_up["regions"])
            assert made_up["output"].shape == expected.shape  # planar again, as the ONNX's
            assert np.abs(made_up["output"] - expected).max() <= LITERT_TOLERANCE, png
            assert _psnr(np.round(made_up["output"] * 255), np.round(expected * 255)) > 50, png
            python_pixels = np.round(np.clip(expected[0], 0, 1) * 255).transpose(1, 2, 0)
            shown = made_up["pixels"][..., :3].astype(int)
            assert np.abs(shown - python_pixels).max() <= 255 * LITERT_TOLERANCE + 1, png
    finally:
        litert_page.set_mode("auto")


LITERT_TOLERANCE = 3 / 255  # a few int8 steps of the residual where wasm and native requantize differently


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A real face (skimage's public-domain astronaut) off-centre in a 1400 x 900 landscape."""
    from skimage import data

    photo = Image.new("RGB", (1400, 900), (40, 90, 140))
    photo.paste(Image.fromarray(data.astronaut()).resize((840, 840)), (520, 30))
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    photo.save(path)
    return path


@pytest.fixture(scope="module")
def strong_model(tmp_path_factory):
    """An ONNX 'makeup' with a strong, image-shaped residual (0.3 x (0.5 - face): contrast down), in
    the shipped file's I/O contract: placement errors of the page's crops show, whatever a tiny
    trained test model would (barely) change."""
    import onnx
    from onnx import TensorProto, helper

    from export.common import INPUT_NAME, OUTPUT_NAME

    shape = [1, 3, 256, 256]
    graph = helper.make_graph(
        [helper.make_node("Mul", [INPUT_NAME, "gain"], ["scaled"]),
         helper.make_node("Add", ["scaled", "bias"], [OUTPUT_NAME])],
        "contrast", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, shape)],
        [helper.make_tensor("gain", TensorProto.FLOAT, [], [0.7]),
         helper.make_tensor("bias", TensorProto.FLOAT, [], [0.15])])
    folder = tmp_path_factory.mktemp("strong_model")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # onnxruntime-web 1.30 reads IR <= 13
    onnx.save(model, str(folder / "tinybeauty.onnx"))
    _strong_tflite(folder / "tinybeauty.tflite")  # the same function as the .tflite contract: NHWC float I/O
    return folder


def _strong_tflite(path) -> None:
    import litert_torch
    import litert_torch.progress
    import torch

    class Contrast(torch.nn.Module):
        def forward(self, face):
            return face * 0.7 + 0.15

    litert_torch.progress.console.quiet = True
    litert_torch.convert(Contrast().eval(), (torch.rand(1, 256, 256, 3),)).export(str(path))


def test_page_finds_and_makes_up_faces_as_apply_does(served, strong_model, scene, tmp_path):
    from apply.__main__ import main as apply_main
    from faces import Alignment
    from faces.tracking import FaceTracker, still_faces

    _need(find_chromium)
    photo = np.asarray(Image.open(scene).convert("RGB"))
    tracker = FaceTracker(256, smoothing=False)
    tracker.update(photo, 0.0)
    landmarks = tracker.tracks[0].face.landmarks
    with BrowserPage(strong_model) as page:
        shown = page.make_up(scene, pixels=True)["pixels"][..., :3]
        assert page.page.evaluate("tinybeauty.state.mode") == "faces" and shown.shape == photo.shape
        assert page.page.evaluate("tinybeauty.state.alignedBy") == ["mesh"]  # stills align from the mesh
        regions = page.regions
        # mesh.mjs's alignMesh is Alignment.from_mesh, template and all: the same crop from the same points
        by_page = page.page.evaluate("async (points) => (await import('./mesh.mjs')).alignMesh(points)",
                                     landmarks.tolist())
    by_python = Alignment.from_mesh(landmarks, 256)
    for key, want in (("origin", by_python.origin), ("xAxis", by_python.x_axis), ("yAxis", by_python.y_axis)):
        assert np.allclose(by_page[key], want, atol=1e-9), key
    expected = [face.alignment for face in still_faces(photo, 256)]
    assert len(regions) == len(expected) == 1
    side = np.hypot(*expected[0].x_axis)
    # The same chain (detector, mesh three times, the template's crop) as apply's: the same crop up
    # to the two resamplings of the mesh's 192 px input (canvas vs PIL), as the tracker test allows.
    for got, want in zip(regions, expected, strict=True):
        assert np.abs(np.subtract(got["origin"], want.origin)).max() < 0.03 * side
        assert np.abs(np.subtract(got["xAxis"], want.x_axis)).max() < 0.03 * side
    # The page's photo is apply's photo up to that noise and resampling: far closer to it than the
    # untouched photo is, and bit-identical away from the face.
    assert apply_main(["--model", str(strong_model / "tinybeauty.onnx"), str(scene), "--out", str(tmp_path)]) == 0
    by_apply = np.asarray(Image.open(tmp_path / "scene_makeup.png").convert("RGB"))
    changed = np.any(by_apply != photo, axis=-1)
    agree, untouched = _psnr(shown[changed], by_apply[changed]), _psnr(photo[changed], by_apply[changed])
    print(f"page vs apply {agree:.2f} dB, untouched vs apply {untouched:.2f} dB over {changed.sum()} pixels")
    assert changed.sum() > 10_000 and agree > untouched + 10
    corners = np.array([want.to_image(np.array([[0, 0], [256, 0], [0, 256], [256, 256]])) for want in expected])
    x0, y0 = np.floor(corners.min((0, 1))).astype(int) - int(0.1 * side)
    x1, y1 = np.ceil(corners.max((0, 1))).astype(int) + int(0.1 * side)
    outside = np.ones(photo.shape[:2], bool)
    outside[max(0, y0):y1, max(0, x0):x1] = False
    assert (shown[outside] == photo[outside]).all()


def test_box_by_hand_changes_only_the_box_and_strength_zero_nothing(page, scene):
    page.set_mode("box")
    try:
        shown = page.make_up(scene, pixels=True)["pixels"][..., :3]
        original = np.asarray(Image.open(scene).convert("RGB"))
        box = page.page.evaluate("tinybeauty.state.box")
        assert page.page.locator("#box").is_visible()
        inside = np.zeros(original.shape[:2], bool)
        inside[box["y"]:box["y"] + box["size"], box["x"]:box["x"] + box["size"]] = True
        assert box["size"] == 900 and (shown[~inside] == original[~inside]).all()
        assert np.abs(shown[inside].astype(int) - original[inside]).max() > 0
        page.set_strength(0)
        zero = np.frombuffer(base64.b64decode(page.page.evaluate("tinybeauty.resultBase64()")), np.uint8)
        assert (zero.reshape(*original.shape[:2], 4)[..., :3] == original).all()
    finally:
        page.set_strength(1)
        page.set_mode("auto")


def test_bad_input_gets_a_visible_message_and_keeps_the_result(page, val_faces, tmp_path):
    page.make_up(val_faces[0][0])
    before = page.page.evaluate("tinybeauty.resultBase64()")
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 100)
    huge = tmp_path / "huge.png"
    Image.new("RGB", (8000, 6500), (200, 150, 120)).save(huge, compress_level=1)
    for path, says in ((text, "is not an image"), (broken, "could not be decoded"), (huge, "8000×6500 (52 MP)")):
        assert page.open(path) == "error", path
        assert path.name in page.message and says in page.message, page.message
        assert page.page.evaluate("tinybeauty.resultBase64()") == before  # the last result stays on screen
    assert page.open(val_faces[1][0]) == "done" and page.message == ""


@pytest.mark.parametrize("model_file", [None, "tinybeauty.onnx"])  # None: the page's default, the .tflite
@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_model_that_cannot_load_is_a_visible_error(artifacts, served, tmp_path, damage, model_file):
    _need(find_chromium)
    broken = tmp_path / "artifacts"
    broken.mkdir()
    name = model_file or DEFAULT_MODEL
    if damage == "truncated":
        (broken / name).write_bytes((artifacts / name).read_bytes()[:5000])
    with pytest.raises(PageError) as error:
        with BrowserPage(broken, model_file):
            pass
    message = str(error.value)
    assert name in message
    assert ("HTTP 404" in message and "make export" in message) if damage == "missing" else "could not load" in message


def test_webcam_frames_are_made_up_until_stopped(artifacts, served):
    """Chromium's own synthetic camera (a moving pattern, no face): frames go on, none is made up."""
    _need(find_chromium)
    with BrowserPage(artifacts, fake_webcam=True) as page:
        page.start_camera(frames=3)
        assert page.page.locator("#webcam").inner_text() == "Stop the webcam"
        assert page.page.evaluate("tinybeauty.state.camera.regions.length") == 0
        page.page.wait_for_function("/frames\\/s/.test(document.getElementById('fps').textContent)")
        assert "ms" in page.page.locator("#frame-ms").inner_text()
        page.stop_camera()
        assert page.page.locator("#webcam").inner_text() == "Use the webcam"
        frames = page.page.evaluate("tinybeauty.state.frames")
        page.page.wait_for_timeout(300)
        assert page.page.evaluate("tinybeauty.state.frames") == frames  # stopped means stopped


# 3 s, 31 MB: a face of ~90 px, moving up to 1.6 face sizes a second (a person turning to look)
CLIP = Clip(640, 360, fps=30, frames=90, swing=(0.12, 0.04))


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("camera") / "astronaut.y4m", CLIP)


def _centre(region: dict) -> np.ndarray:
    return np.add(region["origin"], np.add(region["xAxis"], region["yAxis"]) / 2)


def test_page_tracker_matches_python_on_the_same_frames(page):
    """tracking.mjs and faces.tracking on the same frames and times: the same tracks, landmarks
    and smoothed crops, up to the two resamplings of the mesh's 192 px crop (canvas vs PIL)."""
    from faces.tracking import FaceTracker

    face = portrait(CLIP.portrait_side)
    indices = list(range(0, 12)) + list(range(40, 46))  # a jump: the track is lost and found again
    frames = [np.asarray(clip_frame(CLIP, i, face)) for i in indices]
    times = [i / CLIP.fps for i in indices]
    tracker = FaceTracker(256)
    by_python = [tracker.update(frame, time) for frame, time in zip(frames, times, strict=True)]
    by_page = page.track_frames(frames, times)
    for index, python_faces, page_faces in zip(indices, by_python, by_page, strict=True):
        assert len(python_faces) == len(page_faces) == 1, index
        want, got = python_faces[0], page_faces[0]
        assert got["trackId"] == want.track_id
        assert np.abs(np.asarray(got["landmarks"]) - want.landmarks).max() < 2.0, index  # pixels
        side = want.alignment.side
        assert np.abs(np.subtract(got["region"]["origin"], want.alignment.origin)).max() < 0.03 * side, index
        assert np.abs(np.subtract(got["region"]["xAxis"], want.alignment.x_axis)).max() < 0.03 * side, index


FACE_FOLLOWED = "tinybeauty.state.camera?.faces.length > 0"
MODEL_WORKER = {"modelWorker": "1"}  # the model stage in its worker, whatever the cores (the page's default on 4+)
# Where the camera's jobs ran, as the page reports them: the model stage, the detector worker's runs,
# the tracker's detector runs handed off the frame loop, the page's message.
CAMERA_JOBS = """({where: tinybeauty.state.camera.where, detectorRuns: tinybeauty.state.workers.detect.runs,
                   searches: tinybeauty.state.tracker.searches, frames: tinybeauty.state.frames,
                   message: document.getElementById('message').hidden ? '' :
                            document.getElementById('message').textContent})"""


STALE_SEARCH = """async ({frames, detectEvery}) => {
    // A tracker whose search (the detector's worker in the page) answers before the next frame, which is
    // where the face has moved on: that frame takes in stale faces. Counts the detector's and the mesh's
    // runs in each frame, and the search's detector passes.
    const {FaceTracker} = await import('./tracking.mjs');
    const {detectFaces} = await import('./faces.mjs');
    const {detector, mesh} = tinybeauty.state;
    const canvases = [];
    for (const png of frames) {
        const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
        const bitmap = await createImageBitmap(new Blob([bytes], {type: 'image/png'}));
        const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
        canvas.getContext('2d').drawImage(bitmap, 0, 0);
        canvases.push(canvas);
    }
    const runs = {detector: 0, mesh: 0, search: 0};
    const counted = (model, name) => {
        const network = Object.create(model.network);
        network.run = (...input) => { runs[name] += 1; return model.network.run(...input); };
        return {...model, network};
    };
    const searcher = counted(detector, 'search');
    const tracker = new FaceTracker({detector: counted(detector, 'detector'), mesh: counted(mesh, 'mesh'), detectEvery,
                                     search: (canvas, options) => detectFaces(searcher, canvas, options)});
    const steps = [];
    for (const [k, canvas] of canvases.entries()) {
        Object.assign(runs, {detector: 0, mesh: 0, search: 0});
        const faces = await tracker.update(canvas, k / 30);
        steps.push({faces: faces.length, detected: tracker.detected, around: tracker.around, merged: tracker.merged,
                    passes: runs.detector,
                    meshes: runs.mesh, centre: faces[0]?.region.origin});
        await tracker.searching;  // the worker answers before the next frame
        steps.at(-1).searchPasses = runs.search;
    }
    return steps;
}"""


def _png_base64(image: Image.Image, **options) -> str:
    """An image as the base64 of its PNG (the exact pixels, for the page to decode)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return base64.b64encode(buffer.getvalue()).decode()


def _frames_at(xs: list[int]) -> list[str]:
    """1280x720 PNGs (base64) of a small portrait at each x, y 200, on the fake camera's background."""
    from tools.camera_clip import BACKGROUND

    face, encoded = portrait(260), []
    for x in xs:
        image = Image.new("RGB", (1280, 720), BACKGROUND)
        image.paste(face, (x, 200))
        encoded.append(_png_base64(image))
    return encoded


@pytest.mark.parametrize("shift", [100, 500])
def test_stale_search_is_taken_up_around_the_old_faces(page, shift):
    """The detector's worker answers a few frames late and the face has moved on (its mesh misses it even
    on the widened square): the frame looks itself only around where the worker saw it, one detector pass,
    not the whole frame and its tiles (4 passes at 1280x720), and finds a face that moved ~2 boxes; one that
    went further is left to the next search, which finds it for the frame after."""
    # frame 0: no track, a search starts; frame 1 (the face moved): the search's faces are stale.
    steps = page.page.evaluate(STALE_SEARCH, {"frames": _frames_at([300, 300 + shift, 300 + shift]),
                                              "detectEvery": 30})
    first, jumped, after = steps
    assert first["faces"] == 0 and first["passes"] == 0  # the detector ran in the worker only
    # the old faces' window, once
    assert jumped["merged"] and jumped["around"] and not jumped["detected"] and jumped["passes"] == 1, steps
    if shift <= 100:
        assert jumped["faces"] == 1 and jumped["centre"][0] > 300 + shift - 50, steps
    else:
        assert jumped["faces"] == 0 and after["faces"] == 1 and after["passes"] == 0, steps


def test_a_stale_detection_of_a_followed_face_costs_no_mesh(page):
    """The periodic search answers with the face a track already follows, from a few frames back (the face
    has slid off its old box since): the frame runs the track's one mesh, not a new face's three more. With
    a face followed the search is the whole frame's pass alone; with none, the tiles too (4 at 1280x720)."""
    xs = [300, 300, 300, 310, 310]  # the track from frame 1; a search on frame 2, taken in on frame 3
    steps = page.page.evaluate(STALE_SEARCH, {"frames": _frames_at(xs), "detectEvery": 2})
    taken = steps[3]
    assert taken["merged"] and taken["faces"] == 1 and not (taken["detected"] or taken["around"]), steps
    assert taken["meshes"] == 1 and all(step["faces"] == 1 for step in steps[1:]), steps
    assert steps[0]["searchPasses"] == 4 and steps[2]["searchPasses"] == 1, steps


PLAYED_LATE = """async ({frames, indices, late}) => {
    // The clip's frames at these indices, as a loaded machine's frame loop takes them (far apart), with a
    // search (the detector's worker) that answers `late` frames after it was asked. Per frame: the faces'
    // landmarks, whether the frame ran the detector itself (the whole frame, or around a face), its meshes.
    const {FaceTracker} = await import('./tracking.mjs');
    const {detectFaces} = await import('./faces.mjs');
    const {detector, mesh} = tinybeauty.state;
    const canvases = {};
    for (const [index, png] of Object.entries(frames)) {
        const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
        const bitmap = await createImageBitmap(new Blob([bytes], {type: 'image/png'}));
        canvases[index] = new OffscreenCanvas(bitmap.width, bitmap.height);
        canvases[index].getContext('2d').drawImage(bitmap, 0, 0);
    }
    let meshes = 0, k = 0;
    const network = Object.create(mesh.network);
    network.run = (...input) => { meshes += 1; return mesh.network.run(...input); };
    const pending = [];
    const tracker = new FaceTracker({detector, mesh: {...mesh, network}, search: (canvas, options) => {
        const faces = detectFaces(detector, canvas, options);
        return new Promise((resolve) => pending.push({due: k + late, faces, resolve}));
    }});
    const steps = [];
    for (k = 0; k < indices.length; k++) {
        meshes = 0;
        const faces = await tracker.update(canvases[indices[k]], indices[k] / 30);
        steps.push({index: indices[k], landmarks: faces.map((face) => face.landmarks), detected: tracker.detected,
                    around: tracker.around, meshes});
        for (const answer of pending.filter((answer) => answer.due <= k)) {
            pending.splice(pending.indexOf(answer), 1);
            answer.resolve(await answer.faces);
        }
        await new Promise((resolve) => setTimeout(resolve, 0));  // the answer reaches the tracker
    }
    return steps;
}"""


def test_the_page_follows_a_face_its_loaded_frame_loop_sees_far_apart(page):
    """A loaded machine's frame loop (a phone's, or this one beside a training run) takes every 8th frame
    of the clip (~45 px between the frames it sees at the clip's fastest, half a face), and the detector's
    worker answers 4 frames late. The face is followed on every frame from the worker's first answer on,
    its mesh on the face (not half-way from the crop it had left: the catch-up mesh), and where the mesh
    loses it the frame looks around where it was, not waiting for the worker; the whole frame's detector
    never runs in the frame."""
    from faces import Alignment
    from faces.tracking import align_still

    face = portrait(CLIP.portrait_side)
    indices = [(8 * k) % CLIP.frames for k in range(24)]
    images = {index: clip_frame(CLIP, index, face) for index in sorted(set(indices))}
    encoded = {index: _png_base64(image, compress_level=1) for index, image in images.items()}
    first = align_still(np.asarray(images[0]), 256)[0]
    steps = page.page.evaluate(PLAYED_LATE, {"frames": encoded, "indices": indices, "late": 4})
    assert not any(step["landmarks"] for step in steps[:5])
    for step in steps[5:]:  # from the worker's first answer on
        assert len(step["landmarks"]) == 1, [(s["index"], len(s["landmarks"]), s["around"]) for s in steps]
        measured = Alignment.from_mesh(np.asarray(step["landmarks"][0]), 256)
        expected = first.centre + np.subtract(CLIP.offset(step["index"]), CLIP.offset(0))
        assert np.hypot(*(measured.centre - expected)) < 0.1 * first.side, step["index"]
    assert any(step["meshes"] == 2 for step in steps), [step["meshes"] for step in steps]  # a catch-up ran
    assert not any(step["detected"] for step in steps)


# Whether this browser copies a VideoFrame to RGBA itself (VideoFrame.copyTo's `format`): where it does not,
# FrameDrawer draws every frame instead.
RGBA_COPIES = """async () => {
    const frame = new VideoFrame(new Uint8Array(6), {format: 'I420', codedWidth: 2, codedHeight: 2, timestamp: 0});
    try {
        await frame.copyTo(new Uint8Array(16), {format: 'RGBA'});
        return true;
    } catch {
        return false;
    } finally {
        frame.close();
    }
}"""


@pytest.mark.parametrize("model_file", [DEFAULT_MODEL, "tinybeauty.onnx"])
def test_camera_mode_follows_the_face_on_a_clip(served, strong_model, camera_clip, model_file):
    """Chromium's fake camera plays a clip of a face on a known path: the page's crops follow
    the path, the made-up face is written back only under its crop, frames/s is shown, and the
    detector and the model ran in their workers, never in the frame loop. With either runtime:
    the default .tflite in LiteRT.js (its mesh too; its model stage in the frame loop, since LiteRT.js
    cannot start in a module worker), or the ONNX in onnxruntime-web (its model stage in its worker)."""
    from faces import Alignment
    from faces.tracking import align_still

    _need(find_chromium)
    first = align_still(np.asarray(clip_frame(CLIP, 0, portrait(CLIP.portrait_side))), 256)[0]
    litert = model_file.endswith(".tflite")
    with BrowserPage(strong_model, model_file, camera_clip=camera_clip, query=None if litert else MODEL_WORKER) as page:
        assert page.model_info["runtime"] == ("LiteRT.js" if litert else "onnxruntime-web")
        page.start_camera(frames=3)
        page.page.wait_for_function(FACE_FOLLOWED, timeout=60_000)  # the detector worker's first answer
        recorded = page.record_camera(12, code_rows=CODE_ROWS)
        page.page.wait_for_function("/\\d frames\\/s/.test(document.getElementById('fps').textContent)")
        jobs = page.page.evaluate(CAMERA_JOBS)
        copies = page.page.evaluate(RGBA_COPIES)
        page.stop_camera()
        before, after = (page.shown_pixels(side) for side in ("before", "after"))
        last = page.page.evaluate("tinybeauty.state.camera.regions")
    assert jobs["where"] == ("page" if litert else "worker"), jobs
    assert jobs["detectorRuns"] >= 1 and jobs["searches"] >= jobs["detectorRuns"], jobs
    assert not any(frame["detected"] for frame in recorded) and jobs["message"] == "", jobs
    # each frame by its own RGBA copy (FrameDrawer), where the browser makes one
    assert {frame["drawnBy"] for frame in recorded} == {"copy" if copies else "drawImage"}
    indices = [read_code(frame["rows"], CLIP) % CLIP.frames for frame in recorded]
    assert len(set(indices)) >= 6  # the face moved between the frames checked
    # Each frame's last different frame before it: on a loaded machine the camera can hand the page the same
    # frame twice, and the mesh of the second copy may still have run on the crop from the one before both.
    previous = [next((earlier for earlier in reversed(indices[:at]) if earlier != index), index)
                for at, index in enumerate(indices)]
    for before_it, index, frame in zip(previous, indices, recorded, strict=True):
        (region,), (landmarks,) = frame["regions"], frame["landmarks"]
        expected = first.centre + np.subtract(CLIP.offset(index), CLIP.offset(0))
        # The mesh follows the path: its crop (before smoothing) within 10% of the side, plus most
        # of the way the face went since the last frame the page made up (on a loaded machine the
        # page skips frames, and the mesh, run on the last one's region, trails an off-centre face).
        moved = np.hypot(*np.subtract(CLIP.offset(index), CLIP.offset(before_it)))
        measured = Alignment.from_mesh(np.asarray(landmarks), 256)
        error = np.hypot(*(measured.centre - expected))
        assert error < 0.1 * first.side + 0.75 * moved, (index, before_it, error, first.side, frame["ms"], indices)
        # The smoothed crop stays on the face. Its lag is checked against Python on the same
        # frames and times (above): here the fake camera stamps frames when it sends them, and
        # on a loaded machine that is not when their content was meant to be shown.
        assert np.hypot(*(_centre(region) - measured.centre)) < 0.5 * first.side
        assert abs(np.hypot(*region["xAxis"]) / first.side - 1) < 0.1
    (region,) = last  # the last frame's crop: made up inside its footprint, untouched outside it
    origin, x_axis, y_axis = (np.asarray(region[key]) for key in ("origin", "xAxis", "yAxis"))
    corners = np.array([origin, origin + x_axis, origin + y_axis, origin + x_axis + y_axis])
    (x0, y0), (x1, y1) = np.floor(corners.min(0)).astype(int) - 1, np.ceil(corners.max(0)).astype(int) + 1
    changed = np.any(before != after, axis=-1)
    outside = np.ones(changed.shape, bool)
    outside[max(0, y0):y1, max(0, x0):x1] = False
    assert changed.sum() > 1000 and not changed[outside].any()


def test_a_camera_frame_is_copied_with_the_pixels_drawimage_gives(page):
    """FrameDrawer (the camera's frames onto their buffer): an I420 frame, as cameras send them, goes
    through its own RGBA copy, pixel for pixel what drawImage draws; one it cannot copy as it is (drawn at
    another size) is drawn."""
    result = page.page.evaluate("""async () => {
        const {FrameDrawer} = await import('./camera.mjs');
        const [width, height] = [320, 180];
        const bytes = new Uint8Array(width * height * 3 / 2);
        for (let i = 0, seed = 7; i < bytes.length; i++) bytes[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
        const frame = new VideoFrame(bytes, {format: 'I420', codedWidth: width, codedHeight: height, timestamp: 0});
        const canvas = (w, h) => new OffscreenCanvas(w, h).getContext('2d', {willReadFrequently: true});
        const [copied, drawn, small] = [canvas(width, height), canvas(width, height), canvas(width / 2, height / 2)];
        const drawer = new FrameDrawer();
        const how = await drawer.draw(copied, frame, width, height);
        drawn.drawImage(frame, 0, 0);
        const howSmall = await drawer.draw(small, frame, width / 2, height / 2);
        frame.close();
        const [a, b] = [copied, drawn].map((context) => context.getImageData(0, 0, width, height).data);
        let differ = 0;
        for (let i = 0; i < a.length; i++) differ += a[i] !== b[i];
        const spread = new Set(a.filter((_, i) => i % 4 === 0)).size;
        return {how, howSmall, differ, spread, copies: drawer.copies};
    }""")
    copies = page.page.evaluate(RGBA_COPIES)  # Chromium 127 and later: yes
    assert result == {"how": "copy" if copies else "drawImage", "howSmall": "drawImage", "differ": 0,
                      "spread": result["spread"], "copies": copies}
    assert result["spread"] > 200  # a frame of many colours, not one flat value


def test_camera_patches_show_what_the_photo_path_composes(page):
    """The camera's made-up faces, as patches over their footprints put in order (composePatch), give
    exactly the photo path's whole-frame compose(): two overlapping, turned faces near the edge."""
    result = page.page.evaluate("""async () => {
        const {compose, composePatch} = await import('./makeup.mjs');
        const [width, height, size] = [300, 200, 64];
        const frame = new OffscreenCanvas(width, height).getContext('2d', {willReadFrequently: true});
        const photo = new ImageData(width, height);
        let seed = 3;
        const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
        for (let i = 0; i < photo.data.length; i++) photo.data[i] = i % 4 === 3 ? 255 : 255 * random();
        frame.putImageData(photo, 0, 0);
        const tensor = () => Float32Array.from({length: 3 * size * size}, random);
        const faces = [{origin: [-20, 30], xAxis: [150, 30], yAxis: [-30, 150]},
                       {origin: [80, 10], xAxis: [120, -20], yAxis: [20, 120]}].map(
            (region) => ({region, face: tensor(), madeUp: tensor()}));
        const whole = compose(photo, faces, size, 1.5).data;
        const patches = [];
        for (const face of faces) patches.push(composePatch(frame, face, size, 1.5, patches));
        for (const {box: [x0, y0], pixels} of patches) frame.putImageData(pixels, x0, y0);
        const shown = frame.getImageData(0, 0, width, height).data;
        let differ = 0, changed = 0;
        for (let i = 0; i < shown.length; i++) {
            differ += shown[i] !== whole[i];
            changed += shown[i] !== photo.data[i];
        }
        const [a, b] = patches.map((patch) => patch.box);
        return {differ, changed, overlap: Math.min(a[2], b[2]) > Math.max(a[0], b[0])};
    }""")
    assert result["differ"] == 0 and result["overlap"] and result["changed"] > 10_000, result


def test_a_worker_that_fails_is_reported_and_the_camera_goes_on(served, strong_model, camera_clip):
    """The workers' script cannot be fetched (a static host without it): the page says so, and
    does the detector's and the model's work itself: the face is still found, followed and made up."""
    _need(find_chromium)
    with BrowserPage(strong_model, "tinybeauty.onnx", camera_clip=camera_clip, query=MODEL_WORKER) as page:
        page.page.route("**/worker.mjs", lambda route: route.fulfill(status=404, body="not here"))
        page.start_camera(frames=3)
        page.page.wait_for_function("!document.getElementById('message').hidden", timeout=60_000)
        page.page.wait_for_function(FACE_FOLLOWED, timeout=60_000)
        jobs = page.page.evaluate(CAMERA_JOBS)
        page.page.wait_for_function(f"tinybeauty.state.frames >= {jobs['frames'] + 5}", timeout=60_000)
        (frame,) = page.record_camera(1)
        page.stop_camera()
    assert "worker failed" in jobs["message"] and "does that job itself" in jobs["message"], jobs
    assert jobs["where"] == "page" and jobs["detectorRuns"] == 0, jobs
    assert len(frame["regions"]) == 1 and np.isfinite(frame["ms"]["model"])


def test_a_dropped_photo_is_made_up(page, val_faces):
    """Drag and drop: the same path as the file input, entered from a drop event."""
    data = base64.b64encode(val_faces[2][0].read_bytes()).decode()
    page.page.evaluate("""(data) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
        document.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", data)
    page.page.wait_for_function("document.body.dataset.state === 'done' && tinybeauty.state.name === 'dropped.png'")
    assert page.message == "" and "dropped.png" in page.page.locator("#photo-info").inner_text()


def test_bundle_runs_from_a_plain_static_server_on_one_thread(artifacts, served, tmp_path):
    """`python -m web --bundle`: the page from any static host; without the isolation headers
    the runtime (LiteRT.js, the default) falls back to one thread, and the page says so."""
    import functools
    import http.server
    import threading

    from web.__main__ import main as web_main

    _need(find_chromium)
    site = tmp_path / "site"
    assert web_main(["--artifacts", str(artifacts), "--bundle", str(site)]) == 0
    assert {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()} >= {
        "index.html", "app.mjs", "makeup.mjs", "faces.mjs", "network.mjs", "style.css", "tracking.mjs",
        "tracking_step.mjs", "tracking.json", "model/tinybeauty.onnx",
        "model/tinybeauty.tflite", "model/manifest.json", "detector/face_detector.onnx",
        "detector/face_landmark.tflite",
        "litert/index.js", "litert/wasm-utils.js", *(f"litert/wasm/{name}" for name in LITERT_WASM),
        *(f"ort/{name}" for name in ORT_FILES)}
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = playwright().chromium.launch(executable_path=find_chromium(), args=LAUNCH_ARGS).new_page()
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=120_000)
        assert page.evaluate("tinybeauty.state.model.isolated") is False
        assert page.evaluate("tinybeauty.state.model.runtime") == "LiteRT.js"
        assert "not cross-origin isolated, so one thread only" in page.locator("#runtime").inner_text()
        page.context.browser.close()
    finally:
        server.shutdown()
        server.server_close()


def test_exif_rotated_phone_photo_comes_back_upright(page, tmp_path):
    """A JPEG stored sideways with EXIF orientation 6, as phones write them: upright on the page,
    with the face found, as `apply` does (PIL's exif_transpose)."""
    from skimage import data

    upright = Image.fromarray(data.astronaut()).resize((300, 400))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # stored 400 x 300
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    photo = tmp_path / "phone.jpg"
    stored.save(photo, exif=exif, quality=95)
    shown = page.make_up(photo, pixels=True)["pixels"]
    assert shown.shape[:2] == (400, 300)
    assert page.page.evaluate("tinybeauty.state.mode") == "faces"


def test_page_constants_are_apply_and_detector_constants(page):
    """The page mirrors Python: the same face mask, strength range and detector input as apply,
    and the same tracking and mesh constants as faces.tracking and faces.mesh."""
    import inspect
    import json

    from apply.__main__ import FEATHER, MASK_CENTRE, MASK_RADII, MAX_STRENGTH
    from faces import DETECTOR_SIZE, mesh, tracking, tracking_step

    mirrored = page.page.evaluate("""async () => {
        const makeup = await import('./makeup.mjs');
        const faces = await import('./faces.mjs');
        const mesh = await import('./mesh.mjs');
        const tracking = await import('./tracking.mjs');
        return {mask: makeup.MASK, strength: makeup.MAX_STRENGTH, detector: faces.DETECTOR_SIZE,
                mesh: {size: mesh.MESH_SIZE, scale: mesh.REGION_SCALE, presence: mesh.MIN_PRESENCE,
                       eyes: [mesh.RIGHT_EYE, mesh.LEFT_EYE], mouth: mesh.MOUTH_CORNERS, line: mesh.EYE_LINE},
                tracking: {smoothing: tracking.SMOOTHING, derivative: tracking.DERIVATIVE_CUTOFF,
                           fallback: tracking.FALLBACK_DT, hold: tracking.REGION_HOLD, match: tracking.MATCH_IOU,
                           duplicate: tracking.DUPLICATE_IOU, every: tracking.DETECT_EVERY,
                           faces: tracking.MAX_FACES, params: tracking.PARAMS}};
    }""")
    assert mirrored["mask"] == {"centre": list(MASK_CENTRE), "radii": list(MASK_RADII), "feather": FEATHER}
    assert mirrored["strength"] == MAX_STRENGTH and mirrored["detector"] == DETECTOR_SIZE
    assert mirrored["mesh"] == {"size": mesh.MESH_SIZE, "scale": mesh.REGION_SCALE, "presence": mesh.MIN_PRESENCE,
                                "eyes": [list(mesh.RIGHT_EYE), list(mesh.LEFT_EYE)],
                                "mouth": list(mesh.MOUTH_CORNERS), "line": list(mesh.EYE_LINE)}
    defaults = inspect.signature(tracking.FaceTracker).parameters
    assert mirrored["tracking"] == {
        "smoothing": {key: list(value) for key, value in tracking_step.SMOOTHING.items()},
        "derivative": tracking_step.DERIVATIVE_CUTOFF, "fallback": tracking_step.FALLBACK_DT,
        "hold": tracking_step.REGION_HOLD, "match": tracking_step.MATCH_IOU, "duplicate": tracking_step.DUPLICATE_IOU,
        "every": defaults["detect_every"].default, "faces": defaults["max_faces"].default,
        "params": json.loads(tracking_step.PARAMS_FILE.read_text())}  # the one file both languages read


def test_the_page_reports_the_litert_version_web_package_json_pins():
    """network.mjs names LiteRT.js's version (the package does not report its own): the pinned one."""
    import json
    import re

    from web.server import WEB

    pinned = json.loads((WEB / "package.json").read_text())["dependencies"]["@litertjs/core"]
    named = re.search(r"LITERT_VERSION = '([^']+)'", (WEB / "static" / "network.mjs").read_text()).group(1)
    installed = WEB / "node_modules" / "@litertjs" / "core" / "package.json"
    assert named == pinned
    if installed.is_file():
        assert json.loads(installed.read_text())["version"] == pinned
