"""Drive the page in a real Chromium with Playwright: what the tests and the benchmark share.

Photos go in through the page's own file input, so every check runs the code a person runs:
decode, face box, onnxruntime-web (wasm), residual onto the photo. Playwright's own browser
download cannot work on machines without internet; the system's Chromium (Debian's package
``chromium``) is launched instead, found at ``$TINYBEAUTY_CHROMIUM`` or the usual paths.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
from pathlib import Path

import numpy as np

from web.server import SetupError, serve_in_thread

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
# Headless on a machine with no display and no internet: no GPU, no sandbox (root), shared
# memory in /tmp (containers often give /dev/shm only 64 MB), and none of the background
# connections that a closed network refuses.
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps"]
FINISHED = "['done', 'error'].includes(document.body.dataset.state)"


_playwright = None


def playwright():
    """One Playwright driver per process (its sync API allows one per thread); stopped at exit."""
    global _playwright
    if _playwright is None:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as error:
            raise BrowserUnavailable("Playwright for Python is not installed (`make setup` installs it)") from error
        _playwright = sync_playwright().start()
        atexit.register(_playwright.stop)
    return _playwright


class BrowserUnavailable(RuntimeError):
    """No Chromium or no Playwright on this machine."""


class PageError(RuntimeError):
    """The page showed an error message."""


def find_chromium() -> str:
    candidates = [os.environ.get("TINYBEAUTY_CHROMIUM"), *CHROMIUM_PATHS, shutil.which("chromium")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise BrowserUnavailable("Chromium not found: install Debian's `chromium` package (`apt-get install chromium`) "
                             "or point TINYBEAUTY_CHROMIUM at a Chromium/Chrome binary")


class BrowserPage:
    """``with BrowserPage(artifacts) as page:`` the served page open in headless Chromium, model loaded.

    ``model`` is an .onnx file of the artifacts folder; ``threads`` the wasm thread count (None:
    onnxruntime-web's default). Raises BrowserUnavailable, or PageError if the model did not load."""

    def __init__(self, artifacts: Path, model: str = "tinybeauty.onnx", threads: int | None = None,
                 fake_webcam: bool = False):
        self.artifacts, self.model, self.threads = Path(artifacts), model, threads
        # Chromium's synthetic camera (a moving test pattern), allowed without a prompt
        self.extra_args = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"] if fake_webcam else []
        self.console: list[str] = []
        self._server = self._browser = None

    def __enter__(self) -> BrowserPage:
        driver, executable = playwright(), find_chromium()
        try:
            self._server = serve_in_thread(self.artifacts)
        except SetupError as error:
            raise BrowserUnavailable(str(error)) from error
        url = self._server.__enter__()
        try:
            self._browser = driver.chromium.launch(executable_path=executable, args=LAUNCH_ARGS + self.extra_args)
            self.page = self._browser.new_page(viewport={"width": 1200, "height": 900})
            self.page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
            query = f"?model={self.model}" + (f"&threads={self.threads}" if self.threads else "")
            self.page.goto(url + query)
            self.page.wait_for_function("document.body.dataset.state !== 'loading'", timeout=120_000)
            if self.state == "error":
                raise PageError(self.message)
            # The model's facts, read once: {bytes, size, threads, isolated, ortVersion, loadMs}
            self.model_info = self.page.evaluate(
                "(({bytes, size, threads, isolated, ortVersion, loadMs}) => "
                "({bytes, size, threads, isolated, ortVersion, loadMs}))(tinybeauty.state.model)")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._server is not None:
            self._server.__exit__(None, None, None)
        self._server = self._browser = None

    @property
    def browser_version(self) -> str:
        return self._browser.version

    @property
    def state(self) -> str:
        return self.page.evaluate("document.body.dataset.state")

    @property
    def message(self) -> str:
        """The page's visible message ('' when none is shown)."""
        box = self.page.locator("#message")
        return box.inner_text() if box.is_visible() else ""

    def open(self, photo: Path) -> str:
        """Give the page a file through its file input; returns its state when done ('done' or 'error')."""
        self.page.set_input_files("#file", str(photo))
        self.page.wait_for_function(FINISHED, timeout=120_000)
        return self.state

    def make_up(self, photo: Path, pixels: bool = False) -> dict:
        """The page's result for one photo: the raw model output (1 x 3 x S x S float32) and, with
        ``pixels``, the made-up photo (H x W x 4 uint8) as the page shows it."""
        if self.open(photo) != "done":
            raise PageError(f"{photo}: {self.message}")
        size = self.model_info["size"]
        raw = base64.b64decode(self.page.evaluate("tinybeauty.modelOutputBase64()"))
        result = {"output": np.frombuffer(raw, np.float32).reshape(1, 3, size, size).copy(),
                  "model_ms": self.page.evaluate("tinybeauty.state.modelMs")}
        if pixels:
            width, height = self.page.evaluate("[tinybeauty.state.result.width, tinybeauty.state.result.height]")
            data = base64.b64decode(self.page.evaluate("tinybeauty.resultBase64()"))
            result["pixels"] = np.frombuffer(data, np.uint8).reshape(height, width, 4).copy()
        return result

    def set_mode(self, mode: str) -> None:
        """Where the model runs: 'auto', 'faces' (found), 'whole' (the photo is a face crop), 'box' (by hand)."""
        self.page.select_option("#mode", mode)

    @property
    def regions(self) -> list[dict]:
        """The crops of the last photo: {origin, xAxis, yAxis} in image pixels."""
        return self.page.evaluate("tinybeauty.state.regions")

    def set_strength(self, value: float) -> None:
        self.page.evaluate(f"tinybeauty.setStrength({float(value)})")

    def time_model(self, min_runs: int = 30, min_seconds: float = 2.0) -> np.ndarray:
        """Batch-1 model times (ms) in the page, on the last photo's face: timed with the page's
        performance.now() in a normal (not virtual-time) headless run."""
        times = self.page.evaluate("(options) => tinybeauty.timeModel(options)",
                                   {"minRuns": min_runs, "minSeconds": min_seconds})
        return np.asarray(times, np.float64)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)
        return path


def write_face_png(face: np.ndarray, path: Path) -> Path:
    """A 3 x S x S face in [0, 1] (decoded from 8-bit pixels) as the PNG it came from, bit for bit."""
    from PIL import Image

    pixels = np.clip(np.round(np.asarray(face, np.float64) * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    Image.fromarray(pixels, "RGB").save(path, format="PNG")
    return path
