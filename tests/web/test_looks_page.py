"""The page over a catalogue of looks, in Chromium: the swatches come from the set's looks.json, a swatch or a
blend runs the same model again with other look weights (the output Python's runtime gives for them), a
one-look set shows no swatches, a looks.json that does not fit its file is refused on the page, and on the
live camera a switch is the next frame's look with no frame lost to it. The benchmark's browser row runs
each face with its own look. Skipped where no Chromium is installed, as tests/web/test_web.py is
(TINYBEAUTY_REQUIRE_BROWSER=1 fails instead).

The model: two looks that tint the face, berry redder and smoky bluer, in the shipped files' I/O contract
(a face and ``look_weights`` [1, 2]): which look a pixel carries can be read off its colour."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import IMAGE_SIZE, train_args
from PIL import Image
from test_web import (  # noqa: F401 (fixtures: the camera's clip, a one-look model)
    LITERT_TOLERANCE,
    MODEL_WORKER,
    _need,
    camera_clip,
    strong_model,
)

from export.common import INPUT_NAME, LOOKS_INPUT_NAME, OUTPUT_NAME
from export.formats import BY_NAME
from export.manifest import LOOKS_FILE
from tools.browser import BrowserPage, PageError, find_chromium, write_face_png

pytestmark = pytest.mark.slow

SIZE = 256
LOOKS = [{"name": "berry", "index": 0, "swatch_hex": "#9e143d", "val_psnr_db": 31.2, "val_baseline_db": 29.0},
         {"name": "smoky", "index": 1, "swatch_hex": "#4c403b", "val_psnr_db": 27.5, "val_baseline_db": 26.1}]
# Each look's shift of R, G, B: berry takes green and blue off, smoky red and green; downwards only, so on a face
# (few pixels under 0.2) a channel's change is about the weighted shift: 51 levels a look, the camera test's signal.
TINTS = np.array([[0.0, -0.2, -0.2], [-0.2, -0.2, 0.0]], np.float32)
EXACT = 1e-6  # the same float graph in wasm and in Python


def catalogue(looks: list[dict]) -> dict:
    """looks.json as the export writes it (export/pipeline.py looks_document)."""
    names = ", ".join(look["name"] for look in looks)
    return {"input": LOOKS_INPUT_NAME if len(looks) > 1 else None,
            "input_spec": f"{LOOKS_INPUT_NAME}: float32 [1,{len(looks)}], one weight per look ({names})",
            "image_size": SIZE, "looks": looks}


def tinted(face: np.ndarray, weights) -> np.ndarray:
    """What the looks model makes of a 1 x 3 x S x S face with these look weights."""
    shift = np.asarray(weights, np.float32) @ TINTS
    return np.clip(face + shift[None, :, None, None], 0, 1)


@pytest.fixture(scope="module")
def looks_model(tmp_path_factory):
    """A set of the two-look model: the ONNX (onnxruntime-web), the .tflite (LiteRT.js; NHWC face) and looks.json."""
    import litert_torch
    import litert_torch.progress
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", [LOOKS_INPUT_NAME, "tints"], ["shift"]),
         helper.make_node("Reshape", ["shift", "per_channel"], ["shift_image"]),
         helper.make_node("Add", [INPUT_NAME, "shift_image"], ["shifted"]),
         helper.make_node("Clip", ["shifted", "low", "high"], [OUTPUT_NAME])],
        "looks", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, SIZE, SIZE]),
                  helper.make_tensor_value_info(LOOKS_INPUT_NAME, TensorProto.FLOAT, [1, len(LOOKS)])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor("tints", TensorProto.FLOAT, list(TINTS.shape), TINTS.ravel().tolist()),
         helper.make_tensor("per_channel", TensorProto.INT64, [4], [1, 3, 1, 1]),
         helper.make_tensor("low", TensorProto.FLOAT, [], [0.0]),
         helper.make_tensor("high", TensorProto.FLOAT, [], [1.0])])
    folder = tmp_path_factory.mktemp("looks_model")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # onnxruntime-web 1.30 reads IR <= 13
    onnx.save(model, str(folder / "tinybeauty.onnx"))

    class Tint(torch.nn.Module):  # the same function as the .tflite contract: an NHWC face
        def forward(self, face, look_weights):
            return torch.clamp(face + (look_weights @ torch.from_numpy(TINTS)).reshape(1, 1, 1, 3), 0.0, 1.0)

    litert_torch.progress.console.quiet = True
    litert_torch.convert(Tint().eval(), (torch.rand(1, SIZE, SIZE, 3), torch.full((1, 2), 0.5))).export(
        str(folder / "tinybeauty.tflite"))
    (folder / LOOKS_FILE).write_text(json.dumps(catalogue(LOOKS)))
    return folder


@pytest.fixture(scope="module")
def face_photo(tmp_path_factory):
    """An aligned-looking 256 x 256 face crop (skimage's public-domain astronaut) and its tensor."""
    from skimage import data

    pixels = np.asarray(Image.fromarray(data.astronaut()[20:300, 100:380]).resize((SIZE, SIZE)), np.float32) / 255
    face = pixels.transpose(2, 0, 1)[None]
    return write_face_png(face[0], tmp_path_factory.mktemp("looks_face") / "face.png"), face


def python_onnx(folder, face: np.ndarray, weights) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / "tinybeauty.onnx"), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: face, LOOKS_INPUT_NAME: np.asarray([weights], np.float32)})[0]


