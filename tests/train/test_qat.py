"""Quantization-aware fine-tuning (train/qat.py): the fake rounding, the palettes, the phase in a run."""

from __future__ import annotations

import torch
from conftest import train_args

from models.checkpoint import load_checkpoint
from models.tinybeauty import build_model
from train.__main__ import main
from train.qat import QuantAware, fake_int8_per_channel, fake_uint8, kmeans_1d


def palettized_layers(model, bits: int) -> list[str]:
    """Names of the convolutions whose weights hold at most ``2**bits`` distinct values."""
    return [name for name, conv in model.named_modules()
            if isinstance(conv, torch.nn.Conv2d) and torch.unique(conv.weight).numel() <= 2 ** bits]


def test_kmeans_recovers_values_that_already_sit_on_a_palette():
    palette = torch.tensor([-0.5, -0.1, 0.0, 0.2, 0.7, 1.3, 2.0, 2.5])
    values = palette[torch.randint(0, 8, (500,), generator=torch.Generator().manual_seed(0))]
    centroids, assign = kmeans_1d(values, 8)
    assert torch.allclose(centroids, palette)
    assert torch.equal(centroids[assign], values)


def test_fake_int8_rounds_each_channel_to_its_own_255_levels():
    weight = torch.randn(4, 3, 3, 3) * torch.tensor([1.0, 0.01, 5.0, 0.2]).view(4, 1, 1, 1)
    rounded = fake_int8_per_channel(weight)
    for channel in range(4):
        step = weight[channel].abs().max() / 127
        levels = rounded[channel] / step
        assert torch.allclose(levels, levels.round(), atol=1e-3)
        assert (rounded[channel] - weight[channel]).abs().max() <= step / 2 + 1e-7


def test_fake_uint8_keeps_zero_exact_and_clips_to_the_range():
    x = torch.tensor([0.0, 0.5, 1.0, 3.0, -1.0])
    y = fake_uint8(x, 0.0, 2.0)
    assert y[0] == 0 and y[3] == 2.0 and y[4] == 0.0
    assert abs(float(y[1]) - 0.5) <= 1 / 255


def test_wrapper_rounds_and_exports_the_weights_it_uses():
    torch.manual_seed(0)
    model = build_model("nano").eval()
    faces = torch.rand(4, 3, 32, 32)
    wrapper = QuantAware(model, palette_bits=4, calibration=faces).eval()
    with torch.no_grad():
        rounded, exact = wrapper(faces), model(faces)
    assert not torch.equal(rounded, exact)  # the rounding is in the forward pass
    plain = wrapper.exported_model()
    assert not plain._forward_hooks and not plain.residual.enc1._forward_hooks
    palettized = set(palettized_layers(plain, 4))
    assert {"residual.enc1.0", "residual.bottleneck.0.0", "residual.dec1.0"} <= palettized
    assert "residual.stem.0" not in palettized  # the edge layers keep full int8 weights
    with torch.no_grad():
        for name, conv in plain.named_modules():
            if isinstance(conv, torch.nn.Conv2d):
                assert torch.equal(conv.weight, wrapper.weight(name))


def test_a_run_ends_with_the_fine_tuning_phase_and_resumes_inside_it(synthetic_data, tmp_path):
    """The last --qat-epochs write qat-phase checkpoints of plain, palettized weights; resuming a
    run inside the phase gives the weights of the straight run, bit for bit."""
    args = ("--qat-epochs", "2", "--palette-bits", "4", "--threads", "1")
    straight = tmp_path / "straight"
    assert main(train_args(synthetic_data, straight, "--epochs", "3", *args)) == 0
    model, payload = load_checkpoint(straight / "tinybeauty_best_psnr.pt")
    assert payload["phase"] == "qat" and payload["epoch"] >= 2 and payload["palette_bits"] == 4
    assert "residual.dec2.0" in palettized_layers(model, 4)
    first = torch.load(straight / "tinybeauty_last.pt", weights_only=True)
    assert first["phase"] == "qat"

    # epoch 2 is the phase's first in both runs: 2 epochs (the last one fine-tuning), then resumed to 3
    cut = tmp_path / "cut"
    assert main(train_args(synthetic_data, cut, "--epochs", "2", "--qat-epochs", "1", "--palette-bits", "4",
                           "--threads", "1")) == 0
    assert main(["--out", str(cut), "--epochs", "3", "--resume"]) == 0
    resumed = torch.load(cut / "tinybeauty_last.pt", weights_only=True)
    assert resumed["epoch"] == first["epoch"] == 3
    assert all(torch.equal(first["model"][k], resumed["model"][k]) for k in first["model"])
    assert all(torch.equal(first["qat_state"][k], resumed["qat_state"][k]) for k in first["qat_state"])


def test_export_rounds_with_the_skip_rescaling_the_phase_trained_with(synthetic_data, tmp_path):
    """A fine-tuned checkpoint carries its skip factors, and the int8 export uses exactly those."""
    import json

    from export.__main__ import main as export_main

    run = tmp_path / "run"
    assert main(train_args(synthetic_data, run, "--epochs", "2", "--qat-epochs", "1", "--threads", "1")) == 0
    checkpoint = torch.load(run / "tinybeauty_best_psnr.pt", weights_only=True)
    assert checkpoint["skip_factors"]
    out = tmp_path / "artifacts"
    assert export_main(["--checkpoint", str(run / "tinybeauty_best_psnr.pt"), "--out", str(out), "--formats", "onnx",
                        "--calibration-images", "4", "--val-images", "4"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["skip_rescale"] == checkpoint["skip_factors"]
