"""The browser page in real Chromium (Debian's package, driven by Playwright), against Python.

Skipped where no Chromium/Playwright/onnxruntime-web is installed, unless
TINYBEAUTY_REQUIRE_BROWSER=1 (CI sets it), which turns a missing browser into a failure.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from export.formats import BY_NAME
from models.checkpoint import checkpoint_split, load_checkpoint
from train.data import faces_as_tensors, load_split
from web.browser import (
    BrowserPage,
    BrowserUnavailable,
    PageError,
    find_chromium,
    playwright,
    write_face_png,
)
from web.server import ORT_FILES, SetupError, check_runtime_installed, serve_in_thread

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
    _need(find_chromium)
    _need(playwright)
    with BrowserPage(artifacts) as opened:
        yield opened


@pytest.fixture(scope="module")
def val_faces(checkpoint, tmp_path_factory):
    """Three validation faces as PNG files (exactly the pixels the checkpoint's split decodes)."""
    model, saved = load_checkpoint(checkpoint)
    source, _ = faces_as_tensors(load_split(checkpoint_split(saved, checkpoint), "val"))
    folder = tmp_path_factory.mktemp("web_faces")
    return [(write_face_png(face.numpy(), folder / f"val_{i}.png"), face.numpy()[None]) for i, face in enumerate(source[:3])]


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
    status, _, body = _get(served + "model/tinybeauty.onnx")
    assert status == 200 and body == (artifacts / "tinybeauty.onnx").read_bytes()
    for private in ("model/../manifest.json", "model/%2e%2e/tinybeauty.onnx", "model/reference/../../x.onnx",
                    "ort/ort.all.min.mjs", "model/tinybeauty.pte", "../web/server.py", "server.py"):
        assert _get(served + private)[0] == 404, private


def test_page_output_matches_python_onnxruntime(page, val_faces, artifacts, tmp_path):
    info = page.model_info
    assert info["isolated"] is True and info["threads"] >= 1
    assert info["bytes"] == (artifacts / "tinybeauty.onnx").stat().st_size
    python_onnx = BY_NAME["onnx"].load(artifacts / "tinybeauty.onnx")
    for png, face in val_faces:
        made_up = page.make_up(png, pixels=True)
        expected = python_onnx(face)
        # int8 QDQ: the same integer arithmetic in wasm and in Python's onnxruntime
        assert np.abs(made_up["output"] - expected).max() <= 1e-6, png
        shown = made_up["pixels"]
        assert shown.shape == (face.shape[2], face.shape[3], 4) and (shown[..., 3] == 255).all()
        # A photo that is its own face crop: the page shows the model's output, rounded to 8 bits.
        python_pixels = np.round(np.clip(expected[0], 0, 1) * 255).transpose(1, 2, 0)
        assert np.abs(shown[..., :3].astype(int) - python_pixels).max() <= 1, png
        assert made_up["model_ms"] > 0
    print("screenshot:", page.screenshot(tmp_path / "page.png"))


def test_photo_keeps_its_size_and_everything_outside_the_face(page, val_faces, tmp_path):
    """A landscape photo: the face box is part of it, only the box changes, strength 0 changes nothing."""
    face = Image.open(val_faces[0][0])
    size = face.width
    photo = Image.new("RGB", (size * 3, size * 2), (40, 90, 160))
    photo.paste(face.resize((size * 2, size * 2), Image.Resampling.BICUBIC), (size // 2, 0))
    path = tmp_path / "landscape.png"
    photo.save(path)
    shown = page.make_up(path, pixels=True)["pixels"][..., :3]
    original = np.asarray(photo)
    box = page.page.evaluate("tinybeauty.state.box")
    assert shown.shape == original.shape
    inside = np.zeros(original.shape[:2], bool)
    inside[box["y"]:box["y"] + box["size"], box["x"]:box["x"] + box["size"]] = True
    assert box["size"] == size * 2 and (shown[~inside] == original[~inside]).all()
    assert np.abs(shown[inside].astype(int) - original[inside]).max() > 0
    page.set_strength(0)
    try:
        data = page.page.evaluate("tinybeauty.resultBase64()")
        zero = np.frombuffer(base64.b64decode(data), np.uint8).reshape(*original.shape[:2], 4)[..., :3]
        assert (zero == original).all()
    finally:
        page.set_strength(1)


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


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_model_that_cannot_load_is_a_visible_error(artifacts, served, tmp_path, damage):
    _need(find_chromium)
    broken = tmp_path / "artifacts"
    broken.mkdir()
    if damage == "truncated":
        (broken / "tinybeauty.onnx").write_bytes((artifacts / "tinybeauty.onnx").read_bytes()[:5000])
    with pytest.raises(PageError) as error:
        with BrowserPage(broken):
            pass
    message = str(error.value)
    assert "tinybeauty.onnx" in message
    assert ("HTTP 404" in message and "make export" in message) if damage == "missing" else "could not load" in message
