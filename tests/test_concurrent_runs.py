"""Two runs at once into the same output folder never corrupt it.

Two exports into one --out both succeed, and the folder holds one run's set whole (the last to
finish wins), its manifest true to the files on disk: each run stages its set in a folder of its own.
A training run holds its --out while it writes there: a second one is refused before it touches a file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, train_args

from export.common import fresh_staging_dir
from export.manifest import LOOKS_FILE, MANIFEST, read_manifest
from train.__main__ import main as train_main
from train.sweep import main as sweep_main

SETS = {("onnx", "ptl"): {"tinybeauty.onnx", "tinybeauty.ptl"},
        ("onnx-fp32", "onnx"): {"reference/tinybeauty_fp32.onnx", "tinybeauty.onnx"}}


@pytest.mark.slow
def test_two_exports_into_one_folder_leave_one_whole_set(checkpoint, tmp_path):
    out = tmp_path / "artifacts"
    runs = [subprocess.Popen([sys.executable, "-m", "export", "--checkpoint", str(checkpoint), "--out", str(out),
                              "--formats", *formats, "--calibration-images", "4", "--val-images", "2"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for formats in SETS]
    try:
        logs = [run.communicate(timeout=900)[0] for run in runs]
    finally:
        for run in runs:
            run.kill()  # no run left behind when the test fails; a finished one is not touched
    assert [run.returncode for run in runs] == [0, 0], "\n".join(log[-3000:] for log in logs)
    manifest = read_manifest(out)  # every file listed is there, with the sha256 its export checked
    listed = {record["file"] for record in manifest["artifacts"]}
    assert listed in SETS.values()
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == listed | {MANIFEST, LOOKS_FILE}
    assert not list(tmp_path.glob(".artifacts*"))  # both runs' staging folders consumed by their swaps


def test_an_export_clears_the_staging_of_finished_runs_and_keeps_running_ones(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    running = tmp_path / f".artifacts.staging.{os.getppid()}"  # the process that started this one
    left = [tmp_path / f".artifacts.staging.{finished.pid}", tmp_path / ".artifacts.staging"]  # a failed run's
    for folder in (running, *left):
        folder.mkdir()
        (folder / "tinybeauty.onnx").write_bytes(b"a rejected set")
    staging = fresh_staging_dir(tmp_path / "artifacts")
    assert staging == tmp_path / f".artifacts.staging.{os.getpid()}" and not any(staging.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, staging.name])
    assert (running / "tinybeauty.onnx").read_bytes() == b"a rejected set"


@pytest.mark.slow
def test_a_second_training_run_into_a_folder_in_use_is_refused(synthetic_data, tmp_path, caplog):
    out, epochs = tmp_path / "run", 8
    first = subprocess.Popen([sys.executable, "-m", "train", *train_args(synthetic_data, out, "--epochs", str(epochs))],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while not (out / "config.json").exists() and first.poll() is None:  # the first run has started writing
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second could start: give it more epochs"
        # --overwrite: only the folder being in use can refuse it
        assert train_main(train_args(synthetic_data, out, "--epochs", "1", "--overwrite")) == 2
        assert f"{out} is being written by another run" in caplog.text
        log = first.communicate(timeout=900)[0]
    finally:
        first.kill()  # no run left behind when the test fails; a finished one is not touched
    assert first.returncode == 0, log[-3000:]
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + epochs  # the header, then the first run's rows
    assert torch.load(out / "tinybeauty_last.pt", weights_only=True)["epoch"] == epochs


def test_a_second_sweep_into_a_folder_in_use_is_refused(synthetic_data, tmp_path, caplog):
    out = tmp_path / "sweep"
    recipe = ["--data", str(synthetic_data), "--variant", "nano", "--image-size", "64", "--batch-size", "4",
              "--epochs", "4", "--val-fraction", "0.25", "--test-fraction", "0.1"]
    first = subprocess.Popen([sys.executable, "-m", "train.sweep", "--seeds", "0", "--out", str(out), "--", *recipe],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while not (out / "seed_0" / "config.json").exists() and first.poll() is None:  # its first seed trains
            time.sleep(0.05)
        assert first.poll() is None, "the first sweep ended before the second could start: give it more epochs"
        # --overwrite: only the folder being in use can refuse it
        assert sweep_main(["--seeds", "1", "--out", str(out), "--overwrite", "--", *recipe]) == 2
        assert f"{out} is being written by another run" in caplog.text
        log = first.communicate(timeout=900)[0]
    finally:
        first.kill()  # no run left behind when the test fails; a finished one is not touched
    assert first.returncode == 0, log[-3000:]
    assert [row["seed"] for row in json.loads((out / "sweep.json").read_text())["seeds"]] == [0]
    assert not (out / "seed_1").exists()
