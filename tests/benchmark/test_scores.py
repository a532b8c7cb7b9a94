"""The benchmark's figures: each image scored once, summed up per split and per look; the page's share of the
faces of a catalogue, and its gates against PyTorch on the same faces. Nothing here trains or opens a browser."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.suite import gate_failures, page_share, quality, scores
from models.metrics import mean_psnr_db, psnr_db, ssim, ssim_per_image


def ssim_by_the_book(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Wang et al.'s SSIM with the 2-D Gaussian window as one depthwise convolution, the textbook form."""
    coords = torch.arange(window, dtype=torch.float64) - window // 2
    gauss = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = torch.outer(gauss, gauss) / gauss.sum() ** 2
    kernel = kernel.expand(x.shape[1], 1, window, window).contiguous()
    blur = lambda t: F.conv2d(t, kernel, groups=t.shape[1])  # noqa: E731
    x, y = x.double(), y.double()
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))).mean().item()


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(10, 3, 40, 48, generator=generator)
    noise = torch.linspace(0.01, 0.2, 10).view(10, 1, 1, 1)  # each image its own error
    made_up = (target + noise * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    reference = (made_up + 0.01 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    return made_up, target, reference


def test_the_separable_ssim_is_the_textbook_one(images):
    made_up, target, _ = images
    assert ssim(made_up, target) == pytest.approx(ssim_by_the_book(made_up, target), abs=1e-6)
    each = ssim_per_image(made_up, target, chunk=3)  # chunks of 3 of 10: the last one short
    assert each.shape == (10,)
    for index in (0, 9):
        assert each[index].item() == pytest.approx(ssim_by_the_book(made_up[index:index + 1], target[index:index + 1]),
                                                   abs=1e-6)
    assert each[0] > each[-1]  # the least noisy image scores highest
    assert ssim(target, target) == pytest.approx(1.0, abs=1e-6)


def test_a_split_and_a_look_sum_up_the_same_images_as_scoring_them_alone(images):
    made_up, target, reference = images
    figures = scores(made_up.numpy(), target, reference)
    whole = quality(figures)
    assert whole["psnr_db"] == pytest.approx(mean_psnr_db(made_up, target), abs=1e-9)
    assert whole["psnr_pooled_db"] == pytest.approx(psnr_db(made_up, target), abs=1e-9)
    assert whole["psnr_vs_pytorch_db"] == pytest.approx(psnr_db(made_up, reference), abs=1e-9)
    assert whole["ssim"] == pytest.approx(ssim(made_up, target), abs=1e-9) and whole["pairs"] == 10
    rows = torch.tensor([1, 0, 0, 1, 1, 0, 1, 0, 0, 1], dtype=torch.bool)
    alone = quality(scores(made_up[rows].numpy(), target[rows], reference[rows]))
    assert quality(figures, rows) == pytest.approx(alone)
    assert not math.isclose(alone["psnr_db"], whole["psnr_db"])  # the look's own faces, not the split's


def test_the_page_scores_the_first_share_of_each_look_and_is_gated_on_the_same_faces():
    order = torch.tensor([0] * 5 + [1] * 6 + [2] * 4 + [3] * 8)
    looks = {"test": F.one_hot(order, 4).float()}
    faces = {"test": (torch.arange(23.0), torch.arange(23.0) + 100)}
    shared, references, shared_looks, note = page_share(faces, {"test": torch.arange(23.0) + 200}, looks,
                                                        ["a", "b", "c", "d"])
    # ceil(5/4), ceil(6/4), ceil(4/4), ceil(8/4) faces, each look's first, in the split's order
    assert shared["test"][0].tolist() == [0, 1, 5, 6, 11, 15, 16]
    assert shared["test"][1].tolist() == [100, 101, 105, 106, 111, 115, 116]
    assert references["test"].tolist() == [200, 201, 205, 206, 211, 215, 216]
    assert shared_looks["test"].argmax(dim=1).tolist() == [0, 0, 1, 1, 2, 3, 3]
    assert "7 of 23 test" in note
    assert page_share(faces, {}, {}, ["a"])[3] is None  # one look: every face

    rows = [{"name": "PyTorch", "format": "pytorch", "quality": {"test": {"psnr_db": 40.0}}},
            {"name": "page", "format": "browser", "quality": {"test": {"psnr_db": 38.0, "pytorch_psnr_db": 38.2}}},
            {"name": "onnx", "format": "onnx", "quality": {"test": {"psnr_db": 38.0}}}]
    failures = gate_failures(rows, "test", max_drop=0.5, min_psnr=None)
    assert failures == ["onnx: 2.00 dB below PyTorch on truth (limit 0.5 dB)"]  # the page: 0.2 dB on its faces


def test_scores_take_the_runtimes_float_arrays():
    target = torch.full((2, 3, 16, 16), 0.5)
    figures = scores(np.full((2, 3, 16, 16), 0.5, np.float32), target, None)
    assert quality(figures)["psnr_db"] == 100.0 and "psnr_vs_pytorch_db" not in quality(figures)


def test_a_row_on_part_of_the_faces_carries_pytorchs_psnr_on_the_same_faces(images):
    from benchmark.suite import score_rows

    made_up, target, reference = images
    looks = {"test": F.one_hot(torch.tensor([0] * 5 + [1] * 5), 2).float()}
    row = {"quality": {}}
    score_rows(row, {"test": made_up.numpy()}, {"test": (made_up, target)}, {"test": reference}, looks, ["a", "b"],
               same_faces=True)
    assert row["quality"]["test"]["pytorch_psnr_db"] == pytest.approx(mean_psnr_db(reference, target), abs=1e-9)
    assert row["looks"]["b"]["test"]["pytorch_psnr_db"] == pytest.approx(mean_psnr_db(reference[5:], target[5:]),
                                                                          abs=1e-9)
    plain = {"quality": {}}
    score_rows(plain, {"test": made_up.numpy()}, {"test": (made_up, target)}, {"test": reference}, looks, ["a", "b"])
    assert "pytorch_psnr_db" not in plain["quality"]["test"]
