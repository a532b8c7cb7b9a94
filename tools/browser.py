"""Drive the page in a real Chromium with Playwright: what the tests and the benchmark share.

Photos go in through the page's own file input, so every check runs the code a person runs:
decode, face box, the model in LiteRT.js or onnxruntime-web (wasm), residual onto the photo. The browser is found by
:func:`find_chromium`, first that exists: ``$TINYBEAUTY_CHROMIUM``; Playwright's own download
(``playwright install chromium``: the full browser or its headless shell, where Playwright says
or in its cache folder); the system's Chrome or Chromium (Debian's and Ubuntu's packages,
Google Chrome, snap, macOS ``/Applications``, or on the PATH). ``python -m tools.browser`` (run
by ``make setup``) says which one, and where there is none tries ``playwright install chromium``;
without internet that fails, and it says in one line what to install. It never fails the setup.
"""

from __future__ import annotations

import atexit
import base64
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from web.server import SetupError, serve_in_thread

CHROMIUM_ENV = "TINYBEAUTY_CHROMIUM"
# Playwright's downloads inside its cache folder (chromium-REV/, chromium_headless_shell-REV/),
# as its registry lays them out on Linux, macOS and Windows, in current and older releases.
PLAYWRIGHT_BROWSERS = (
    "chromium-*/chrome-linux*/chrome", "chromium-*/chrome-win*/chrome.exe",
    "chromium-*/chrome-mac*/*.app/Contents/MacOS/*",
    "chromium_headless_shell-*/chrome-headless-shell-*/chrome-headless-shell*",
    "chromium_headless_shell-*/chrome-linux/headless_shell",
)
SYSTEM_CHROMIUM = (
    "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", "/usr/bin/google-chrome-stable",
    "/snap/bin/chromium", "/opt/google/chrome/chrome",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
)
CHROMIUM_COMMANDS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = ("install Chromium or Chrome (Debian/Ubuntu: `apt-get install chromium`; macOS: Google Chrome), "
                "or run `python -m playwright install chromium` with internet, or set TINYBEAUTY_CHROMIUM to a "
                "Chromium/Chrome binary")
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


def _runnable(path: str | Path | None) -> bool:
    return bool(path) and Path(path).is_file() and os.access(path, os.X_OK)


def playwright_cache() -> Path:
    """Where ``playwright install`` puts its browsers ($PLAYWRIGHT_BROWSERS_PATH, else per OS)."""
    if os.environ.get("PLAYWRIGHT_BROWSERS_PATH"):
        return Path(os.environ["PLAYWRIGHT_BROWSERS_PATH"])
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "ms-playwright"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "ms-playwright"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ms-playwright"


def playwright_chromium() -> list[Path]:
    """Playwright's own Chromium: the path its driver names (when Playwright is installed), then
    every download in its cache, newest revision first."""
    named = []
    try:
        named.append(Path(playwright().chromium.executable_path))
    except Exception:  # no Playwright, or a driver that cannot start: the cache is still searched
        pass
    cache = playwright_cache()
    found = [path for pattern in PLAYWRIGHT_BROWSERS for path in cache.glob(pattern)] if cache.is_dir() else []
    return named + sorted(found, key=lambda path: _revision(path.relative_to(cache).parts[0]), reverse=True)


def _revision(folder: str) -> int:
    """Playwright's revision number of a download folder (``chromium-1255``)."""
    found = re.search(r"-(\d+)$", folder)
    return int(found.group(1)) if found else 0


def find_chromium() -> str:
    """The Chromium to drive: $TINYBEAUTY_CHROMIUM, Playwright's own, then the system's."""
    chosen = os.environ.get(CHROMIUM_ENV)
    if chosen:
        if _runnable(chosen):
            return chosen
        raise BrowserUnavailable(f"{CHROMIUM_ENV}={chosen} is not an executable file; point it at a Chromium/Chrome "
                                 "binary or unset it")
    candidates = [*playwright_chromium(), *SYSTEM_CHROMIUM, *(shutil.which(name) for name in CHROMIUM_COMMANDS)]
    for candidate in candidates:
        if _runnable(candidate):
            return str(candidate)
    raise BrowserUnavailable(f"Chromium not found: {INSTALL_HINT}")