def model_output(page: BrowserPage, size: int = SIZE) -> np.ndarray:
    import base64

    raw = base64.b64decode(page.page.evaluate("tinybeauty.modelOutputBase64()"))
    return np.frombuffer(raw, np.float32).reshape(1, 3, size, size).copy()


def set_blend(page: BrowserPage, other: str, share: float) -> None:
    """The blend control as a person moves it: the other look, then the slider; returns once the photo shows it."""
    page.page.select_option("#blend-look", label=other)
    page.page.wait_for_function(DONE)
    page.page.evaluate("""(share) => {
        const slider = document.getElementById('blend');
        slider.value = String(share);
        slider.dispatchEvent(new Event('input'));
    }""", share)
    page.page.wait_for_function(DONE)


DONE = "document.body.dataset.state === 'done'"  # a look switch on a photo: 'working' until the photo shows it


@pytest.mark.parametrize("model_file", ["tinybeauty.onnx", "tinybeauty.tflite"])
def test_swatches_from_looks_json_switch_the_look_as_python_runs_it(looks_model, face_photo, model_file):
    _need(find_chromium)
    png, face = face_photo
    with BrowserPage(looks_model, model_file) as page:
        assert page.looks == ["berry", "smoky"]
        swatches = page.page.locator("#swatches .swatch")
        assert page.page.locator("#looks").is_visible() and swatches.all_inner_texts() == ["berry", "smoky"]
        colours = page.page.evaluate("""[...document.querySelectorAll('#swatches .chip')].map(
            (chip) => getComputedStyle(chip).backgroundColor)""")
        assert colours == ["rgb(158, 20, 61)", "rgb(76, 64, 59)"], "looks.json's swatch_hex"
        assert "2 looks: berry, smoky" in page.page.locator("#model-name").inner_text()
        page.set_mode("whole")  # the photo is the face crop
        first = page.make_up(png)["output"]  # the first look, as apply with no --look
        page.page.evaluate("window.loaded = tinybeauty.state.model.network")
        outputs = {}
        for index, look in enumerate(("smoky", "berry")):
            swatches.nth(1 - index).click()
            page.page.wait_for_function(DONE)
            outputs[look] = model_output(page)
            assert page.page.locator(".swatch[aria-pressed=true]").inner_text() == look
            assert page.page.locator("#look-chosen").inner_text() == look
        blends = {}
        for other, share in (("smoky", 0.3), ("smoky", 1.0)):
            set_blend(page, other, share)
            blends[share] = model_output(page)
        described = page.page.locator("#look-chosen").inner_text()
        page.set_look("berry=0.7,smoky=0.3")  # the page's API, as `apply --look` takes a blend
        by_choice = model_output(page)
        same_model = page.page.evaluate("tinybeauty.state.model.network === window.loaded")
        with pytest.raises(PageError, match="no look 'glitter'; its looks are berry, smoky"):
            page.set_look("glitter")
    tolerance = EXACT if model_file.endswith(".onnx") else 1e-5  # LiteRT.js: its own float kernels
    for look, weights in (("berry", [1, 0]), ("smoky", [0, 1])):
        assert np.abs(outputs[look] - python_onnx(looks_model, face, weights)).max() <= tolerance, look
        assert np.abs(outputs[look] - tinted(face, weights)).max() <= 1e-5, look
    assert np.array_equal(first, outputs["berry"])
    assert np.abs(outputs["berry"] - outputs["smoky"]).max() > 0.15, "each look its own colour"
    assert np.abs(blends[0.3] - python_onnx(looks_model, face, [0.7, 0.3])).max() <= tolerance
    assert np.abs(blends[1.0] - outputs["smoky"]).max() <= tolerance, "all the way: the other look"
    assert described == "smoky", "a blend at 1 is the other look alone"
    assert np.array_equal(by_choice, blends[0.3])
    assert same_model, "a look is another input value: the model is not loaded again"


