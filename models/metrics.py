"""Image-quality metrics shared by every stage. Images are float in [0, 1], NCHW."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0  # identical images: report a finite cap instead of infinity


def _to_db(mse: float) -> float:
    return PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10 * math.log10(255.0**2 / mse))


def _squared_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Both sides rounded to 8-bit levels first, as a saved image would be, so every stage and
    format is scored the same way."""
    prediction = torch.round(torch.as_tensor(prediction).float().clamp(0, 1) * 255)
    target = torch.round(torch.as_tensor(target).float().clamp(0, 1) * 255)
    return (prediction - target) ** 2


def psnr_db(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """*Pooled* PSNR: one MSE over every pixel of the batch (8-bit levels)."""
    return _to_db(torch.mean(_squared_error(prediction, target)).item())


def psnr_per_image_db(prediction: torch.Tensor, target: torch.Tensor) -> list[float]:
    """PSNR of each image of an N x C x H x W batch (8-bit levels)."""
    mse = _squared_error(prediction, target).flatten(1).mean(dim=1)
    return [_to_db(value) for value in mse.tolist()]


def mean_psnr_db(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """The paper's convention: the mean of per-image PSNR. (Pooled PSNR weights the worst
    images more; report it beside this, labelled.)"""
    values = psnr_per_image_db(prediction, target)
    return sum(values) / len(values)


def ssim(prediction: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004) with a Gaussian window, per channel, on [0, 1] images."""
    coords = torch.arange(window, dtype=torch.float32) - window // 2
    gauss = torch.exp(-(coords**2) / (2 * sigma**2))
    gauss = gauss / gauss.sum()
    kernel = (gauss[:, None] * gauss[None, :]).expand(prediction.shape[1], 1, window, window).contiguous()
    blur = lambda x: F.conv2d(x, kernel, groups=x.shape[1])  # noqa: E731
    x, y = prediction.clamp(0, 1).float(), target.clamp(0, 1).float()
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return score.mean().item()
