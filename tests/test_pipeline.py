"""The Makefile's file dependencies: a retrained checkpoint re-exports, new artifacts re-benchmark.

`make -n` prints what make would run, so these are dry runs on placeholder files with set
modification times: nothing trains, and nothing depends on how busy the machine is.
"""

import os
import shutil
import subprocess

import pytest
from conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def plan(tmp_path, target: str) -> str:
    """The commands `make TARGET` would run for the placeholder run in tmp_path."""
    variables = [f"OUT={tmp_path / 'run'}", f"CHECKPOINT={tmp_path / 'run' / 'best.pt'}",
                 f"ARTIFACTS={tmp_path / 'artifacts'}", f"BENCH={tmp_path / 'bench'}"]
    result = subprocess.run(["make", "-n", "--no-print-directory", target, *variables], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def place(path, mtime: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("placeholder")
    os.utime(path, (mtime, mtime))


@pytest.fixture
def pipeline(tmp_path):
    """checkpoint (t=2000000000) -> manifest (t+10) -> report (t+20): everything up to date."""
    t = 2_000_000_000  # later than any source file, so only the placeholders decide
    place(tmp_path / "run" / "best.pt", t)
    place(tmp_path / "artifacts" / "manifest.json", t + 10)
    place(tmp_path / "bench" / "report.json", t + 20)
    return tmp_path, t


def test_up_to_date_pipeline_runs_nothing(pipeline):
    tmp_path, _ = pipeline
    assert "-m export" not in plan(tmp_path, "bench") and "-m benchmark" not in plan(tmp_path, "bench")


def test_retrained_checkpoint_is_exported_before_benchmarking(pipeline):
    tmp_path, t = pipeline
    os.utime(tmp_path / "run" / "best.pt", (t + 30, t + 30))  # `make train` wrote a new checkpoint
    commands = plan(tmp_path, "bench")
    assert "-m export" in commands and "-m benchmark" in commands
    assert commands.index("-m export") < commands.index("-m benchmark")
    assert "-m train" not in commands


def test_new_artifacts_are_benchmarked(pipeline):
    tmp_path, t = pipeline
    os.utime(tmp_path / "artifacts" / "manifest.json", (t + 30, t + 30))
    commands = plan(tmp_path, "bench")
    assert "-m benchmark" in commands and "-m export" not in commands


def test_missing_checkpoint_trains_first(tmp_path):
    commands = plan(tmp_path, "bench")
    assert commands.index("-m train") < commands.index("-m export") < commands.index("-m benchmark")