@pytest.mark.parametrize("with_catalogue", [False, True])
def test_a_one_look_set_shows_no_swatches_and_runs_as_before(strong_model, face_photo, tmp_path,  # noqa: F811
                                                              with_catalogue):
    """A set exported before looks.json, or with its one look in it: no look controls, the model as it was."""
    _need(find_chromium)
    png, face = face_photo
    folder = tmp_path / "one_look"
    shutil.copytree(strong_model, folder)
    if with_catalogue:
        (folder / LOOKS_FILE).write_text(json.dumps(catalogue(LOOKS[:1])))
    with BrowserPage(folder, "tinybeauty.onnx") as page:
        assert page.looks == [] and not page.page.locator("#looks").is_visible()
        assert "looks" not in page.page.locator("#model-name").inner_text()
        page.set_mode("whole")
        output = page.make_up(png)["output"]
        page.set_look("berry" if with_catalogue else "0")  # its own look: taken, nothing changes
        with pytest.raises(PageError, match="no look 'smoky'"):
            page.set_look("smoky")
    assert np.abs(output - (face * 0.7 + 0.15)).max() <= EXACT


@pytest.mark.parametrize(("model_file", "looks", "words"), [
    ("tinybeauty.onnx", LOOKS + [{"name": "natural", "index": 2, "swatch_hex": "#c98a7a"}],
     "names 3 look(s) (berry, smoky, natural) but tinybeauty.onnx takes 2 look weights"),
    ("tinybeauty.tflite", LOOKS[:1], "names 1 look(s) (berry) but tinybeauty.tflite takes 2 look weights"),
    ("one_look.onnx", LOOKS, "names 2 looks (berry, smoky) but one_look.onnx takes no look input"),
    ("tinybeauty.onnx", None, "tinybeauty.onnx takes 2 look weights but its set has no looks.json"),
])
def test_a_looks_json_that_does_not_fit_its_file_is_refused_on_the_page(looks_model, strong_model, tmp_path,  # noqa: F811
                                                                         model_file, looks, words):
    _need(find_chromium)
    folder = tmp_path / "mismatched"
    shutil.copytree(looks_model, folder)
    shutil.copyfile(strong_model / "tinybeauty.onnx", folder / "one_look.onnx")
    if looks is None:
        (folder / LOOKS_FILE).unlink()
    else:
        (folder / LOOKS_FILE).write_text(json.dumps(catalogue(looks)))
    with pytest.raises(PageError) as refused:
        BrowserPage(folder, model_file).__enter__()
    assert "The model's looks could not be read" in str(refused.value) and words in str(refused.value)
    assert "make export" in str(refused.value)


# The camera's frames as they are shown: the look weights each was made up with, and 7 x 7 pixels of the clip's
# flat background (left of the face's path, below the frame code) in the frame and in the after layer, with the
# page's counts.
RECORD_SWITCHES = """(switches) => {
    window.recorded = [];
    const plan = new Map(switches);
    const before = document.getElementById('before').getContext('2d', {willReadFrequently: true});
    const after = document.getElementById('after').getContext('2d', {willReadFrequently: true});
    const {loop, workers} = tinybeauty.state;
    window.camera = {network: tinybeauty.state.model.network, worker: workers.makeUp, runs: workers.makeUp?.runs};
    tinybeauty.state.onFrame = (frame) => {
        const [x, y] = [20, Math.round(before.canvas.height / 2) - 3];
        window.recorded.push({index: frame.index, faces: frame.regions.length, where: frame.where,
                              weights: Array.from(frame.makeup.lookWeights),
                              taken: Array.from(before.getImageData(x, y, 7, 7).data),
                              shown: Array.from(after.getImageData(x, y, 7, 7).data),
                              inFlight: loop.taken - frame.index, dropped: frame.dropped});
        if (plan.has(window.recorded.length)) tinybeauty.setLook(plan.get(window.recorded.length));
    };
}"""
SWITCHES = [(3, "smoky"), (6, "berry=0.5,smoky=0.5"), (9, "berry"), (12, "smoky")]  # after that many frames


