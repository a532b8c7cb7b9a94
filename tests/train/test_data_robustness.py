"""Training data that used to hang or crash training gets a clear refusal (issue 27).

One test per kind: a symbolic link in the data folder that leads nowhere or loops, an image of a
shape that cannot hold a face (the face detector's work is bounded by shape and size, counted in
passes, not time), and a pairs.csv saved with a UTF-8 byte-order mark (or not UTF-8 at all).
"""

from __future__ import annotations

import csv
import logging
import os

import numpy as np
import pytest
from conftest import train_args
from PIL import Image

from faces import FaceDetector
from models.data import DataError
from train.__main__ import main as train_main
from train.dataset import load_pairs


def write_pairs(root, names=("a", "b", "c", "d"), size=(40, 40)):
    for folder, colour in (("source", (120, 80, 60)), ("target", (130, 70, 60))):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.new("RGB", size, colour).save(root / folder / f"{name}.png")
    return root


def refused(data, tmp_path, caplog, *extra) -> str:
    """Train on ``data``; it must stop with exit 2 and one logged message, which is returned."""
    with caplog.at_level(logging.ERROR, logger="train"):
        assert train_main(train_args(data, tmp_path / "run", "--epochs", "1", *extra)) == 2
    return caplog.text


# 1. Symbolic links that lead nowhere or into a loop --------------------------------------------

@pytest.mark.parametrize("link,target", [
    ("source/e.png", "missing.png"),  # dangling
    ("source/e.png", "e.png"),  # a loop onto itself
    ("target/a.png", "../target/a.png"),  # a loop through its folder
    ("source", "nowhere"),  # the layout's folder itself
])
def test_a_link_that_leads_nowhere_or_loops_is_named(tmp_path, caplog, link, target):
    data = write_pairs(tmp_path / "data")
    path = data / link
    if path.is_dir():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    elif path.exists():
        path.unlink()
    os.symlink(target, path)
    if link == "source/e.png":
        Image.new("RGB", (40, 40)).save(data / "target" / "e.png")
    message = refused(data, tmp_path, caplog, "--eye-mask", "band")
    assert f"{path} is a symbolic link" in message and "remove it" in message


# 2. Images whose shape cannot hold a face ------------------------------------------------------

class CountingDetector(FaceDetector):
    """The real detector, recording the side of the square each of its passes letterboxes."""

    def __init__(self):
        super().__init__(threads=1)
        self.squares: list[int] = []

    def _detect(self, image, offset):
        self.squares.append(max(image.size))
        return super()._detect(image, offset)


@pytest.mark.parametrize("size", [(3000, 4), (4, 3000), (2000, 100), (10, 10)])
def test_a_shape_that_cannot_hold_a_face_is_refused_before_any_pass(size):
    detector = CountingDetector()
    with pytest.raises(ValueError, match=f"{size[0]}x{size[1]} pixels"):
        detector(Image.new("RGB", size))
    assert detector.squares == []


def test_the_detectors_passes_are_bounded_and_still_find_the_face():
    """A long, large image (the old search: 30 passes on letterbox squares 6000 pixels a side, 100 MB
    each) is searched shrunk, in at most 2 * MAX_ASPECT passes, and the face is still found where it is."""
    from faces.detection import MAX_ASPECT, MAX_SEARCH_SIDE
    from train.synthetic import render_pair, to_uint8

    face = Image.fromarray(to_uint8(render_pair(0, seed=0, size=256)[0]))
    image = Image.new("RGB", (6000, 400), (90, 90, 90))
    image.paste(face, (3000, 72))
    detector = CountingDetector()
    found = detector(image)
    assert 1 < len(detector.squares) <= 2 * MAX_ASPECT and max(detector.squares) <= MAX_SEARCH_SIDE
    assert found, "the face was not found in the shrunk image"
    x0, y0, x1, y1 = found[0].box
    assert abs((x0 + x1) / 2 - 3128) < 25 and abs((y0 + y1) / 2 - 200) < 40  # in the full image's pixels


@pytest.mark.parametrize("size", [(32_000, 2000), (4096, 256), (257, 4096), (5000, 5000), (16, 16)])
def test_the_search_plan_is_bounded_by_shape_and_area(size):
    """Every shape the detector accepts (up to the 64-megapixel limit on reading) costs at most
    2 * MAX_ASPECT passes on squares at most MAX_SEARCH_SIDE across, and the squares cover it."""
    from faces.detection import MAX_ASPECT, MAX_SEARCH_SIDE, search_plan

    scale, regions = search_plan(*size)
    width, height = regions[0][2], regions[0][3]
    assert max(width, height) <= MAX_SEARCH_SIDE and len(regions) <= 2 * MAX_ASPECT
    assert abs(width - size[0] * scale) <= 1 and abs(height - size[1] * scale) <= 1
    covered = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in regions[1:] or regions:
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_training_refuses_an_image_that_cannot_hold_a_face_naming_it(tmp_path, caplog):
    data = write_pairs(tmp_path / "data")
    for folder in ("source", "target"):
        Image.new("RGB", (2000, 10), (120, 80, 60)).save(data / folder / "strip.png")
    message = refused(data, tmp_path, caplog)  # the default eye mask: the face mesh
    assert str(data / "source" / "strip.png") in message and "2000x10 pixels" in message
    assert "crop it to the face or remove the pair" in message


# 3. pairs.csv as spreadsheets save it ----------------------------------------------------------

def test_pairs_csv_with_a_byte_order_mark(tmp_path):
    data = write_pairs(tmp_path)
    with (data / "pairs.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "target"])
        writer.writerows([[f"source/{name}.png", f"target/{name}.png"] for name in "abc"])
    assert load_pairs(data, 32, eye_mask="band").names == ["source/a.png", "source/b.png", "source/c.png"]


def test_pairs_csv_that_is_not_utf8_is_named(tmp_path):
    data = write_pairs(tmp_path, names=("café",))
    (data / "pairs.csv").write_bytes("source,target\nsource/café.png,target/café.png\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"pairs\.csv is not UTF-8 text.*save it as UTF-8"):
        load_pairs(data, 32, eye_mask="band")
