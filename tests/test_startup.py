"""Every command answers --help and a bad argument at once: none imports torch, a model runtime,
PyAV or the image libraries before its command line is parsed (each imports what its work needs
when the work starts). Behaviour, not timing: the modules loaded are listed, not the seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What takes a second or more to import, or drags in a native runtime: none of it before parsing.
HEAVY = ("torch", "onnxruntime", "onnx", "av", "cv2", "ai_edge_litert", "tensorflow", "executorch", "coremltools",
         "numpy", "PIL", "matplotlib", "skimage")
# A command line each module's parser refuses (exit 2), and the option its message names.
BAD_ARGUMENTS = {
    "apply": (["--model", "m.onnx", "face.png", "--out", "out", "--strength", "9"], "--strength"),
    "web": (["--port", "99999"], "--port"),
    "export": (["--budget-bytes", "0"], "--budget-bytes"),
    "benchmark": (["--min-runs", "0"], "--min-runs"),
    "train": (["--seed", "-1"], "--seed"),
    "train.sweep": (["--seeds", "-1", "--out", "unused"], "--seeds"),  # refused at --seeds, before --out is read
}
# The command run as `python -m MODULE ARGS...`; then the heavy modules it imported, as JSON on stderr's last line.
PROBE = """
import json, runpy, sys
sys.argv = [sys.argv[1], *sys.argv[2:]]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as done:
    code = done.code
else:
    code = 0
print(json.dumps({"code": code, "heavy": sorted(set(map(lambda n: n.split(".")[0], sys.modules)) & set(HEAVY))}),
      file=sys.stderr)
"""


def run_probe(module: str, *args: str) -> tuple[dict, str]:
    """(the exit code and heavy modules imported, what the command wrote to stdout and stderr)."""
    done = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{PROBE}", module, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    *said, last = done.stderr.rstrip("\n").split("\n")
    return json.loads(last), done.stdout + "\n".join(said)


@pytest.mark.parametrize("module", sorted(BAD_ARGUMENTS))
def test_help_imports_nothing_heavy(module):
    outcome, said = run_probe(module, "--help")
    assert outcome == {"code": 0, "heavy": []}
    assert f"python -m {module}" in said


@pytest.mark.parametrize("module", sorted(BAD_ARGUMENTS))
def test_a_bad_argument_is_refused_before_anything_heavy_is_imported(module, tmp_path):
    args, named = BAD_ARGUMENTS[module]
    outcome, said = run_probe(module, *args)
    assert outcome == {"code": 2, "heavy": []}
    assert named in said


def test_apply_refuses_a_clash_before_anything_heavy_is_imported(tmp_path):
    """Results that would replace a file are found from the names alone (apply/outputs.py)."""
    (tmp_path / "face.png").write_bytes(b"not read")
    (tmp_path / "face_makeup.png").write_bytes(b"an earlier result")
    outcome, said = run_probe("apply", "--model", str(tmp_path / "m.onnx"), str(tmp_path / "face.png"),
                              "--out", str(tmp_path))
    assert outcome == {"code": 2, "heavy": []}
    assert "face_makeup.png (a result of" in said and "exists already" in said


def test_the_live_report_puts_start_up_beside_the_steady_rate():
    from benchmark.live import start_up_lines

    started = {"help_s": 0.05, "first_frame_s": 1.47, "clip_s": 3.67, "clip_frames": 90, "clip_frames_per_s": 24.5,
               "runs": 3}
    line = "".join(start_up_lines(started, {"frames_per_s_median": 42.9}))
    assert all(figure in line for figure in ("0.05 s", "1.47 s", "3.67 s", "24.5 frames/s", "42.9", "median of 3"))
    assert start_up_lines(None, {"frames_per_s_median": 42.9}) == []  # a report from before start-up was measured


@pytest.mark.parametrize("module,args,named", [
    ("train", ["--variant", "huge"], "--variant"),  # the choices come from models/variants.py and train/config.py
    ("train", ["--no-such-option"], "--no-such-option"),
    ("train.sweep", ["--out", "{tmp}", "--no-such-option"], "--no-such-option"),
    ("train.sweep", ["--out", "{tmp}", "--", "--pixel-loss", "l3"], "--pixel-loss"),  # train's parser, after --
    ("train.sweep", ["--out", "{tmp}", "--", "--seed=5"], "--seed"),  # an option the sweep sets per seed
])
def test_training_refuses_a_bad_option_before_anything_heavy_is_imported(module, args, named, tmp_path):
    outcome, said = run_probe(module, *(arg.format(tmp=tmp_path / "sweep") for arg in args))
    assert outcome == {"code": 2, "heavy": []}
    assert named in said and "error:" in said
    assert not (tmp_path / "sweep").exists()  # nothing written for a refused command line