@pytest.mark.parametrize("model_file", ["tinybeauty.onnx", "tinybeauty.tflite"])
def test_a_look_switch_on_the_camera_is_the_next_frame_and_loses_none(looks_model, camera_clip, model_file):  # noqa: F811
    """The camera, the look switched four times as frames are shown: the frame after each switch is made up
    with the new look (its colour), every frame before and after is made up, no frame the page took is lost, and
    the model, its session and its worker stay the ones loaded: a switch is another input value. The whole frame
    is the face crop (the Faces menu), so no frame waits on the tracker, which a loaded machine can make lose a
    moving face for a few frames. The ONNX with its model stage in a worker, the .tflite in the frame loop."""
    _need(find_chromium)
    query = None if model_file.endswith(".tflite") else MODEL_WORKER
    with BrowserPage(looks_model, model_file, camera_clip=camera_clip, query=query) as page:
        page.set_mode("whole")
        page.start_camera(frames=3)
        page.page.evaluate(RECORD_SWITCHES, SWITCHES)
        frames = len(SWITCHES) * 3 + 3
        page.page.wait_for_function(f"window.recorded.length >= {frames}", timeout=120_000)
        recorded = page.page.evaluate(f"window.recorded.slice(0, {frames})")
        kept = page.page.evaluate("""({same: tinybeauty.state.model.network === window.camera.network &&
                                          tinybeauty.state.workers.makeUp === window.camera.worker,
                                   runs: (tinybeauty.state.workers.makeUp?.runs ?? 0) - (window.camera.runs ?? 0),
                                   failed: Boolean(tinybeauty.state.workers.makeUp?.failure),
                                   message: document.getElementById('message').hidden ? '' :
                                            document.getElementById('message').textContent})""")
        page.stop_camera()
    expected = [[1, 0]] * 3 + [[0, 1]] * 3 + [[0.5, 0.5]] * 3 + [[1, 0]] * 3 + [[0, 1]] * 3
    assert [frame["weights"] for frame in recorded] == expected, "each switch is the next frame's look"
    assert [frame["index"] for frame in recorded] == list(range(recorded[0]["index"], recorded[0]["index"] + frames))
    assert all(frame["faces"] == 1 and min(frame["shown"][3::4]) == 255 for frame in recorded), "each frame made up"
    assert all(frame["inFlight"] in (0, 1) for frame in recorded), "no frame taken and left unshown"
    assert {frame["where"] for frame in recorded} == {"page" if query is None else "worker"}
    for frame in recorded:  # the look's tint: each pixel shifted by the weighted tints (clipped at 0, as red is)
        taken, shown = (np.asarray(frame[key], float).reshape(-1, 4)[:, :3] for key in ("taken", "shown"))
        assert np.ptp(taken, axis=0).max() <= 2, "the clip's flat background"
        tinted_pixels = np.clip(taken + 255 * (np.asarray(frame["weights"]) @ TINTS), 0, 255)
        assert np.abs(shown - tinted_pixels).max() <= 1, (frame["index"], frame["weights"], shown[0], taken[0])
    assert kept["same"] and not kept["failed"] and kept["message"] == "", kept
    if query is not None:
        assert kept["runs"] >= frames, kept
    print(f"{model_file}: camera frames dropped while recording: {recorded[-1]['dropped'] - recorded[0]['dropped']}")


def test_the_benchmark_runs_each_face_through_the_page_with_its_look(looks_model, face_photo):
    """benchmark/browser.py's row for a set of several looks: each face goes through the page with its own look
    chosen (by name), so its outputs are each face's look, in the faces' order, as suite.py scores them per look."""
    from benchmark.browser import browser_row

    _need(find_chromium)
    _, face = face_photo
    faces = torch.from_numpy(np.concatenate([face, face[:, :, ::-1].copy(), face[:, ::-1].copy(), face]))
    looks = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0]), 2).float()
    manifest = {"artifacts": [{"format": "onnx", "file": "tinybeauty.onnx", "bytes": 1}]}
    row, outputs = browser_row(looks_model, manifest, {"val": (faces, faces)}, threads=[], min_runs=2,
                               min_seconds=0, fmt="onnx", looks={"val": looks}, names=("berry", "smoky"))
    assert not any(note.startswith("not run") for note in row["notes"]), row["notes"]
    assert "each face with its look chosen on the page (berry, smoky)" in row["notes"][0]
    assert outputs["val"].shape == (4, 3, SIZE, SIZE) and row["latency"]
    for made_up, source, weights in zip(outputs["val"], faces.numpy(), looks.numpy(), strict=True):
        assert np.abs(made_up[None] - python_onnx(looks_model, source[None], weights)).max() <= EXACT
    wrong = {"val": looks}, ("smoky", "berry")  # the checkpoint's looks in another order than looks.json's
    row, outputs = browser_row(looks_model, manifest, {"val": (faces, faces)}, [], 2, 0, "onnx", *wrong)
    assert outputs == {}
    assert "the page's looks (berry, smoky) are not the checkpoint's (smoky, berry)" in row["notes"][0]


