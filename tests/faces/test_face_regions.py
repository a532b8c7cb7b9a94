"""The face regions for per-region strength (faces/regions.json, faces/regions.py, faces/region_weights.py):
where they lie on real faces, the weights they give, and the recorded faces the page's regions.mjs is checked
against (tests/traces/regions/, `python -m tools.region_fixture`; web/test/regions.test.mjs replays them)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faces.region_weights import TEMPLATE, ellipse_mask, region_masks, region_shapes, weight_map
from faces.regions import NEUTRAL, REGION_NAMES, RegionError, parse_strengths
from tools.region_fixture import FIXTURES, MASK_NAMES, template
from train import portraits
from train.looks import LOOKS

SIZE = 128


def test_strengths_name_some_regions_and_the_rest_stay_at_one():
    assert parse_strengths("lips=1, eyes=0.5,cheeks=0") == {"lips": 1.0, "eyes": 0.5, "cheeks": 0.0, "rest": 1.0}
    assert parse_strengths("rest=2") == {**NEUTRAL, "rest": 2.0}
    for bad in ("mouth=1", "lips=2.5", "lips=-1", "lips=inf", "lips=x", "lips=1,lips=1", "=1", "lips="):
        with pytest.raises(RegionError, match=", ".join(REGION_NAMES)):
            parse_strengths(bad)


@pytest.mark.parametrize("name", sorted(path.stem for path in FIXTURES.glob("*.json")))
def test_the_recorded_faces_are_what_python_gives_now(name):
    """The page is checked against these files: they must be Python's numbers, or regenerated."""
    recorded = json.loads((FIXTURES / f"{name}.json").read_text())
    shapes = TEMPLATE if recorded["points"] is None else region_shapes(np.array(recorded["points"]))
    assert shapes == recorded["shapes"], "run `python -m tools.region_fixture`"
    for weights in recorded["weights"]:
        assert weight_map(shapes, weights["strengths"], recorded["size"]).tolist() == weights["map"]
    masks = recorded["masks"]
    assert masks["names"] == list(MASK_NAMES)
    assert region_masks(shapes, MASK_NAMES, recorded["size"]).tolist() == masks["maps"]


def test_the_recorded_masks_are_the_maps_a_region_input_network_reads():
    from train.region_maps import REGION_INPUTS

    assert MASK_NAMES == REGION_INPUTS


def test_the_template_is_the_mean_of_the_frontal_portraits():
    """faces/regions.json's template is what `python -m tools.region_fixture --template` prints."""
    assert template() == TEMPLATE


def masks_of(points: np.ndarray) -> dict[str, np.ndarray]:
    centres = (np.arange(SIZE) + 0.5) / SIZE
    v, u = np.meshgrid(centres, centres, indexing="ij")
    return {name: np.max([ellipse_mask(ellipse, u, v) for ellipse in ellipses], axis=0)
            for name, ellipses in region_shapes(points / SIZE).items()}


@pytest.mark.parametrize("identity", sorted(portraits.PORTRAITS))
def test_each_region_holds_where_every_look_paints_it(identity):
    """The training portraits' looks (train/portraits.py, the same mesh contours): lipstick inside the lips
    region, shadow, smudge and liner inside the eyes', most of the (very soft) blush inside the cheeks'."""
    for index in range(2):
        crop, points = portraits.resample(identity, portraits.draw_variation(
            np.random.default_rng([0, index]), np.ones(3)), SIZE)
        regions = masks_of(points)

        def held(mask: np.ndarray, region: str, regions=regions) -> float:
            return float((mask * regions[region]).sum() / max(mask.sum(), 1e-9))

        for name, look in LOOKS.items():
            painted = portraits.look_masks(points, SIZE, look)
            where = f"{identity} {index} {name}"
            assert held(painted.lips, "lips") > 0.99, where
            assert min(held(painted.shadow, "eyes"), held(painted.liner, "eyes")) > 0.99, where
            assert look.lower_shadow_alpha == 0 or held(painted.lower_shadow, "eyes") > 0.95, where
            assert held(painted.blush, "cheeks") > 0.65, where


def test_weights_lie_between_the_strengths_and_the_lips_rule_where_they_are():
    recorded = json.loads((FIXTURES / "astronaut.json").read_text())
    shapes = recorded["shapes"]
    strengths = {"lips": 0.0, "eyes": 2.0, "cheeks": 0.5, "rest": 1.0}
    weights = weight_map(shapes, strengths, SIZE)
    assert weights.min() == 0.0 and weights.max() == 2.0
    (centre_x, centre_y, *_), = shapes["lips"]
    assert weights[int(centre_y * SIZE), int(centre_x * SIZE)] == 0.0, "the lips' strength alone, whatever overlaps"
    assert weights[0, 0] == 1.0, "outside every region: the rest"
    assert (weight_map(shapes, NEUTRAL, SIZE) == 1.0).all()


def test_region_masks_read_only_the_pixels_each_ellipse_reaches_to_the_bit():
    """region_masks (the maps a region-input network reads) computes each ellipse on the pixels it can reach
    only: the same float32 maps as every pixel of the crop computed, for shapes inside, across and off its edge."""
    rng = np.random.default_rng(0)
    names = ("lips", "eyes", "cheeks")
    for size in (32, 64, 97, 256):
        centres = (np.arange(size, dtype=np.float64) + 0.5) / size
        for shift in (0.0, 0.3, 0.7):
            shapes = {name: [[x + rng.uniform(-shift, shift), y + rng.uniform(-shift, shift), *rest]
                             for x, y, *rest in ellipses] for name, ellipses in TEMPLATE.items()}
            everywhere = np.stack([np.max([ellipse_mask(ellipse, centres[None, :], centres[:, None])
                                           for ellipse in shapes[name]], axis=0) for name in names])
            assert np.array_equal(region_masks(shapes, names, size), everywhere.astype(np.float32))
