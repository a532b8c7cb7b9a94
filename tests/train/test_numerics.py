"""Subnormal floats never reach a training step (train/numerics.py)."""

import subprocess
import sys

import pytest
import torch
from conftest import train_args

from models.checkpoint import read_checkpoint, save_checkpoint
from models.tinybeauty import build_model
from train.__main__ import main as train_main
from train.numerics import (
    count_subnormals,
    flush_denormals,
    flushes_here,
    state_census,
    subnormal_mask,
)
from train.numerics import main as numerics_main

SUBNORMAL = torch.tensor([1], dtype=torch.int32).view(torch.float32)  # 1.4e-45, made from its bits


def kill_channel_with_subnormal_moments(path, layer: str = "residual.enc1.0") -> int:
    """Make channel 0 of ``layer`` a dead ReLU channel (its gradients exactly 0) whose Adam first moments
    are subnormal, as ~600 steps of decay leave them; returns how many moments were made subnormal."""
    checkpoint = read_checkpoint(path)
    checkpoint["model"][f"{layer}.bias"][0] = -1e4  # below any input: the ReLU after it never fires
    names = [name for name, _ in build_model(checkpoint["model_config"]).named_parameters()]
    state = checkpoint["optimizer"]["state"]
    for suffix in ("weight", "bias"):
        state[names.index(f"{layer}.{suffix}")]["exp_avg"][0] = SUBNORMAL
    save_checkpoint(path, checkpoint)
    return state_census(checkpoint["model"], checkpoint["optimizer"])["exp_avg"]


def test_training_flushes_subnormal_moments_of_dead_channels(synthetic_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(train_args(synthetic_data, out, "--epochs", "1", "--qat-epochs", "0")) == 0
    crafted = kill_channel_with_subnormal_moments(out / "tinybeauty_last.pt")
    assert crafted > 1
    assert numerics_main(["--checkpoint", str(out / "tinybeauty_last.pt"), "--faces", "2"]) == 0
    assert f"weights 0, exp_avg {crafted}, exp_avg_sq 0" in capsys.readouterr().out
    assert train_main(["--out", str(out), "--resume", "--epochs", "2"]) == 0
    resumed = read_checkpoint(out / "tinybeauty_last.pt")
    assert resumed["epoch"] == 2
    # Without flushing, beta1 = 0.9 keeps a subnormal moment subnormal for ~150 steps; flushed, it reads as 0.
    assert state_census(resumed["model"], resumed["optimizer"]) == {"weights": 0, "exp_avg": 0, "exp_avg_sq": 0}


def test_flush_denormals_covers_the_block_and_restores_the_thread():
    assert not flushes_here()
    with flush_denormals():
        assert flushes_here()
        assert count_subnormals([SUBNORMAL * 1.0]) == 0
    assert not flushes_here() and count_subnormals([SUBNORMAL * 1.0]) == 1


def test_subnormals_are_read_from_bits_so_flushing_cannot_hide_them():
    values = torch.tensor([0.0, 1e-30, -1e-30, 1.0]).index_put((torch.tensor([1]),), SUBNORMAL)
    with flush_denormals():
        assert subnormal_mask(values).tolist() == [False, True, False, False]


ENTRY_FIRST = """
import torch, train.__main__, train.pipeline, train.sweep, train.sweep_runs
from train.numerics import flush_denormals, threads_that_keep_subnormals, PROBE_ELEMENTS
assert torch.get_num_threads() > 1
{late}
with flush_denormals() as everywhere:
    print(everywhere, threads_that_keep_subnormals(PROBE_ELEMENTS))
"""


def run_fresh(late: str) -> str:
    code = ENTRY_FIRST.format(late=late)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def test_flushing_entered_first_reaches_the_intra_op_threads():
    if torch.get_num_threads() < 2:
        pytest.skip("one intra-op thread: nothing to reach")
    # entered before any tensor work (as each entry point's main does): every thread flushes
    assert run_fresh("") == ["True", "0"]
    # entered after a parallel operation started the threads: they keep subnormals, and the context says so
    everywhere, kept = run_fresh("torch.ones(1 << 21) * 2")
    assert everywhere == "False" and int(kept) > 0
