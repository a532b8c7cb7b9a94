import torch

from train.losses import eyeliner_loss, makeup_loss


def eye_mask(size=32, top=8, bottom=16):
    mask = torch.zeros(1, 1, size, size)
    mask[..., top:bottom, :] = 1
    return mask


def image_with_line(row, strength, size=32):
    image = torch.full((1, 3, size, size), 0.6)
    image[..., row, 4:28] -= strength
    return image


def test_zero_for_equal_images():
    image = torch.rand(2, 3, 32, 32)
    assert eyeliner_loss(image, image.clone(), eye_mask().expand(2, 1, 32, 32)).item() == 0.0


def test_grows_with_edge_difference_inside_mask():
    target = image_with_line(12, 0.5)
    weak, strong = image_with_line(12, 0.2), image_with_line(12, 0.05)
    mask = eye_mask()
    assert eyeliner_loss(weak, target, mask) < eyeliner_loss(strong, target, mask)
    assert eyeliner_loss(strong, target, mask) > 0


def test_blind_outside_mask():
    target = image_with_line(26, 0.5)  # the line sits outside rows 8..16
    prediction = image_with_line(26, 0.0)
    assert eyeliner_loss(prediction, target, eye_mask()).item() == 0.0
    assert torch.nn.functional.l1_loss(prediction, target) > 0  # L1 still sees it


def test_makeup_loss_weights():
    target, prediction, mask = image_with_line(12, 0.5), image_with_line(12, 0.1), eye_mask()
    parts = makeup_loss(prediction, target, mask, l1_weight=1.0, eyeliner_weight=0.5)
    assert torch.isclose(parts["loss"], parts["l1"] + 0.5 * parts["eyeliner"])
    only_l1 = makeup_loss(prediction, target, mask, eyeliner_weight=0.0)
    assert torch.isclose(only_l1["loss"], only_l1["l1"])
