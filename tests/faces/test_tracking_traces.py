"""The tracker's recorded traces (tests/traces/tracking/, `python -m tools.tracking_traces` writes them) replayed
through faces.tracking_step; web/test/tracking.test.mjs replays the same files through the page's
tracking_step.mjs (`node --test web/test/`). A decision or a number that changes on one side only fails
that side's replay; faces/tracking.json is the numbers of both."""

from __future__ import annotations

import copy
import json

import pytest

from faces.tracking_step import PARAMS
from tools.tracking_traces import TRACES, TraceMismatch, replay

NAMES = sorted(path.stem for path in TRACES.glob("*.json"))
# Each number the step reads, changed: some trace must notice (the value a trace cannot tell from the real one
# would be a number no recorded decision depends on).
CHANGES = {"smoothing": {"centre": [0.5, 20.0], "size": [0.5, 20.0], "angle": [0.5, 20.0]},
           "derivative_cutoff": 1.0, "fallback_fps": 60, "mesh_passes": 2,
           "region_hold": {"shift": 0.06, "scale": 0.05, "degrees": 3.0}, "match_iou": 0.7, "duplicate_iou": 0.2,
           "stale_widen": 1.5, "around_reach": 5, "catch_up": 0.25}


def load(name: str) -> dict:
    return json.loads((TRACES / f"{name}.json").read_text())


def test_the_traces_cover_real_runs_and_the_edge_cases():
    assert set(NAMES) >= {"moving", "leave_and_return", "two_faces", "lost_and_returned", "out_of_frame",
                          "two_faces_duplicate_cap", "stale_search", "far_between_frames"}


@pytest.mark.parametrize("name", NAMES)
def test_trace_replays(name):
    replay(load(name))


@pytest.mark.parametrize("key", sorted(CHANGES))
def test_a_changed_number_fails_a_replay(key):
    params = copy.deepcopy(PARAMS)
    assert params[key] != CHANGES[key]
    params[key] = CHANGES[key]
    noticed = []
    for name in NAMES:
        try:
            replay(load(name), params)
        except TraceMismatch as mismatch:
            noticed.append((name, str(mismatch)))
    assert noticed, f"no trace depends on {key}"
