"""A small static server for the page, with the headers multi-threaded wasm needs.

Only five kinds of files are served, each from its own folder: the page (``web/static``),
onnxruntime-web's wasm build (the three files the page loads, from ``web/node_modules``), LiteRT.js
(its ES module, its one helper module and two wasm builds, plain and threaded), the face networks
(``web/build/face_detector.onnx``, ``face_mesh.onnx`` and the mesh's original ``face_landmark.tflite``)
and the exported model set (``.onnx`` and ``.tflite`` files, ``manifest.json`` and ``looks.json``, the
catalogue of the looks a file holds, under the artifacts folder); besides, the numbers faces/ and the
page share are served beside the page's files: the face tracker's (``faces/tracking.json``, which
faces.tracking_step reads too) as ``tracking.json``, the face detector's search bounds
(``faces/detection.json``, faces.detection's) as ``detection.json`` and the face regions for
per-region strength (``faces/regions.json``, faces.regions') as ``regions.json``.
Every response carries ``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp``: without them the page is not cross-origin
isolated, SharedArrayBuffer is missing, and onnxruntime-web silently runs on one thread.
"""

from __future__ import annotations

import errno
import http.server
import json
import mimetypes
import shutil
import threading
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

from export.formats import BY_NAME
from export.manifest import LOOKS_FILE
from faces.detection import SEARCH_FILE as DETECTION_PARAMS
from faces.regions import REGIONS_FILE
from faces.tracking_step import PARAMS_FILE as TRACKING_PARAMS
from models.atomic import atomic_path, write_text

WEB = Path(__file__).resolve().parent
STATIC = WEB / "static"
ORT_DIST = WEB / "node_modules" / "onnxruntime-web" / "dist"
# The wasm-only ES module and its threaded SIMD runtime: all the page needs of the ~150 MB package.
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
# LiteRT.js (npm @litertjs/core): served at litert/. Its ES module imports its helper by a bare name,
# which a page (and a worker, which has no import map) can only load from a path: LITERT_MODULE is
# served with that one specifier turned into "./wasm-utils.js" (litert_module()).
LITERT = WEB / "node_modules" / "@litertjs"
LITERT_MODULE, LITERT_HELPER = LITERT / "core" / "dist" / "index.js", LITERT / "wasm-utils" / "dist" / "bundle.js"
LITERT_BARE_IMPORT = '"@litertjs/wasm-utils"'
LITERT_WASM = {name: LITERT / "core" / "wasm" / name for name in (
    "litert_wasm_internal.js", "litert_wasm_internal.wasm",
    "litert_wasm_threaded_internal.js", "litert_wasm_threaded_internal.wasm")}
DETECTOR = WEB / "build" / "face_detector.onnx"  # written by `python -m tools.face_models` (make setup)
MESH = WEB / "build" / "face_mesh.onnx"  # `python -m tools.face_models --network mesh` (make setup)
MESH_TFLITE = WEB / "build" / "face_landmark.tflite"  # the mesh as MediaPipe ships it (make setup copies it)
MODEL_SUFFIXES = {".onnx", ".tflite"}
# One file for both languages each: tracking.mjs imports tracking.json, faces.mjs loadDetector fetches detection.json,
# regions.mjs imports regions.json.
SHARED_NUMBERS = {path.name: path for path in (TRACKING_PARAMS, DETECTION_PARAMS, REGIONS_FILE)}
# The page's default model: the shipped int8 .tflite in LiteRT.js, named by the formats table (the page
# asks for its name, PAGE_CONFIG, instead of spelling it). LiteRT.js runs it faster than onnxruntime-web
# runs the int8 ONNX (the README's results table), which keeps the camera live on 2 cores; the ONNX stays
# one URL parameter away (?model=tinybeauty.onnx).
DEFAULT_MODEL = BY_NAME["tflite"].filename
PAGE_CONFIG = "config.json"
MODEL_FILES = {"manifest.json", LOOKS_FILE}
# A set exported before the catalogue has no looks.json: its one look needs none (the page reads it where there is one).
OPTIONAL_MODEL_FILES = {LOOKS_FILE}
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",  # a re-export shows on reload
}


class SetupError(RuntimeError):
    """Something the page needs is not installed."""


def check_runtime_installed() -> None:
    missing = [ORT_DIST / name for name in ORT_FILES if not (ORT_DIST / name).is_file()]
    missing += [path for path in (LITERT_MODULE, LITERT_HELPER, *LITERT_WASM.values()) if not path.is_file()]
    if missing:
        raise SetupError(f"the page's runtimes are not installed ({missing[0]} is missing): run `make setup` "
                         "(it runs `npm ci` in web/)")


def litert_module() -> bytes:
    """LiteRT.js's ES module with its helper imported by a relative path (see LITERT_MODULE)."""
    text = LITERT_MODULE.read_text(encoding="utf-8")
    if LITERT_BARE_IMPORT not in text:
        raise SetupError(f"{LITERT_MODULE} does not import {LITERT_BARE_IMPORT}: another @litertjs/core than "
                         "web/package.json pins? run `make setup`")
    return text.replace(LITERT_BARE_IMPORT, '"./wasm-utils.js"').encode()


