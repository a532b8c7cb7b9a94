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


def test_look_balanced_objective_counts_each_look_by_its_relative_error():
    """--look-loss log: the reported loss is the plain mean as ever; the objective's gradient gives a look whose
    errors are 10x smaller the same pull as the strong one (a plain mean gives it a tenth)."""
    target = torch.zeros(4, 3, 16, 16)
    made_up = torch.tensor([0.5, 0.5, 0.05, 0.05]).view(4, 1, 1, 1).expand(4, 3, 16, 16).clone().requires_grad_()
    mask, looks = torch.zeros(4, 1, 16, 16), torch.tensor([0, 0, 1, 1])
    for look_loss, faint_over_strong in (("mean", 0.1), ("log", 1.0)):
        parts = makeup_loss(made_up, target, mask, pixel_loss="l1", looks=looks, look_loss=look_loss)
        assert torch.isclose(parts["loss"], makeup_loss(made_up, target, mask, pixel_loss="l1")["loss"])
        (grad,) = torch.autograd.grad(parts["objective"], made_up)
        # the pull on the outputs scaled by each sample's error: how far the objective moves when every
        # sample's error shrinks by the same fraction (what PSNR counts)
        pull = (grad * made_up).detach().flatten(1).sum(dim=1)
        assert torch.isclose(pull[2] / pull[0], torch.tensor(faint_over_strong), rtol=1e-4)


def test_one_look_objective_is_the_loss():
    target, prediction, mask = image_with_line(12, 0.5), image_with_line(12, 0.1), eye_mask()
    parts = makeup_loss(prediction, target, mask)
    assert parts["objective"] is parts["loss"]
