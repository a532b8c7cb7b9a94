"""Image-quality metrics shared by every stage. Images are float in [0, 1], NCHW."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0  # identical images: report a finite cap instead of infinity


def psnr_db(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR over the whole batch (one MSE over every pixel), after quantizing to 8 bits.

    Both sides are rounded to 8-bit levels first, as a saved image would be, so every stage
    and format is scored the same way.
    """
    prediction = torch.round(prediction.clamp(0, 1) * 255)
    target = torch.round(target.clamp(0, 1) * 255)
    mse = torch.mean((prediction - target) ** 2).item()
    return PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10 * math.log10(255.0**2 / mse))


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
