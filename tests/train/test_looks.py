"""The catalogue of looks (train/looks) as both built-in renderers draw it: deterministic, each look
made up only where it goes, and the looks distinct in colour and in the regions they claim."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from conftest import grown
from PIL import Image

from train import looks, portraits, synthetic
from train.looks import figure
from train.synthetic import LABELS

SIZE = 128
# The built-in set's berry target (pair 1, seed 3, 64 px) as it was before the catalogue existed.
BERRY_TARGET_SHA256 = "4229abbfe533c36e0ff0593edb2722a20ad43b471f4f32a128416596ae27f4f8"
RENDERERS = {  # the same face under every look: a cartoon, and a real portrait with its variation
    "cartoon": lambda look, seed=0: synthetic.render_pair(2, seed=seed, size=SIZE, look=look),
    "portrait": lambda look, seed=0: portraits.render_pair("collins", 1, seed=seed, size=SIZE, look=look),
}


def test_the_catalogue_names_four_looks_with_distinct_swatches():
    assert list(looks.LOOKS)[:4] == ["berry", "natural", "classic", "smoky"]
    assert looks.LOOKS["berry"] is looks.BERRY
    entries = looks.catalogue()
    assert [entry["name"] for entry in entries] == list(looks.LOOKS)
    assert len({entry["swatch_hex"] for entry in entries}) == len(entries)
    assert all(len(entry["swatch_hex"]) == 7 and entry["description"] for entry in entries)
    with pytest.raises(KeyError, match="natural"):  # an unknown name lists the catalogue
        looks.look_named("glitter")


def test_berry_is_the_default_and_its_pairs_are_unchanged():
    default = synthetic.render_pair(1, seed=3, size=64)
    berry = synthetic.render_pair(1, seed=3, size=64, look=looks.LOOKS["berry"])
    for a, b in zip(default, berry, strict=True):
        np.testing.assert_array_equal(a, b)
    # A change here changes the built-in training data.
    digest = hashlib.sha256(synthetic.to_uint8(default[1]).tobytes()).hexdigest()
    assert digest == BERRY_TARGET_SHA256


@pytest.mark.parametrize("renderer", sorted(RENDERERS))
@pytest.mark.parametrize("name", sorted(looks.LOOKS))
def test_each_look_is_a_pure_function_of_the_seed(renderer, name):
    render = RENDERERS[renderer]
    first, again = render(looks.LOOKS[name]), render(looks.LOOKS[name])
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other_seed = render(looks.LOOKS[name], seed=1)
    assert np.abs(first[1] - other_seed[1]).mean() > 0.01
    berry = render(looks.BERRY)
    np.testing.assert_array_equal(first[0], berry[0])  # the same face under every look
    if name != "berry":
        assert np.abs(first[1] - berry[1]).max() > 0.2


@pytest.mark.parametrize("name", sorted(looks.LOOKS))
def test_each_look_leaves_the_background_alone(name):
    source, target, labels = RENDERERS["cartoon"](looks.LOOKS[name])
    change = np.abs(target - source).max(axis=2)
    assert change[labels == LABELS["background"]].max() < 1e-6
    source, target, labels, masks = portraits.render_with_masks("collins", 1, seed=0, size=SIZE,
                                                                look=looks.LOOKS[name])
    change = np.abs(target - source).max(axis=2)
    made_up = np.max([masks.lips, masks.shadow, masks.lower_shadow, masks.liner, masks.blush], axis=0) > 0.002
    assert change[~grown(made_up, 2)].max() < 0.002
    assert change[~grown(labels > 0, 3)].max() < 1e-6


def _regions(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Lips; around the eyes (brows to a little below the eyes); a band under each eye; the skin just
    past each eye's outer corner at lid height (where a wing goes)."""
    rows, columns = np.arange(SIZE)[:, None], np.arange(SIZE)[None, :]
    regions = {"lips": np.isin(labels, [LABELS["upper_lip"], LABELS["lower_lip"]]),
               "eyes": np.zeros_like(labels, bool), "under_eyes": np.zeros_like(labels, bool),
               "past_corners": np.zeros_like(labels, bool)}
    face_centre = np.nonzero(labels > 0)[1].mean()
    for eye_label, brow_label in ((LABELS["left_eye"], LABELS["left_brow"]),
                                  (LABELS["right_eye"], LABELS["right_brow"])):
        eye_rows, eye_columns = np.nonzero(labels == eye_label)
        top = np.nonzero(labels == brow_label)[0].min()
        across = (columns >= eye_columns.min()) & (columns <= eye_columns.max())
        regions["eyes"] |= across & (rows >= top) & (rows <= eye_rows.max() + SIZE * 0.03)
        regions["under_eyes"] |= across & (rows > eye_rows.max()) & (rows <= eye_rows.max() + SIZE * 0.03)
        outer = eye_columns.min() if eye_columns.mean() < face_centre else eye_columns.max()
        beyond = np.abs(columns - outer) - SIZE * 0.02
        outward = (columns < outer) if outer == eye_columns.min() else (columns > outer)
        regions["past_corners"] |= outward & (beyond > 0) & (beyond < SIZE * 0.06) \
            & (rows >= eye_rows.min() - SIZE * 0.06) & (rows < eye_rows.min())
    return regions


