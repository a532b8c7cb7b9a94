"""The CPU preset is a time budget: one look trains 120 epochs, a catalogue of looks shares 40 epochs' worth out
between its looks (an epoch holds every look's pairs) in batches of the one-look batch times the square root of its
looks, and anything given on the command line, or another preset, is left as given."""

import pytest

from train.__main__ import parse_args


@pytest.mark.parametrize(("argv", "epochs", "qat_epochs", "batch_size"), [
    ([], 120, 10, 16),
    (["--looks", "berry"], 120, 10, 16),
    (["--looks", "berry,smoky"], 20, 2, 23),
    (["--looks", "berry,natural,smoky"], 14, 1, 28),
    (["--looks", "berry,natural,classic,smoky"], 10, 1, 32),
    (["--looks", "berry,natural,classic,smoky", "--epochs", "12"], 12, 1, 32),
    (["--looks", "berry,natural,classic,smoky", "--batch-size", "16"], 10, 1, 16),
    (["--looks", "berry,natural,classic,smoky", "--preset", "paper"], 50, 4, 32),
    (["--looks", "berry,natural", "--preset", "paper"], 50, 4, 32),
])
def test_the_cpu_preset_shares_its_epochs_between_the_looks(argv, epochs, qat_epochs, batch_size, tmp_path):
    config, _ = parse_args([*argv, "--out", str(tmp_path / "run")])
    assert (config.epochs, config.qat_epochs, config.batch_size) == (epochs, qat_epochs, batch_size)
