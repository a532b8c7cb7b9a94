"""The face detector's search, bounded by the numbers faces/ and the page share (faces/detection.json).

Python's plans for a set of shapes are recorded in tests/traces/search_plans.json, and the page's
web/test/search_plan.test.mjs replays them through faces.mjs searchPlan: a plan or a refusal that changes
on one side only fails that side. After a deliberate change, rewrite the record:
``PYTHONPATH=. python tests/faces/test_search_plans.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faces.detection import (
    MAX_ASPECT,
    MAX_SEARCH_SIDE,
    MIN_FACE_PIXELS,
    SEARCH_FILE,
    TILE_ABOVE_ASPECT,
    UnsearchableImage,
    load_search_bounds,
    search_plan,
)

PLANS_FILE = Path(__file__).resolve().parents[1] / "traces" / "search_plans.json"
# Camera frames and photos both ways up, the edges of every bound, shapes shrunk first, and the refused:
# too thin (the 50,000 x 1), too long for their width, and one a half over 16:1 (rounded alike).
SIZES = [(1280, 720), (720, 1280), (640, 480), (600, 480), (601, 480), (16, 16), (16, 256), (256, 16), (1, 1),
         (15, 400), (400, 15), (3000, 4), (50_000, 1), (2000, 100), (264, 16), (257, 4096), (4096, 256),
         (32_000, 2000), (5000, 5000), (6000, 400), (8193, 4097), (4097, 1000), (1001, 333)]


def recorded(size: tuple[int, int]) -> dict:
    """One shape's plan as the record holds it: {size, scale, regions} or {size, refused: the message}."""
    try:
        scale, regions = search_plan(*size)
    except UnsearchableImage as refusal:
        return {"size": list(size), "refused": str(refusal)}
    return {"size": list(size), "scale": scale, "regions": [[int(value) for value in region] for region in regions]}


def test_the_recorded_plans_are_the_detectors():
    record = json.loads(PLANS_FILE.read_text(encoding="utf-8"))
    assert record["plans"] == [recorded(size) for size in SIZES], (
        "faces.detection.search_plan changed: rewrite the record "
        "(PYTHONPATH=. python tests/faces/test_search_plans.py) and check that web/static/faces.mjs searchPlan "
        "replays it (node --test web/test/)")


def test_the_record_holds_refusals_and_bounded_plans():
    """The record tries each bound: shapes refused, shrunk, tiled, and at most 2 x MAX_ASPECT passes."""
    plans = [recorded(size) for size in SIZES]
    assert any("too small to hold a face" in plan.get("refused", "") for plan in plans)
    assert any(f"more than the {MAX_ASPECT}:1" in plan.get("refused", "") for plan in plans)
    accepted = [plan for plan in plans if "regions" in plan]
    assert any(plan["scale"] < 1 for plan in accepted) and any(len(plan["regions"]) == 1 for plan in accepted)
    assert max(len(plan["regions"]) for plan in accepted) == 2 * MAX_ASPECT
    assert all(max(plan["regions"][0][2:]) <= MAX_SEARCH_SIDE for plan in accepted)


def test_the_bounds_are_the_shared_files(tmp_path):
    bounds = json.loads(SEARCH_FILE.read_text(encoding="utf-8"))
    assert (MIN_FACE_PIXELS, MAX_ASPECT, MAX_SEARCH_SIDE, TILE_ABOVE_ASPECT) == (
        bounds["min_face_pixels"], bounds["max_aspect"], bounds["max_search_side"], bounds["tile_above_aspect"])
    damaged = tmp_path / "detection.json"
    damaged.write_text(json.dumps({key: value for key, value in bounds.items() if key != "max_aspect"}))
    with pytest.raises(ValueError, match="lacks max_aspect: restore it from git"):
        load_search_bounds(damaged)


if __name__ == "__main__":
    PLANS_FILE.write_text(json.dumps({
        "about": "faces.detection.search_plan on each shape (tests/faces/test_search_plans.py writes it); "
                 "web/test/search_plan.test.mjs replays it through web/static/faces.mjs searchPlan.",
        "plans": [recorded(size) for size in SIZES]}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {PLANS_FILE}")
