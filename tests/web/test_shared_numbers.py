"""The numbers faces/ and the page share are served beside the page's files, byte for byte the files
Python reads: the tracker's (tracking.json), the detector's search bounds (detection.json, which
faces.mjs loadDetector fetches) and the face regions (regions.json, which regions.mjs imports)."""

from __future__ import annotations

import urllib.request

import pytest

from faces.detection import SEARCH_FILE
from faces.regions import REGIONS_FILE
from faces.tracking_step import PARAMS_FILE
from web.server import serve_in_thread


@pytest.mark.parametrize("source", [SEARCH_FILE, PARAMS_FILE, REGIONS_FILE], ids=lambda path: path.name)
def test_the_shared_numbers_are_served_as_python_reads_them(tmp_path, source):
    with serve_in_thread(tmp_path) as url, urllib.request.urlopen(url + source.name, timeout=30) as response:
        assert response.headers["Content-Type"] == "application/json"
        assert response.read() == source.read_bytes()
