"""The page's region sliders in Chromium: a slider recomposes the photo without running the model again, puts
the regions where `python -m apply --regions` puts them, and every slider back at 1 is the plain result.
Skipped where no Chromium is installed, as tests/web/test_web.py is (TINYBEAUTY_REQUIRE_BROWSER=1 fails instead)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from PIL import Image, ImageDraw
from test_web import (  # noqa: F401 (fixtures: the astronaut scene, a strong model, the camera's clip)
    FACE_FOLLOWED,
    MODEL_WORKER,
    _need,
    _psnr,
    camera_clip,
    scene,
    strong_model,
)

from faces.regions import REGION_NAMES
from tools.browser import BrowserPage, find_chromium

pytestmark = pytest.mark.slow


def shown(page: BrowserPage, shape: tuple[int, ...]) -> np.ndarray:
    raw = base64.b64decode(page.page.evaluate("tinybeauty.resultBase64()"))
    return np.frombuffer(raw, np.uint8).reshape(*shape[:2], 4)[..., :3]


def inner(landmarks: np.ndarray, ring: tuple[int, ...], shape: tuple[int, ...], margin: int) -> np.ndarray:
    """The pixels inside a mesh ring, shrunk by ``margin`` pixels (the page's mesh is not Python's to the pixel)."""
    canvas = Image.new("L", shape[1::-1])
    ImageDraw.Draw(canvas).polygon([tuple(point) for point in landmarks[list(ring), :2]], fill=1)
    mask = np.asarray(canvas, bool)
    kept = mask.copy()
    for dy in range(-margin, margin + 1):
        for dx in range(-margin, margin + 1):
            kept &= np.roll(mask, (dy, dx), axis=(0, 1))
    return kept


def test_region_sliders_recompose_without_the_model_as_apply_does(strong_model, scene, tmp_path):  # noqa: F811
    from apply.__main__ import main as apply_main
    from faces import still_faces
    from faces.mesh import LEFT_EYE, LIPS_OUTER, RIGHT_EYE

    _need(find_chromium)
    photo = np.asarray(Image.open(scene).convert("RGB"))
    [face] = still_faces(photo, 256)
    lips, eye = inner(face.landmarks, LIPS_OUTER, photo.shape, 3), inner(face.landmarks, RIGHT_EYE, photo.shape, 1)
    assert lips.sum() > 500 and eye.sum() > 50 and (inner(face.landmarks, LEFT_EYE, photo.shape, 1).sum() > 50)
    with BrowserPage(strong_model, "tinybeauty.onnx") as page:
        plain = page.make_up(scene, pixels=True)["pixels"][..., :3].copy()
        page.page.evaluate("window.modelOutput = tinybeauty.state.faces[0].madeUp")
        assert page.page.locator("#region-lips").is_visible()
        page.page.evaluate("tinybeauty.setRegion('lips', 0)")
        no_lips = shown(page, photo.shape).copy()
        assert page.page.evaluate("tinybeauty.state.faces[0].madeUp === window.modelOutput"), "no model run"
        assert page.page.locator("#region-lips-value").inner_text() == "0.00"
        page.page.evaluate("tinybeauty.setRegion('lips', 1)")
        assert (shown(page, photo.shape) == plain).all(), "every slider at 1: the plain result, to the bit"
    assert (no_lips[lips] == photo[lips]).all() and (plain[lips] != photo[lips]).any(axis=-1).mean() > 0.9
    assert (no_lips[eye] == plain[eye]).all(), "the eyes as before"
    assert apply_main(["--model", str(strong_model / "tinybeauty.onnx"), str(scene), "--out", str(tmp_path),
                       "--regions", "lips=0"]) == 0
    by_apply = np.asarray(Image.open(tmp_path / "scene_makeup.png").convert("RGB"))
    changed = np.any(by_apply != photo, axis=-1) | np.any(no_lips != photo, axis=-1)
    agree, untouched = _psnr(no_lips[changed], by_apply[changed]), _psnr(photo[changed], by_apply[changed])
    print(f"page vs apply --regions lips=0: {agree:.2f} dB, untouched vs apply {untouched:.2f} dB")
    assert agree > untouched + 10


def test_region_sliders_act_on_the_live_camera(strong_model, camera_clip):  # noqa: F811
    """Every region at 0 on the camera (the model stage in its worker): the next frames' faces, each with its
    regions from its own mesh, are shown exactly as the camera gave them."""
    _need(find_chromium)
    with BrowserPage(strong_model, "tinybeauty.onnx", camera_clip=camera_clip, query=MODEL_WORKER) as page:
        page.start_camera(frames=3)
        page.page.wait_for_function(FACE_FOLLOWED, timeout=60_000)
        for name in REGION_NAMES:
            page.page.evaluate(f"tinybeauty.setRegion('{name}', 0)")
        recorded = page.record_camera(4)
        page.stop_camera()
        before, after = (page.shown_pixels(side) for side in ("before", "after"))
        last = page.page.evaluate("tinybeauty.state.camera")
    assert last["where"] == "worker" and len(last["regions"]) == 1, "the last frame shown had its face made up"
    assert set(last["regions"][0]["shapes"]) == set(REGION_NAMES) - {"rest"}, "its regions from its mesh"
    assert all(len(frame["regions"]) <= 1 for frame in recorded)
    assert (after == before).all(), "every region at 0: no makeup anywhere"
