"""Serve the TinyBeauty page on this machine: drop a photo, see the makeup, nothing uploaded.

Usage:
    python -m web                                  # http://127.0.0.1:8000/, model from artifacts/
    python -m web --artifacts DIR --port 8080
    python -m web --bundle site/                   # copy the page + model for any static host

The page (web/static) runs the shipped int8 .tflite in LiteRT.js (the formats table's default for
the page, web/server.py DEFAULT_MODEL) or ``?model=tinybeauty.onnx`` in onnxruntime-web, both wasm,
in the browser; ``?model=reference/tinybeauty_fp32.onnx`` picks another file of the set and
``?threads=N`` the wasm thread count. A file of several looks shows their swatches (the set's
looks.json) and ``?look=NAME`` (or a blend, NAME=W,...) opens on one. The server listens on
127.0.0.1 only and sends the cross-origin isolation headers that multi-threaded wasm needs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.atomic import DiskFullError
from models.cli import output_folder, port_number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="exported set (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=port_number, default=8000,
                        help="port, 0 for any free one (default: %(default)s)")
    parser.add_argument("--bundle", type=output_folder, metavar="DIR",
                        help="instead of serving, copy the page, onnxruntime-web's files, the detector and the model "
                             "into DIR for a static host (which must send the COOP/COEP headers for threads); "
                             "files of DIR with other names are left alone")
    args = parser.parse_args(argv)
    # The server reads the formats table (which imports torch): only once there is a page to serve
    # or bundle, so --help and argument errors answer at once.
    from web.server import DEFAULT_MODEL, DETECTOR, SetupError, bundle, make_server, url_of

    if args.bundle:
        try:
            files = bundle(args.artifacts, args.bundle)
        except (SetupError, DiskFullError) as error:
            print(error, file=sys.stderr)
            return 2
        print(f"wrote {len(files)} files ({sum(f.stat().st_size for f in files) / 1e6:.1f} MB) to {args.bundle}; "
              "serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp")
        return 0
    try:
        server = make_server(args.artifacts, args.host, args.port)
    except (SetupError, OSError) as error:
        print(f"cannot serve the page: {error}", file=sys.stderr)
        return 2
    if not DETECTOR.is_file():
        print(f"warning: {DETECTOR} does not exist: run `make setup`; until then faces are placed by hand",
              file=sys.stderr)
    if not (args.artifacts / DEFAULT_MODEL).is_file():
        print(f"warning: {args.artifacts / DEFAULT_MODEL} does not exist yet: run `make export`; the page "
              "says so until then", file=sys.stderr)
    print(f"TinyBeauty page: {url_of(server)}  (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
