"""The look choices the page shares with Python (tests/traces/look_choices.json) through models/look_choice.py:
the page's web/static/looks.mjs replays the same cases in plain Node (web/test/looks.test.mjs), so a choice
means the same weights in `apply --look`, the benchmark and the page; and both sides allow the same slack
on a blend's sum."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from models.look_choice import BLEND_TOLERANCE, LookChoiceError, describe, look_weights

ROOT = Path(__file__).resolve().parents[2]
CASES = json.loads((ROOT / "tests" / "traces" / "look_choices.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[f"{case['choice']!r} of {len(case['looks'])}" for case in CASES])
def test_a_shared_choice_gives_its_recorded_weights_or_error(case):
    if "error" in case:
        with pytest.raises(LookChoiceError, match=re.escape(case["error"])):
            look_weights(case["choice"], case["looks"])
        return
    weights = look_weights(case["choice"], case["looks"])
    if case["weights"] is None:
        assert weights is None
    else:
        np.testing.assert_array_equal(weights, np.asarray([case["weights"]], np.float32))
    if "described" in case:
        assert describe(weights, case["looks"]) == case["described"]


def test_the_page_allows_the_same_slack_on_a_blend():
    source = (ROOT / "web" / "static" / "looks.mjs").read_text()
    found = re.search(r"export const BLEND_TOLERANCE = ([0-9.e-]+);", source)
    assert found and float(found.group(1)) == BLEND_TOLERANCE
