"""The end of training draws the held-out faces beside their scores: what the model did, and what it should have."""

import numpy as np
import torch
from conftest import IMAGE_SIZE
from PIL import Image

from models.data import faces_as_tensors, load_split


def test_held_out_faces_are_drawn_with_the_residual_they_should_have(trained_run):
    split = torch.load(trained_run / "tinybeauty_best_psnr.pt", weights_only=True)["split"]
    source, target = faces_as_tensors(load_split(split, "test"))
    grid = np.asarray(Image.open(trained_run / "held_out_test.png"))
    # one row per test face (2 here), columns: input | prediction | target | residual x4 | wanted residual x4
    assert grid.shape == (len(source) * IMAGE_SIZE, 5 * IMAGE_SIZE, 3)
    first = grid[:IMAGE_SIZE]
    columns = [first[:, k * IMAGE_SIZE:(k + 1) * IMAGE_SIZE].astype(int) for k in range(5)]
    as_uint8 = lambda image: (image.clamp(0, 1) * 255).round().permute(1, 2, 0).numpy().astype(int)  # noqa: E731
    assert np.array_equal(columns[0], as_uint8(source[0])) and np.array_equal(columns[2], as_uint8(target[0]))
    assert np.array_equal(columns[4], as_uint8((target[0] - source[0]) * 4 + 0.5))
    # the validation faces chose the checkpoint: they are not held out, and not drawn as if they were
    assert not (trained_run / "held_out_val.png").exists()