def _made_up(renderer: str, name: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(change per pixel, the made-up image, the regions) of one look on the renderer's face."""
    source, target, labels = RENDERERS[renderer](looks.LOOKS[name])
    return np.abs(target - source).max(axis=2), target, _regions(labels)


@pytest.mark.parametrize("renderer", sorted(RENDERERS))
def test_the_looks_claim_different_regions(renderer):
    change = {name: _made_up(renderer, name)[0] for name in looks.LOOKS}
    regions = _made_up(renderer, "berry")[2]
    eyes, lips = ({name: change[name][regions[part]].mean() for name in change} for part in ("eyes", "lips"))
    assert eyes["smoky"] > 2 * lips["smoky"]  # a smoky eye with nude lips
    assert lips["classic"] > 2 * eyes["classic"]  # a red lip, the eyes only lined
    assert eyes["smoky"] > 2 * max(eyes["berry"], eyes["natural"], eyes["classic"])
    under = {name: change[name][regions["under_eyes"]].mean() for name in change}
    assert under["smoky"] > 3 * max(under["berry"], under["natural"], under["classic"])  # smudged under the lashes
    wing = {name: change[name][regions["past_corners"]].max() for name in change}
    assert wing["classic"] > 0.2 and wing["natural"] < 0.05  # a winged liner, and one without a wing
    winged = {name: int((change[name][regions["past_corners"]] > 0.1).sum()) for name in ("berry", "classic")}
    assert winged["classic"] > winged["berry"]  # classic's wing is the longer


@pytest.mark.parametrize("renderer", sorted(RENDERERS))
def test_classic_lips_are_redder_than_natural_ones_and_smoky_lips_nude(renderer):
    def redness(name: str) -> float:
        _, target, regions = _made_up(renderer, name)
        lips = target[regions["lips"]]
        return float((lips[:, 0] - lips[:, 1:].mean(axis=1)).mean())

    assert redness("classic") > redness("natural") + 0.1
    assert redness("classic") > redness("smoky") + 0.1
    assert redness("berry") > redness("smoky")


def test_the_figure_shows_every_look_on_both_faces(tmp_path):
    assert figure.main(["--figure", str(tmp_path / "looks.png"), "--size", "64"]) == 0
    with Image.open(tmp_path / "looks.png") as written:
        assert written.size == (figure.LABEL_WIDTH + 6 * 64, figure.HEADER_HEIGHT + len(looks.LOOKS) * 64)
    grid = figure.figure_image(64)
    rows = grid.reshape(len(looks.LOOKS), 64, 6, 64, 3)
    np.testing.assert_array_equal(rows[0, :, 0], rows[-1, :, 0])  # every row's "before" is the same cartoon
    assert np.abs(rows[0, :, 1] - rows[-1, :, 1]).max() > 0.2  # and its "after" differs by look


def test_the_built_in_looks_are_rendered_on_each_face_once_and_kept(tmp_path):
    """write_looks / write_portrait_looks (train/builtin.py's) draw a face once for every look: each look's pairs
    are the ones that look alone renders; a look added to the folders later renders only its own pairs."""
    folders = {name: tmp_path / name for name in ("berry", "smoky")}
    synthetic.write_looks(folders, 2, size=64, workers=1)
    portraits.write_portrait_looks(folders, {"collins": 1}, size=64, workers=1)
    for name, folder in folders.items():
        for file, pair in (("image_0002.png", synthetic.render_pair(2, size=64, look=looks.LOOKS[name])),
                           ("real_collins_0001.png", portraits.render_pair("collins", 1, size=64,
                                                                           look=looks.LOOKS[name]))):
            for sub, expected in zip(("source", "target"), pair[:2], strict=True):
                written = np.asarray(Image.open(folder / sub / file))
                np.testing.assert_array_equal(written, synthetic.to_uint8(expected))
    kept = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.png")}
    folders["natural"] = tmp_path / "natural"
    synthetic.write_looks(folders, 2, size=64, workers=1)
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in kept.items())  # nothing rewritten
    assert sorted(p.name for p in (tmp_path / "natural" / "target").iterdir()) == ["image_0001.png", "image_0002.png"]
    with pytest.raises(KeyError, match="glitter"):  # an unknown look: refused before anything is drawn
        synthetic.write_looks({"glitter": tmp_path / "glitter"}, 1, size=64, workers=1)
    assert not (tmp_path / "glitter").exists()
