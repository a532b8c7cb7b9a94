"""A small static server for the page, with the headers multi-threaded wasm needs.

Only four kinds of files are served, each from its own folder: the page (``web/static``),
onnxruntime-web's wasm build (the three files the page loads, from ``web/node_modules``), the
face networks (``web/build/face_detector.onnx`` and ``face_mesh.onnx``) and the exported model
set (``.onnx`` files and ``manifest.json`` under the artifacts folder).
Every response carries ``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp``: without them the page is not cross-origin
isolated, SharedArrayBuffer is missing, and onnxruntime-web silently runs on one thread.
"""

from __future__ import annotations

import http.server
import json
import mimetypes
import shutil
import threading
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

from export.formats import BY_NAME
from models.atomic import atomic_path, write_text

WEB = Path(__file__).resolve().parent
STATIC = WEB / "static"
ORT_DIST = WEB / "node_modules" / "onnxruntime-web" / "dist"
# The wasm-only ES module and its threaded SIMD runtime: all the page needs of the ~150 MB package.
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
DETECTOR = WEB / "build" / "face_detector.onnx"  # written by `python -m web.face_detector` (make setup)
MESH = WEB / "build" / "face_mesh.onnx"  # `python -m web.face_detector --network mesh` (make setup)
MODEL_SUFFIXES = {".onnx"}
# The page's default model: the shipped int8 ONNX, named by the formats table. The page asks for
# its name (PAGE_CONFIG) instead of spelling it.
DEFAULT_MODEL = BY_NAME["onnx"].filename
PAGE_CONFIG = "config.json"
MODEL_FILES = {"manifest.json"}
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",  # a re-export shows on reload
}


class SetupError(RuntimeError):
    """Something the page needs is not installed."""


def check_runtime_installed() -> None:
    missing = [name for name in ORT_FILES if not (ORT_DIST / name).is_file()]
    if missing:
        raise SetupError(f"onnxruntime-web is not installed ({ORT_DIST / missing[0]} is missing): run `make setup` "
                         "(it runs `npm ci` in web/)")


def resolve(url_path: str, artifacts: Path) -> Path | None:
    """The file a URL path names, or None: nothing outside the four served places is reachable."""
    path = unquote(urlsplit(url_path).path)
    if "\x00" in path:  # no file has a NUL in its name, and the OS calls would raise on it
        return None
    if path in ("/", "/index.html"):
        return STATIC / "index.html"
    folder, _, rest = path.lstrip("/").partition("/")
    if folder == "ort":
        return ORT_DIST / rest if rest in ORT_FILES else None
    if folder == "detector":
        return {path.name: path for path in (DETECTOR, MESH)}.get(rest)
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


def bundle(artifacts: Path, out: Path, models: tuple[str, ...] = (DEFAULT_MODEL,)) -> list[Path]:
    """Copy what the page needs into ``out`` with the URL layout the server uses, for any static
    host: the page's files and its config.json, ort/ (three files), detector/ and model/. The host must send the two
    cross-origin isolation headers for multi-threaded wasm; without them the page runs on one
    thread and says so."""
    check_runtime_installed()
    files = {STATIC / name: out / name for name in sorted(p.name for p in STATIC.iterdir() if p.is_file())}
    files |= {ORT_DIST / name: out / "ort" / name for name in ORT_FILES}
    files |= {Path(artifacts) / name: out / "model" / name for name in (*models, *sorted(MODEL_FILES))}
    for network in (DETECTOR, MESH):
        if network.is_file():
            files[network] = out / "detector" / network.name
    missing = [str(source) for source in files if not source.is_file()]
    if missing:
        raise SetupError(f"cannot bundle the page: {', '.join(missing)} missing (run `make export` / `make setup`)")
    for source, target in files.items():  # each renamed into place whole: a reader never gets a torn file
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    config = write_text(out / PAGE_CONFIG, page_config().decode())
    return sorted([*files.values(), config])


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
        try:
            path = resolve(self.path, self.artifacts)
        except ValueError:  # a path the OS cannot look up: an answer, never a dropped connection
            self.send_error(400, "not a valid path")
            return
        if path is None or not path.is_file():
            self.send_error(404, "not served here" if path is None else f"{path.name} does not exist")
            return
        try:
            body = path.read_bytes()
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
