"""The set's looks.json reaches the page: the server serves it beside the model files, and a bundle for a static
host copies it where the set has one (a set exported before the catalogue has none, and bundles as before)."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from export.manifest import LOOKS_FILE
from web.server import SetupError, bundle, check_runtime_installed, serve_in_thread

CATALOGUE = {"input": "look_weights", "looks": [{"name": "berry", "index": 0}, {"name": "smoky", "index": 1}]}


def _set(folder, catalogue: bool):
    folder.mkdir()
    (folder / "tinybeauty.onnx").write_bytes(b"onnx")
    (folder / "manifest.json").write_text("{}")
    if catalogue:
        (folder / LOOKS_FILE).write_text(json.dumps(CATALOGUE))
    return folder


def test_the_server_serves_looks_json_beside_the_models(tmp_path):
    artifacts = _set(tmp_path / "set", catalogue=True)
    with serve_in_thread(artifacts) as url, urllib.request.urlopen(url + "model/" + LOOKS_FILE) as response:
        assert response.status == 200 and json.loads(response.read()) == CATALOGUE


@pytest.mark.parametrize("catalogue", [True, False])
def test_a_bundle_carries_looks_json_where_the_set_has_one(tmp_path, catalogue):
    try:
        check_runtime_installed()
    except SetupError as missing:
        if os.environ.get("TINYBEAUTY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TINYBEAUTY_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(str(missing))
    artifacts = _set(tmp_path / "set", catalogue)
    files = bundle(artifacts, tmp_path / "site", models=("tinybeauty.onnx",))
    copied = tmp_path / "site" / "model" / LOOKS_FILE
    assert (copied in files) == catalogue == copied.is_file()
    if catalogue:
        assert json.loads(copied.read_text()) == CATALOGUE