@pytest.mark.parametrize(("choice", "shown", "message"), [
    ("smoky", "smoky", ""), ("berry=0.25,smoky=0.75", "berry 0.25 + smoky 0.75", ""),
    ("glitter", "berry", "?look=glitter: tinybeauty.onnx has no look 'glitter'; its looks are berry, smoky")])
def test_the_url_names_the_look_to_start_with(looks_model, choice, shown, message):
    """?look=CHOICE (a link to a look): the page opens on it; one the file cannot take is said, and the first look
    shown."""
    _need(find_chromium)
    with BrowserPage(looks_model, "tinybeauty.onnx", query={"look": choice}) as page:
        assert page.page.locator("#look-chosen").inner_text() == shown
        assert page.message.startswith(message)
        weights = page.page.evaluate("Array.from(tinybeauty.state.lookWeights)")
    assert weights == {"smoky": [0, 1], "glitter": [1, 0]}.get(choice, [0.25, 0.75])


@pytest.fixture(scope="module")
def exported_looks(tmp_path_factory):
    """A real two-look network (berry on 12 faces, smoky on 12, ten short epochs: after two its looks' residuals
    differed by less than the int8 output's step, so a file gave both the same face) through `python -m export`:
    its int8 .onnx and .tflite, each with the look input, and the set's looks.json; with the checkpoint's split."""
    from export.__main__ import main as export_main
    from train.__main__ import main as train_main
    from train.synthetic import write_dataset

    parent = tmp_path_factory.mktemp("looks_data")
    for look in ("berry", "smoky"):
        write_dataset(parent / look, n=12, size=IMAGE_SIZE, workers=1, look=look)
    run = tmp_path_factory.mktemp("looks_run")
    args = train_args(parent / "berry", run, "--epochs", "10", "--qat-epochs", "1", "--threads", "1",
                      "--eye-mask", "labels")
    at = args.index("--data")
    args[at:at + 2] = ["--data", f"berry={parent / 'berry'}", "--data", f"smoky={parent / 'smoky'}"]
    assert train_main(args) == 0
    out = tmp_path_factory.mktemp("looks_artifacts")
    assert export_main(["--checkpoint", str(run / "tinybeauty_best_psnr.pt"), "--out", str(out), "--formats", "onnx",
                        "tflite", "--calibration-images", "8", "--val-images", "2"]) == 0
    return out, run / "tinybeauty_best_psnr.pt"


@pytest.mark.parametrize(("model_file", "tolerance"), [("tinybeauty.onnx", EXACT),
                                                       ("tinybeauty.tflite", LITERT_TOLERANCE)])
def test_an_exported_network_of_looks_runs_each_look_as_its_runtime_in_python(exported_looks, tmp_path, model_file,
                                                                              tolerance):
    """The files `python -m export` writes for a two-look checkpoint, in the page: each look and a blend give what
    the same file gives in Python's runtime (int8 ONNX: the same integer arithmetic; the .tflite: within the few
    int8 steps LiteRT.js rounds otherwise, as test_web.py holds the one-look file to)."""
    from models.checkpoint import checkpoint_split, load_checkpoint
    from models.data import faces_as_tensors, load_split

    _need(find_chromium)
    artifacts, checkpoint = exported_looks
    _, saved = load_checkpoint(checkpoint)
    source, _ = faces_as_tensors(load_split(checkpoint_split(saved, checkpoint)["looks"]["smoky"], "val", limit=1))
    face = source[:1].numpy()
    png = write_face_png(face[0], tmp_path / "face.png")
    python_runtime = BY_NAME[model_file.rsplit(".", 1)[1]].load(artifacts / model_file)
    outputs = {}
    with BrowserPage(artifacts, model_file, threads=2) as page:
        assert page.looks == ["berry", "smoky"] and page.page.locator("#looks").is_visible()
        page.set_mode("whole")
        regions = page.make_up(png)["regions"]  # the maps the page drew from its mesh, fed to every look
        for choice in ("berry", "smoky", "berry=0.5,smoky=0.5"):
            page.set_look(choice)
            outputs[choice] = model_output(page, face.shape[-1])
    for choice, weights in (("berry", [1, 0]), ("smoky", [0, 1]), ("berry=0.5,smoky=0.5", [0.5, 0.5])):
        expected = python_runtime(face, np.asarray([weights], np.float32), regions)
        assert np.abs(outputs[choice] - expected).max() <= tolerance, choice
    assert np.abs(outputs["berry"] - outputs["smoky"]).max() > 0, "each look its own output"
