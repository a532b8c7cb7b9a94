"""--resume of a checkpoint that does not fit this run: refused with a message naming
tinybeauty_last.pt and what differs, never a traceback, and the checkpoint left as it was."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import train_args

from train.__main__ import main

LAST = "tinybeauty_last.pt"


def resume_refused(run, caplog, *flags: str) -> str:
    """Resume ``run`` expecting a refusal; returns the logged message."""
    before = (run / LAST).read_bytes()
    caplog.clear()
    assert main(["--out", str(run), "--resume", *flags]) == 2
    assert (run / LAST).read_bytes() == before
    assert str(run / LAST) in caplog.text
    return caplog.text


def edited_copy(trained_run, tmp_path, edit) -> object:
    """A copy of the trained run whose last checkpoint ``edit`` changed."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    payload = torch.load(run / LAST, weights_only=True)
    edit(payload)
    torch.save(payload, run / LAST)
    return run


@pytest.mark.parametrize(("edit", "says"), [
    # the run trained nano's widths (8, 16, 24); a config of another width does not fit its weights
    (lambda p: p["model_config"].update(widths=[8, 16, 32]), ["of another shape", "in the checkpoint, 32x"]),
    (lambda p: p["model_config"].update(depth=4), ["cannot build", "unknown model_config keys ['depth']"]),
    (lambda p: p.update(phase="head"), ["training phase 'head'", "does not have"]),
], ids=["other-width", "unknown-key", "unknown-phase"])
def test_resume_refuses_a_checkpoint_of_other_model_options(trained_run, tmp_path, caplog, edit, says):
    message = resume_refused(edited_copy(trained_run, tmp_path, edit), caplog, "--epochs", "3")
    assert all(part in message for part in says), message
    assert "Traceback" not in message


def test_resume_refuses_to_go_back_to_an_earlier_phase(synthetic_data, tmp_path, caplog):
    """A run whose last epoch fine-tuned, resumed with more epochs than its --qat-epochs cover:
    the next epoch would be float training again, which the fine-tuned weights cannot go back to."""
    run = tmp_path / "run"
    assert main(train_args(synthetic_data, run, "--epochs", "2", "--qat-epochs", "1")) == 0
    message = resume_refused(run, caplog, "--epochs", "5")
    assert "written in the qat phase (epoch 2)" in message and "float epochs 1-4, qat epoch 5" in message
    assert main(["--out", str(run), "--resume", "--epochs", "3"]) == 0  # epoch 3 fine-tunes on