def ensure_chromium() -> str:
    """A one-line report of the browser found, after trying ``playwright install chromium`` when
    none is. Never raises: the page's tests skip and the benchmark's browser row says "not run"
    without a browser, so the setup must not fail for it."""
    try:
        return f"browser for the page's tests: {find_chromium()}"
    except BrowserUnavailable:
        pass
    try:  # Playwright's download needs the internet; its own output would be many lines of errors
        subprocess.run([sys.executable, "-m", "playwright", "install", "chromium"], check=True,
                       capture_output=True, timeout=900)
        return f"browser for the page's tests: {find_chromium()} (downloaded by Playwright)"
    except (subprocess.SubprocessError, OSError, BrowserUnavailable):
        return f"no browser for the page's tests and the benchmark's browser row (they skip): {INSTALL_HINT}"


class BrowserPage:
    """``with BrowserPage(artifacts) as page:`` the served page open in headless Chromium, model loaded.

    ``model`` is an .onnx or .tflite file of the artifacts folder (None: the page's default, the
    shipped .tflite the server names); ``threads`` the wasm thread count (None: the runtime's
    default). ``fake_webcam``: Chromium's synthetic camera (a moving test
    pattern); ``camera_clip``: a .y4m file as the camera instead (tools/camera_clip.py makes one;
    Chromium loops it). ``query``: more URL parameters (app.mjs lists them). Raises
    BrowserUnavailable, or PageError if the model did not load."""

    def __init__(self, artifacts: Path, model: str | None = None, threads: int | None = None,
                 fake_webcam: bool = False, camera_clip: Path | None = None, query: dict | None = None):
        self.artifacts, self.model, self.threads, self.query = Path(artifacts), model, threads, query or {}
        # A fake camera, allowed without a prompt
        fake = fake_webcam or camera_clip is not None
        self.extra_args = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"] if fake else []
        if camera_clip is not None:
            self.extra_args.append(f"--use-file-for-fake-video-capture={Path(camera_clip).resolve()}")
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
            query = {"model": self.model, "threads": self.threads, **self.query}
            self.page.goto(url + "?" + "&".join(f"{key}={value}" for key, value in query.items() if value))
            self.page.wait_for_function("document.body.dataset.state !== 'loading'", timeout=120_000)
            if self.state == "error":
                raise PageError(self.message)
            # The model's facts, read once: {bytes, size, threads, isolated, runtime, runtimeVersion, loadMs}
            self.model_info = self.page.evaluate(
                "(({bytes, size, threads, isolated, runtime, runtimeVersion, loadMs}) => "
                "({bytes, size, threads, isolated, runtime, runtimeVersion, loadMs}))(tinybeauty.state.model)")
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
        """The page's result for one photo's first face: the raw model output (1 x 3 x S x S float32), the region maps
        the page drew for it and fed a file that reads them (1 x K x S x S float32, NCHW whatever the file's layout;
        None for a file of the face alone) and, with ``pixels``, the made-up photo (H x W x 4 uint8) as the page
        shows it."""
        if self.open(photo) != "done":
            raise PageError(f"{photo}: {self.message}")
        size = self.model_info["size"]
        raw = base64.b64decode(self.page.evaluate("tinybeauty.modelOutputBase64()"))
        result = {"output": np.frombuffer(raw, np.float32).reshape(1, 3, size, size).copy(),
                  "model_ms": self.page.evaluate("tinybeauty.state.modelMs"), "regions": None}
        if self.page.evaluate("Boolean(tinybeauty.state.faces[0].regionMaps)"):
            maps = np.frombuffer(base64.b64decode(self.page.evaluate("tinybeauty.regionMapsBase64()")), np.float32)
            channels_last = self.page.evaluate("tinybeauty.state.model.channelsLast")
            maps = maps.reshape(size, size, -1).transpose(2, 0, 1) if channels_last else maps.reshape(-1, size, size)
            result["regions"] = np.ascontiguousarray(maps[None])
        if pixels:
            width, height = self.page.evaluate("[tinybeauty.state.result.width, tinybeauty.state.result.height]")
            data = base64.b64decode(self.page.evaluate("tinybeauty.resultBase64()"))
            result["pixels"] = np.frombuffer(data, np.uint8).reshape(height, width, 4).copy()
        return result

    @property
    def looks(self) -> list[str]:
        """The looks of the file the page runs, in the order of its look input (looks.json's; [] for a file of
        one look, which takes no look input)."""
        return self.page.evaluate("tinybeauty.state.model.lookCount ? tinybeauty.state.looks.map((l) => l.name) : []")

    def set_look(self, choice: str) -> None:
        """The look the page puts on, as ``apply --look`` takes it: a name, an index or a blend NAME=W,...; the
        photo on screen is made up again with it (returns once it is). PageError for a choice the file cannot
        take, with the page's reason."""
        refused = self.page.evaluate("""async (choice) => {
            try {
                await tinybeauty.setLook(choice);
                return null;
            } catch (error) {
                return error.message;
            }
        }""", choice)
        if refused is not None:
            raise PageError(refused)
        if self.state == "error":
            raise PageError(self.message)

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

    def track_frames(self, frames: list[np.ndarray], times: list[float], smoothing: bool = True) -> list[list[dict]]:
        """The page's face tracker (tracking.mjs, a fresh one) on these frames (H x W x 3 uint8 RGB,
        sent as PNG: the exact pixels) at these times (s): per frame, its faces {trackId, region,
        landmarks, confidence}, oldest track first."""
        from PIL import Image

        encoded = []
        for frame in frames:
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(frame)).save(buffer, format="PNG", compress_level=1)
            encoded.append(base64.b64encode(buffer.getvalue()).decode())
        return self.page.evaluate("""async ({encoded, times, smoothing}) => {
            const {FaceTracker} = await import('./tracking.mjs');
            const {detector, mesh} = tinybeauty.state;
            const tracker = new FaceTracker({detector, mesh, smoothing});
            const found = [];
            for (const [k, png] of encoded.entries()) {
                const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
                const bitmap = await createImageBitmap(new Blob([bytes], {type: 'image/png'}),
                                                       {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
                const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
                canvas.getContext('2d').drawImage(bitmap, 0, 0);
                found.push(await tracker.update(canvas, times[k]));
            }
            return found;
        }""", {"encoded": encoded, "times": [float(t) for t in times], "smoothing": smoothing})

    def start_camera(self, frames: int = 1, timeout_s: float = 120) -> None:
        """Press "Use the webcam" and wait until the page has made up ``frames`` camera frames."""
        self.page.click("#webcam")
        self.page.wait_for_function(f"tinybeauty.state.frames >= {int(frames)} "
                                    "|| document.body.dataset.state === 'error'",
                                    timeout=timeout_s * 1000)
        if self.state == "error":
            raise PageError(self.message)

    def stop_camera(self) -> None:
        self.page.click("#webcam")
        self.page.wait_for_function("tinybeauty.state.webcam === null && tinybeauty.state.loop === null")

    def record_camera(self, frames: int, code_rows: int = 0, timeout_s: float = 120) -> list[dict]:
        """The next ``frames`` camera frames as the page made them up: {index, time, regions (the
        crops), landmarks (per tracked face, 468 [x, y]), ms, detected (the whole frame's detector ran in the frame
        loop), around (it ran there only around a face lost or found stale), drawnBy ('copy' or 'drawImage': how
        the frame reached its buffer), fps} each, and with
        ``code_rows`` the frame's top rows (RGB, rows x width x 3) as drawn, read by an observer
        hook outside the page's timing."""
        self.page.evaluate("""(codeRows) => {
            window.recorded = [];
            tinybeauty.state.onFrame = (frame, canvas) => {
                const rows = codeRows ? canvas.getContext('2d').getImageData(0, 0, canvas.width, codeRows).data : null;
                window.recorded.push({index: frame.index, time: frame.time, regions: frame.regions, ms: frame.ms,
                                      landmarks: frame.faces.map((face) => face.landmarks),
                                      detected: frame.detected, around: frame.around, drawnBy: frame.drawnBy,
                                      fps: tinybeauty.state.loop.rate.perSecond,
                                      width: canvas.width, rows: rows && Array.from(rows)});
            };
        }""", int(code_rows))
        try:
            self.page.wait_for_function(f"window.recorded.length >= {int(frames)}", timeout=timeout_s * 1000)
            recorded = self.page.evaluate(f"window.recorded.slice(0, {int(frames)})")
        finally:
            self.page.evaluate("tinybeauty.state.onFrame = null")
        for frame in recorded:
            if frame["rows"] is not None:
                rgba = np.asarray(frame["rows"], np.uint8).reshape(int(code_rows), frame["width"], 4)
                frame["rows"] = rgba[..., :3]
        return recorded

    def shown_pixels(self, side: str) -> np.ndarray:
        """What the page shows on one side of its split, 'before' or 'after' (the after layer over
        the frame), H x W x 3 uint8."""
        width, height, data = self.page.evaluate("""(side) => {
            const before = document.getElementById('before');
            const canvas = new OffscreenCanvas(before.width, before.height);
            const context = canvas.getContext('2d');
            for (const id of side === 'after' ? ['before', 'after'] : ['before']) {
                context.drawImage(document.getElementById(id), 0, 0);
            }
            const {data} = context.getImageData(0, 0, canvas.width, canvas.height);
            let text = '';
            for (let i = 0; i < data.length; i += 0x8000) text += String.fromCharCode(...data.subarray(i, i + 0x8000));
            return [canvas.width, canvas.height, btoa(text)];
        }""", side)
        return np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width, 4)[..., :3].copy()

    def camera_rate(self, seconds: float) -> dict:
        """The page's own camera figures over ``seconds`` of wall time, camera running: frames made
        up, frames per second (frames / the time between the first and last), the median ms per
        stage as the page measured them, the 90th percentile of a whole frame's ms, the median
        ms of the frames that ran the detector in the frame loop, and the camera's frames the page
        never took (``dropped``, from the frames' timestamps)."""
        return self.page.evaluate("""async (seconds) => {
            const frames = [];
            const droppedBefore = tinybeauty.state.loop.dropped ?? null;
            tinybeauty.state.onFrame = (frame) => frames.push({at: performance.now(), ms: frame.ms,
                                                                detected: frame.detected || frame.around,
                                                                searches: frame.searches,
                                                                drawnBy: frame.drawnBy,
                                                                faces: frame.regions.length});
            await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
            tinybeauty.state.onFrame = null;
            const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? null;
            const span = frames.length > 1 ? frames[frames.length - 1].at - frames[0].at : 0;
            const stages = Object.fromEntries(['draw', 'track', 'queue', 'crop', 'model', 'compose', 'show', 'main',
                                               'frame', 'wait'].map(
                (stage) => [stage, median(frames.map((frame) => frame.ms[stage]).filter((ms) => ms !== undefined))]));
            const dropped = droppedBefore === null ? null : tinybeauty.state.loop.dropped - droppedBefore;
            const detected = frames.filter((frame) => frame.detected);
            const whole = frames.map((frame) => frame.ms.frame).sort((a, b) => a - b);
            const main = frames.map((frame) => frame.ms.main).filter((ms) => ms !== undefined).sort((a, b) => a - b);
            const searches = frames.length && frames[0].searches !== undefined ?
                frames[frames.length - 1].searches - frames[0].searches : null;
            return {frames: frames.length, fps: span ? 1000 * (frames.length - 1) / span : null,
                    detections: detected.length, detection_frame_ms: median(detected.map((frame) => frame.ms.frame)),
                    p90_frame_ms: whole[Math.floor(0.9 * whole.length)] ?? null, median_ms: stages,
                    p90_main_ms: main[Math.floor(0.9 * main.length)] ?? null, searches,
                    with_face: frames.length ? frames.filter((frame) => frame.faces > 0).length / frames.length : null,
                    dropped, where: tinybeauty.state.camera?.where ?? null,
                    width: tinybeauty.state.photo.width, height: tinybeauty.state.photo.height,
                    source: tinybeauty.state.loop.source, drawn_by: frames.at(-1)?.drawnBy ?? null};
        }""", float(seconds))

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


if __name__ == "__main__":
    print(ensure_chromium())
