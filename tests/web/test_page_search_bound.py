"""The page answers a photo whose shape cannot hold a face with a message, before its detector runs
once (web/static/faces.mjs searchPlan, on the bounds of faces/detection.json), where it used to plan a
pass per short side of length: ~400 for 20,000 x 100, ~60,000 for 30,000 x 1. Headless Chromium."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from tools.browser import BrowserPage, BrowserUnavailable, find_chromium, playwright
from web.server import SetupError, check_runtime_installed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def page(artifacts):
    try:
        check_runtime_installed()
        find_chromium()
        playwright()
    except (BrowserUnavailable, SetupError) as missing:
        if os.environ.get("TINYBEAUTY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TINYBEAUTY_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(str(missing))
    with BrowserPage(artifacts, "tinybeauty.onnx") as opened:
        yield opened


@pytest.mark.parametrize("size", [(20_000, 100), (30_000, 1), (1, 30_000)])
def test_a_photo_that_cannot_hold_a_face_gets_a_message(page, tmp_path, size):
    photo = tmp_path / "strip.png"
    Image.new("RGB", size, (150, 120, 100)).save(photo)
    assert page.open(photo) == "error"
    assert page.message.startswith(f"strip.png: the image is {size[0]}x{size[1]} pixels")
    assert "Pick a photo of a face, or place the face box by hand" in page.message
