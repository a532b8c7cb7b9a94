"""Shared fixtures: a tiny synthetic dataset, a tiny trained checkpoint, its exported artifacts.

Everything runs at 64x64 with the `nano` variant so the whole suite stays within minutes on 2 cores.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "2")

IMAGE_SIZE = 64


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--variant", "nano", "--image-size", str(IMAGE_SIZE),
            "--batch-size", "4", "--lr", "1e-3", "--sample-every", "1", "--val-fraction", "0.25",
            "--test-fraction", "0.1", *extra]


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    from train.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("data") / "synthetic", n=16, size=IMAGE_SIZE, seed=0, workers=1)


@pytest.fixture(scope="session")
def trained_run(synthetic_data, tmp_path_factory) -> Path:
    """A 2-epoch nano run; returns its output folder."""
    from train.__main__ import main

    out = tmp_path_factory.mktemp("run")
    assert main(train_args(synthetic_data, out, "--epochs", "2")) == 0
    return out


@pytest.fixture(scope="session")
def checkpoint(trained_run) -> Path:
    return trained_run / "tinybeauty_best_psnr.pt"


@pytest.fixture(scope="session")
def artifacts(checkpoint, tmp_path_factory) -> Path:
    """All formats exported from the tiny checkpoint (the real converters, real runtimes)."""
    from export.__main__ import main

    out = tmp_path_factory.mktemp("artifacts")
    assert main(["--checkpoint", str(checkpoint), "--out", str(out), "--calibration-images", "8",
                 "--val-images", "4"]) == 0
    return out
