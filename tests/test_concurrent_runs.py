"""Two runs at once into the same output folder never corrupt it.

Two exports into one --out both succeed, and the folder holds one run's set whole (the last to
finish wins), its manifest true to the files on disk: each run stages its set in a folder of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from export.common import fresh_staging_dir
from export.manifest import MANIFEST, read_manifest

SETS = {("onnx", "ptl"): {"tinybeauty.onnx", "tinybeauty.ptl"},
        ("onnx-fp32", "onnx"): {"reference/tinybeauty_fp32.onnx", "tinybeauty.onnx"}}


@pytest.mark.slow
def test_two_exports_into_one_folder_leave_one_whole_set(checkpoint, tmp_path):
    out = tmp_path / "artifacts"
    runs = [subprocess.Popen([sys.executable, "-m", "export", "--checkpoint", str(checkpoint), "--out", str(out),
                              "--formats", *formats, "--calibration-images", "4", "--val-images", "2"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for formats in SETS]
    logs = [run.communicate(timeout=900)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(log[-3000:] for log in logs)
    manifest = read_manifest(out)  # every file listed is there, with the sha256 its export checked
    listed = {record["file"] for record in manifest["artifacts"]}
    assert listed in SETS.values()
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == listed | {MANIFEST}
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
