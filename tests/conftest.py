"""Shared fixtures: a tiny synthetic dataset, a tiny trained checkpoint, its exported artifacts.

Everything runs at 64x64 with the `nano` variant so the whole suite stays within minutes on 2 cores.

Lanes: a test that takes the training data or anything trained from it (`TRAINING_FIXTURES`) is
marked `slow`, a test whose module drives Chromium (imports `BrowserPage`) or that takes a page
fixture is marked `browser`, both here at collection, so no test is listed by hand. The fast lane,
`pytest -m "not slow and not browser"` (`make test-fast`), trains nothing and opens no browser. A
test that asks for a training fixture at run time (`request.getfixturevalue`) cannot be seen at
collection: it fails with a message, unless marked `slow`, rather than train inside the fast lane.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "2")

IMAGE_SIZE = 64

# The fixtures that train (or render the data to train on): whoever takes one is in the slow lane.
TRAINING_FIXTURES = frozenset({"synthetic_data", "trained_run", "checkpoint", "artifacts", "two_look_folders",
                               "two_look_checkpoint", "region_checkpoint"})
# The fixtures that serve the page to Chromium or open it there.
BROWSER_FIXTURES = frozenset({"served", "page", "litert_page"})

_running: list[pytest.Item] = []  # the test being set up or run, for the training fixtures' guard


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & TRAINING_FIXTURES:
            item.add_marker(pytest.mark.slow)
        module = getattr(item, "module", None)
        if fixtures & BROWSER_FIXTURES or hasattr(module, "BrowserPage"):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()


def _only_in_the_slow_lane(fixture: str) -> None:
    item = _running[-1] if _running else None
    if item is not None and item.get_closest_marker("slow") is None:
        pytest.fail(f"{item.nodeid} asks for the {fixture!r} fixture at run time, which trains: take it as an "
                    f"argument (tests/conftest.py then marks the test slow) or mark the test slow")


def grown(mask, pixels: int):
    """A boolean mask grown by ``pixels`` in every direction (a square dilation, wrapping at the edges):
    the tests' allowance around a region that a feathered edge may reach."""
    result = mask.copy()
    for dy in range(-pixels, pixels + 1):
        for dx in range(-pixels, pixels + 1):
            result |= np.roll(mask, (dy, dx), axis=(0, 1))
    return result


def maps_for(model, faces, seed: int = 0):
    """Region maps for ``faces`` [N, 3, H, W] where ``model`` reads them beside the face (None where it does not):
    random levels on the 1/255 grid real maps lie on, one channel per name, so a file compared with PyTorch on them
    is compared on every channel it reads."""
    import torch

    names = model.config.region_inputs
    if not names:
        return None
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (faces.shape[0], len(names), *faces.shape[2:]), generator=generator) / 255


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--variant", "nano", "--image-size", str(IMAGE_SIZE),
            "--batch-size", "4", "--lr", "1e-3", "--sample-every", "1", "--val-fraction", "0.25",
            "--test-fraction", "0.1", *extra]


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    _only_in_the_slow_lane("synthetic_data")
    from train.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("data") / "synthetic", n=16, size=IMAGE_SIZE, seed=0, workers=1)


@pytest.fixture(scope="session")
def trained_run(synthetic_data, tmp_path_factory) -> Path:
    """A 2-epoch nano run of the default network (region maps beside the face); returns its output folder."""
    _only_in_the_slow_lane("trained_run")
    from train.__main__ import main

    out = tmp_path_factory.mktemp("run")
    assert main(train_args(synthetic_data, out, "--epochs", "2")) == 0
    return out


@pytest.fixture(scope="session")
def two_look_folders(tmp_path_factory) -> Path:
    """Two looks' pair folders under one parent: berry on 16 faces, smoky on 12 (other counts, same renderer)."""
    _only_in_the_slow_lane("two_look_folders")
    from train.synthetic import write_dataset

    parent = tmp_path_factory.mktemp("looks")
    for look, count in (("berry", 16), ("smoky", 12)):
        write_dataset(parent / look, n=count, size=IMAGE_SIZE, workers=1, look=look)
    return parent


@pytest.fixture(scope="session")
def two_look_checkpoint(two_look_folders, tmp_path_factory) -> Path:
    """A 2-epoch nano network of the looks berry and smoky (one quantization-aware epoch) on the face alone
    (--no-region-inputs): what the several-look exports, and the files without a `regions` input, are checked on."""
    from train.__main__ import main

    out = tmp_path_factory.mktemp("two_look_run")
    args = train_args(two_look_folders / "berry", out, "--epochs", "2", "--qat-epochs", "1", "--threads", "1",
                      "--eye-mask", "labels", "--no-region-inputs")
    at = args.index("--data")
    args[at:at + 2] = [arg for look in ("berry", "smoky") for arg in ("--data", f"{look}={two_look_folders / look}")]
    assert main(args) == 0
    return distinct_looks(out / "tinybeauty_best_psnr.pt")


def distinct_looks(path: Path) -> Path:
    """The checkpoint at ``path`` with its second look's gates closed on every other channel and open on the rest:
    two epochs leave the looks' gates near their common start, closer than int8 rounding tells apart, and the
    tests of the files check that each look is its own."""
    import torch

    from models.checkpoint import save_checkpoint

    payload = torch.load(path, weights_only=True)
    gates = payload["model"]["residual.look_gates.weight"]
    gates[1] = torch.where(torch.arange(gates.shape[1]) % 2 == 0, -0.2, 0.2)
    save_checkpoint(path, payload)
    return path


@pytest.fixture(scope="session")
def checkpoint(trained_run) -> Path:
    return trained_run / "tinybeauty_best_psnr.pt"


@pytest.fixture(scope="session")
def region_checkpoint(checkpoint) -> Path:
    """The default network, which reads the face mesh's region maps beside the face: the name the tests of the maps
    (their exports, apply, the benchmark) take it by."""
    return checkpoint


@pytest.fixture(scope="session")
def artifacts(checkpoint, tmp_path_factory) -> Path:
    """All formats exported from the tiny checkpoint (the real converters, real runtimes)."""
    from export.__main__ import main

    out = tmp_path_factory.mktemp("artifacts")
    assert main(["--checkpoint", str(checkpoint), "--out", str(out), "--calibration-images", "8",
                 "--val-images", "4"]) == 0
    return out
