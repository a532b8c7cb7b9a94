"""Training losses: a pixel term on the made-up face plus the eyeliner loss (Sobel edges near the eyes).

The pixel term is the paper's L1 or Charbonnier, ``sqrt(e^2 + eps^2) - eps``: L1 for errors well
above ``eps``, quadratic below it. The difference matters at the start. A residual network
starts at the no-makeup baseline (residual ~ 0), and most pixels of a face carry no makeup
(target == input): under L1 each of them pulls the residual back to zero with a constant force
``sign(residual)`` however small the residual is, while the few made-up pixels pull away; the
network can sit there for tens of epochs (seeds 1 and 3 of the CPU preset: 19 and 14). Under
Charbonnier an untouched pixel's pull fades as its residual shrinks, so the made-up pixels win
from the first steps (docs/training.md has the numbers over seeds)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from train.config import PIXEL_LOSSES

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
LUMA = (0.299, 0.587, 0.114)


def sobel_edges(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical Sobel gradients of the grayscale image (N x 1 x H x W each)."""
    weights = torch.tensor(LUMA, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    gray = F.pad((image * weights).sum(dim=1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    kernel_x = SOBEL_X.to(image)
    grad_x = F.conv2d(gray, kernel_x.view(1, 1, 3, 3))
    grad_y = F.conv2d(gray, kernel_x.t().contiguous().view(1, 1, 3, 3))
    return grad_x, grad_y


def eyeliner_loss(prediction: torch.Tensor, target: torch.Tensor, eye_mask: torch.Tensor) -> torch.Tensor:
    """Mask-weighted L1 between the Sobel edges of prediction and target.

    ``eye_mask`` is N x 1 x H x W in [0, 1]; the loss is blind to everything outside it. It is
    averaged over all pixels, like the L1 term, so the two weights (1.0 and 0.5) compare like
    with like. (Averaging over the mask's mass instead made the eyeliner term ~20x the L1 term;
    the network then learned eyeliner and shadow but never the lipstick or blush.)
    """
    pred_x, pred_y = sobel_edges(prediction)
    true_x, true_y = sobel_edges(target)
    error = (pred_x - true_x).abs() + (pred_y - true_y).abs()
    return (error * eye_mask).mean()


def charbonnier(error: torch.Tensor, eps: float) -> torch.Tensor:
    """Mean of ``sqrt(error^2 + eps^2) - eps`` (zero at zero error, like L1)."""
    return (torch.sqrt(error * error + eps * eps) - eps).mean()


def makeup_loss(made_up: torch.Tensor, target: torch.Tensor, eye_mask: torch.Tensor,
                l1_weight: float = 1.0, eyeliner_weight: float = 0.5, pixel_loss: str = "l1",
                charbonnier_eps: float = 1e-2) -> dict[str, torch.Tensor]:
    """Total loss and its parts. ``made_up`` must be the *unclamped* ``face + residual``.

    ``l1_weight`` weighs the pixel term whichever ``pixel_loss`` it is; the ``l1`` part is always
    the plain mean absolute error, so logs of different recipes compare."""
    if pixel_loss not in PIXEL_LOSSES:
        raise ValueError(f"pixel_loss must be one of {PIXEL_LOSSES}, got {pixel_loss!r}")
    l1 = F.l1_loss(made_up, target)
    pixel = l1 if pixel_loss == "l1" else charbonnier(made_up - target, charbonnier_eps)
    eyeliner = eyeliner_loss(made_up, target, eye_mask)
    return {"loss": l1_weight * pixel + eyeliner_weight * eyeliner, "l1": l1, "eyeliner": eyeliner}