def resolve(url_path: str, artifacts: Path) -> Path | None:
    """The file a URL path names, or None: nothing outside the served places is reachable."""
    path = unquote(urlsplit(url_path).path)
    if "\x00" in path:  # no file has a NUL in its name, and the OS calls would raise on it
        return None
    if path in ("/", "/index.html"):
        return STATIC / "index.html"
    if path.lstrip("/") in SHARED_NUMBERS:
        return SHARED_NUMBERS[path.lstrip("/")]
    folder, _, rest = path.lstrip("/").partition("/")
    if folder == "ort":
        return ORT_DIST / rest if rest in ORT_FILES else None
    if folder == "litert":
        return {"index.js": LITERT_MODULE, "wasm-utils.js": LITERT_HELPER,
                **{f"wasm/{name}": path for name, path in LITERT_WASM.items()}}.get(rest)
    if folder == "detector":
        return {path.name: path for path in (DETECTOR, MESH, MESH_TFLITE)}.get(rest)
    if folder == "model":
        candidate = (artifacts / rest).resolve()
        inside = candidate.is_relative_to(artifacts.resolve())
        allowed = candidate.suffix in MODEL_SUFFIXES or rest in MODEL_FILES
        return candidate if inside and allowed else None
    if "/" not in path.lstrip("/"):  # the page's own files, flat
        candidate = (STATIC / path.lstrip("/")).resolve()
        return candidate if candidate.parent == STATIC.resolve() else None
    return None


def page_config() -> bytes:
    """What the page reads at ``/config.json`` before loading a model: the default model's file."""
    return json.dumps({"model": DEFAULT_MODEL}).encode()


# The files the page runs, by their formats' names in the formats table: the int8 .onnx (onnxruntime-web)
# and the default .tflite (LiteRT.js). A bundle copies both; the benchmark runs each in Chromium.
PAGE_MODELS = {"onnx": BY_NAME["onnx"].filename, "tflite": DEFAULT_MODEL}


def bundle(artifacts: Path, out: Path, models: tuple[str, ...] = tuple(PAGE_MODELS.values())) -> list[Path]:
    """Copy what the page needs into ``out`` with the URL layout the server uses, for any static
    host: the page's files, its config.json, tracking.json, detection.json and regions.json, ort/ (three
    files), litert/ (LiteRT.js), detector/ and model/ (both files the page runs, the manifest and, where the set
    has one, looks.json). The host must send the two
    cross-origin isolation headers for multi-threaded wasm; without them the page runs on one
    thread and says so."""
    check_runtime_installed()
    files = {STATIC / name: out / name for name in sorted(p.name for p in STATIC.iterdir() if p.is_file())}
    files |= {path: out / name for name, path in SHARED_NUMBERS.items()}
    files |= {ORT_DIST / name: out / "ort" / name for name in ORT_FILES}
    files |= {LITERT_HELPER: out / "litert" / "wasm-utils.js"}
    files |= {path: out / "litert" / "wasm" / name for name, path in LITERT_WASM.items()}
    files |= {Path(artifacts) / name: out / "model" / name for name in (*models, *sorted(MODEL_FILES))
              if name not in OPTIONAL_MODEL_FILES or (Path(artifacts) / name).is_file()}
    for network in (DETECTOR, MESH, MESH_TFLITE):
        if network.is_file():
            files[network] = out / "detector" / network.name
    missing = [str(source) for source in files if not source.is_file()]
    if missing:
        raise SetupError(f"cannot bundle the page: {', '.join(missing)} missing (run `make export` / `make setup`)")
    for source, target in files.items():  # each renamed into place whole: a reader never gets a torn file
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    config = write_text(out / PAGE_CONFIG, page_config().decode())
    module = out / "litert" / "index.js"
    with atomic_path(module) as tmp:
        tmp.write_bytes(litert_module())
    return sorted([*files.values(), config, module])


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "TinyBeautyWeb"

    def __init__(self, *args, artifacts: Path, quiet: bool, **kwargs):
        self.artifacts, self.quiet = artifacts, quiet
        super().__init__(*args, **kwargs)

    def end_headers(self) -> None:
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def _send(self, head_only: bool) -> None:
        if urlsplit(self.path).path == "/" + PAGE_CONFIG:
            self._reply(page_config(), "application/json", head_only)
            return
        try:  # a path the OS cannot look up gets an answer, never a dropped connection
            path = resolve(self.path, self.artifacts)
            found = path is not None and path.is_file()
        except ValueError:
            self.send_error(400, "not a valid path")
            return
        except OSError as error:  # a name too long for the file system, a loop of links, no permission
            too_long = error.errno == errno.ENAMETOOLONG
            self.send_error(414 if too_long else 404, "path too long" if too_long else "cannot be looked up")
            return
        if not found:
            self.send_error(404, "not served here" if path is None else f"{path.name} does not exist")
            return
        try:
            body = litert_module() if path == LITERT_MODULE else path.read_bytes()
        except OSError:  # unreadable, or gone since the check
            self.send_error(404, f"{path.name} cannot be read")
            return
        self._reply(body, mimetypes.guess_type(path.name)[0] or "application/octet-stream", head_only)

    def _reply(self, body: bytes, content_type: str, head_only: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._send(head_only=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(head_only=True)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        if not self.quiet:
            super().log_message(format, *args)


def make_server(artifacts: Path, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False
                ) -> http.server.ThreadingHTTPServer:
    """A bound server (port 0 = any free port); call serve_forever(), or use serve_in_thread()."""
    check_runtime_installed()
    mimetypes.add_type("text/javascript", ".mjs")
    mimetypes.add_type("application/wasm", ".wasm")
    handler = partial(Handler, artifacts=Path(artifacts), quiet=quiet)
    return http.server.ThreadingHTTPServer((host, port), handler)


def url_of(server: http.server.ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"


class serve_in_thread:  # noqa: N801 (used as a context manager, like open())
    """``with serve_in_thread(artifacts) as url:`` a server on a free port for tests and the benchmark."""

    def __init__(self, artifacts: Path):
        self.server = make_server(artifacts, port=0, quiet=True)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return url_of(self.server)

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
