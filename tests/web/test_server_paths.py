"""The page's server answers every request: paths the file system cannot look up are 404/414 answers,
never a dropped connection, and it keeps serving."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from web.server import serve_in_thread


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("path", ["model/" + "a" * 300 + ".onnx", "model/" + "b/" * 3000 + "x.onnx",
                                  "c" * 5000 + ".mjs", "model/" + "d" * 255 + "/tinybeauty.onnx"])
def test_paths_the_file_system_cannot_look_up_get_an_answer(tmp_path, path):
    (tmp_path / "tinybeauty.onnx").write_bytes(b"onnx")
    with serve_in_thread(tmp_path) as url:
        assert status_of(url + path) in (404, 414)
        assert status_of(url + "model/tinybeauty.onnx") == 200  # and it keeps serving
