"""Nothing a user gives the tools loses their files or gets a traceback (issue 18).

One test (or one parametrized test) per kind of fault: results that would replace a photo or
each other, an --out that is a file or cannot be written, high-bit-depth images, a manifest
that points outside its folder or is malformed, a model file of another network, out-of-range
flags, a disk that fills while a checkpoint is written (for real: a file-size limit in a
subprocess), a NUL byte in a URL, a checkpoint with NaN weights, Playwright's own Chromium.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, train_args
from PIL import Image

from apply.__main__ import main as apply_main
from benchmark.__main__ import main as bench_main
from export.__main__ import main as export_main
from export.manifest import ManifestError, read_manifest
from models.atomic import sha256_tree
from models.checkpoint import CheckpointError, load_checkpoint
from models.data import open_image, open_photo
from train.__main__ import main as train_main
from web.__main__ import main as web_main

MAIN = {"train": train_main, "export": export_main, "benchmark": bench_main, "apply": apply_main, "web": web_main}


def refused_by_parser(cli: str, argv: list[str], capsys) -> str:
    """Run a CLI that must stop in its parser (exit 2, before any work); returns its stderr."""
    with pytest.raises(SystemExit) as stopped:
        MAIN[cli](argv)
    assert stopped.value.code == 2
    return capsys.readouterr().err


def face_photo(path: Path, colour=(200, 150, 130)) -> Path:
    Image.new("RGB", (64, 64), colour).save(path)
    return path


# 1. apply: results never replace a photo given, nor each other ------------------------------

def test_two_photos_with_one_stem_are_refused_before_any_work(checkpoint, tmp_path, capsys):
    png, jpg = face_photo(tmp_path / "face.png"), tmp_path / "face.jpg"
    Image.new("RGB", (64, 64), (90, 60, 50)).save(jpg)
    out = tmp_path / "out"
    assert apply_main(["--model", str(checkpoint), str(png), str(jpg), "--out", str(out), "--aligned"]) == 2
    err = capsys.readouterr().err
    assert "face.png" in err and "face.jpg" in err and "face_makeup.png" in err
    assert not out.exists() or not any(out.iterdir())  # nothing written at all


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_result_name_that_is_a_photo_given_is_never_written(checkpoint, tmp_path, capsys, overwrite):
    selfie = face_photo(tmp_path / "selfie.png")
    other = face_photo(tmp_path / "selfie_makeup.png", (10, 200, 30))  # the user's own photo
    before = {path: path.read_bytes() for path in (selfie, other)}
    argv = ["--model", str(checkpoint), str(selfie), str(other), "--out", str(tmp_path), "--aligned", *overwrite]
    assert apply_main(argv) == 2
    assert "one of the photos given" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["selfie.png", "selfie_makeup.png"]


def test_earlier_results_are_replaced_only_with_overwrite(checkpoint, tmp_path, capsys):
    photo, out = face_photo(tmp_path / "a.png"), tmp_path / "out"
    argv = ["--model", str(checkpoint), str(photo), "--out", str(out), "--aligned"]
    assert apply_main([*argv, "--strength", "0"]) == 0
    first = (out / "a_makeup.png").read_bytes()
    assert apply_main([*argv, "--strength", "2"]) == 2
    assert "exists already" in capsys.readouterr().err and (out / "a_makeup.png").read_bytes() == first
    assert apply_main([*argv, "--strength", "2", "--overwrite"]) == 0
    assert (out / "a_makeup.png").read_bytes() != first
    assert "--overwrite" in subprocess.run([sys.executable, "-m", "apply", "--help"], cwd=ROOT, capture_output=True,
                                           text=True, timeout=120).stdout


# 2. every CLI's --out: an existing file or a place that cannot be written, refused up front ---

@pytest.fixture
def trained(synthetic_data, checkpoint, artifacts) -> dict[str, Path]:
    """What each CLI reads, taken as arguments so the tests that use it are in the slow lane."""
    return {"data": synthetic_data, "checkpoint": checkpoint, "artifacts": artifacts}


def cli_argv(cli: str, out: str, trained: dict[str, Path], tmp_path) -> list[str]:
    if cli == "train":
        return train_args(trained["data"], out, "--epochs", "1")
    if cli == "export":
        return ["--checkpoint", str(trained["checkpoint"]), "--out", out,
                "--calibration-images", "8", "--val-images", "4"]
    artifacts = trained["artifacts"]
    if cli == "benchmark":
        return ["--artifacts", str(artifacts), "--out", out, "--threads", "1", "--min-runs", "3", "--min-seconds", "0",
                "--images", "4", "--no-browser", "--no-live"]
    if cli == "apply":
        photo = face_photo(tmp_path / "photo.png")
        return ["--model", str(trained["checkpoint"]), str(photo), "--out", out, "--aligned"]
    return ["--artifacts", str(artifacts), "--bundle", out]


@pytest.mark.parametrize("cli", list(MAIN))
def test_out_naming_an_existing_file_is_refused_and_the_file_kept(cli, trained, tmp_path, capsys):
    users_file = tmp_path / "notes.txt"
    users_file.write_text("my only copy")
    err = refused_by_parser(cli, cli_argv(cli, str(users_file), trained, tmp_path), capsys)
    assert "notes.txt is a file, not a folder" in err
    assert users_file.read_text() == "my only copy"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # not moved aside under a hidden name


@pytest.mark.parametrize("cli", list(MAIN))
def test_out_that_cannot_be_written_is_refused(cli, trained, tmp_path, capsys):
    # /proc takes no new files, for root too; a folder without write permission stops everyone else
    places = [Path("/proc/tinybeauty-out")] if Path("/proc/self").is_dir() else []
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        places.append(locked / "out")
    if not places:
        pytest.skip("no unwritable place known on this system")
    for place in places:
        err = refused_by_parser(cli, cli_argv(cli, str(place), trained, tmp_path), capsys)
        assert "cannot write in" in err


def test_export_refuses_a_folder_that_is_not_an_artifact_set(checkpoint, tmp_path, caplog):
    folder = tmp_path / "Pictures"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"my only copy")
    assert export_main(["--checkpoint", str(checkpoint), "--out", str(folder), "--formats", "onnx"]) == 2
    assert "not an artifact set" in caplog.text
    assert (folder / "holiday.jpg").read_bytes() == b"my only copy" and not list(tmp_path.glob(".Pictures.staging*"))


# 3. every bit depth read as 8 bits, not clipped -----------------------------------------------

def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    expected = np.round(ramp / 65535 * 255)
    for image in (open_image(path, "RGB"), open_photo(path)):
        pixels = np.asarray(image, np.float64)
        assert image.mode == "RGB" and np.abs(pixels[..., 0] - expected).max() <= 1
        assert (pixels == 255).mean() < 0.01  # a clip at 255 would make ~99% of it white


# 4. the manifest: every path inside the folder, every entry valid, checked once ----------------

def copied_set(artifacts: Path, tmp_path: Path) -> tuple[Path, dict]:
    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts, copy, symlinks=True)
    return copy, json.loads((copy / "manifest.json").read_text())


def save_manifest(folder: Path, manifest: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "symlink-inside-package"])
def test_manifest_paths_outside_the_folder_are_refused(how, artifacts, tmp_path, caplog):
    copy, manifest = copied_set(artifacts, tmp_path)
    outside = tmp_path / "outside.onnx"
    shutil.copyfile(copy / "tinybeauty.onnx", outside)  # same bytes: its sha256 matches the entry
    entry = next(e for e in manifest["artifacts"] if e["file"] == "tinybeauty.onnx")
    if how == "dotdot":
        entry["file"] = "../outside.onnx"
    elif how == "absolute":
        entry["file"] = str(outside)
    elif how == "symlink":
        (copy / "tinybeauty.onnx").unlink()
        (copy / "tinybeauty.onnx").symlink_to(outside)
    else:
        package = next(e for e in manifest["artifacts"] if e["file"].endswith(".mlpackage"))
        (copy / package["file"] / "extra.bin").symlink_to(outside)
        package["sha256"] = sha256_tree(copy / package["file"])  # a consistent, hostile set
    save_manifest(copy, manifest)
    with pytest.raises(ManifestError, match="points outside"):
        read_manifest(copy)
    assert bench_main(["--artifacts", str(copy), "--out", str(tmp_path / "bench"), "--no-browser"]) == 2
    assert "points outside" in caplog.text and not (tmp_path / "bench" / "report.json").exists()


@pytest.mark.parametrize("damage,message", [
    (lambda e: e.update(format="onnx-fp64"), "unknown format 'onnx-fp64'"),
    (lambda e: e.pop("sha256"), "has no valid sha256"),
    (lambda e: e.pop("format"), "has no valid format"),
])
def test_manifest_entries_with_unknown_format_or_no_sha256_get_a_message(damage, message, artifacts, tmp_path, caplog):
    copy, manifest = copied_set(artifacts, tmp_path)
    damage(manifest["artifacts"][0])
    save_manifest(copy, manifest)
    assert bench_main(["--artifacts", str(copy), "--out", str(tmp_path / "bench"), "--no-browser"]) == 2
    assert message in caplog.text and "manifest.json" in caplog.text


# 5. messages, not tracebacks ------------------------------------------------------------------

def classifier_onnx(path: Path) -> Path:
    """A tiny image classifier (1x3x224x224 -> 1x10): a real ONNX model, just not TinyBeauty."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["features"]),
         helper.make_node("Gemm", ["features", "w"], ["logits"], transB=1)],
        "classifier", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], [weights])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_model_file_of_another_network_is_named_by_apply_and_benchmark(artifacts, tmp_path, caplog):
    classifier = classifier_onnx(tmp_path / "classifier.onnx")
    photo = face_photo(tmp_path / "photo.png")
    assert apply_main(["--model", str(classifier), str(photo), "--out", str(tmp_path / "out"), "--aligned"]) == 2
    assert "classifier.onnx" in caplog.text and "not" in caplog.text and "TinyBeauty model" in caplog.text
    caplog.clear()
    copy, manifest = copied_set(artifacts, tmp_path)
    shutil.copyfile(classifier, copy / "tinybeauty.onnx")
    entry = next(e for e in manifest["artifacts"] if e["file"] == "tinybeauty.onnx")
    entry["sha256"] = sha256_tree(copy / "tinybeauty.onnx")  # consistent: only the network is wrong
    save_manifest(copy, manifest)
    assert bench_main(["--artifacts", str(copy), "--out", str(tmp_path / "bench"), "--no-browser"]) == 2
    assert "tinybeauty.onnx" in caplog.text and "TinyBeauty model" in caplog.text


FLOAT_FLAGS = {"train": ["--lr", "--l1-weight", "--eyeliner-weight", "--plateau-factor", "--val-fraction",
                         "--test-fraction"],
               "export": ["--max-psnr-drop"], "benchmark": ["--min-seconds", "--max-drop", "--min-psnr"],
               "apply": ["--strength"]}
BAD_VALUES = [
    ("train", "--epochs", "0"), ("train", "--batch-size", "-4"), ("train", "--image-size", "0"),
    ("train", "--crop", "0"), ("train", "--lr", "-1e-3"), ("train", "--l1-weight", "-1"),
    ("train", "--eyeliner-weight", "-0.5"), ("train", "--plateau-factor", "1"), ("train", "--plateau-patience", "-1"),
    ("train", "--val-fraction", "1"), ("train", "--test-fraction", "-0.1"), ("train", "--seed", "-1"),
    ("train", "--sample-every", "0"), ("train", "--synthetic-pairs", "0"), ("train", "--threads", "0"),
    ("export", "--budget-bytes", "0"), ("export", "--calibration-images", "0"), ("export", "--val-images", "-1"),
    ("benchmark", "--images", "0"), ("benchmark", "--threads", "0"), ("benchmark", "--min-runs", "0"),
    ("benchmark", "--min-seconds", "-1"),
    ("apply", "--strength", "-0.1"), ("web", "--port", "-1"), ("web", "--port", "65536"),
] + [(cli, flag, value) for cli, flags in FLOAT_FLAGS.items() for flag in flags for value in ("nan", "inf")]


@pytest.mark.parametrize("cli,flag,value", BAD_VALUES)
def test_out_of_range_numbers_stop_in_the_parser(cli, flag, value, tmp_path, capsys):
    # Everything else points at nothing, so that a value the parser lets through fails otherwise
    missing = str(tmp_path / "missing")
    argv = {"train": ["--data", missing], "export": ["--checkpoint", missing], "benchmark": ["--artifacts", missing],
            "apply": ["--model", missing, missing, "--out", str(tmp_path / "out")],
            "web": ["--artifacts", missing, "--bundle", str(tmp_path / "site")]}[cli]
    err = refused_by_parser(cli, [*argv, f"{flag}={value}"], capsys)
    assert f"argument {flag}: must be" in err and "Traceback" not in err


FILE_SIZE_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))  # a write past it fails with EFBIG
"""


def run_with_file_size_limit(limit: int, code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Python in a subprocess where no file may grow past ``limit`` bytes: a real failing write."""
    env = os.environ | {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT)}
    script = FILE_SIZE_LIMIT.format(limit=limit) + code
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_full_disk_while_saving_a_checkpoint_names_it_and_keeps_the_last_one(tmp_path):
    path = tmp_path / "run" / "tinybeauty_last.pt"
    result = run_with_file_size_limit(200_000, f"""
import torch
from models.checkpoint import CheckpointError, save_checkpoint
save_checkpoint({str(path)!r}, {{"epoch": 1, "weights": torch.zeros(1000)}})
try:
    save_checkpoint({str(path)!r}, {{"epoch": 2, "weights": torch.zeros(100_000)}})  # 400 kB: past the limit
except CheckpointError as error:
    assert isinstance(error, OSError)
    print(error)
""", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no room to write" in result.stdout and str(path) in result.stdout and "disk is full" in result.stdout
    assert torch.load(path, weights_only=True)["epoch"] == 1  # what was saved before is kept, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["tinybeauty_last.pt"]  # no torn temp file


def test_a_full_disk_during_training_is_a_message_not_a_traceback(synthetic_data, tmp_path):
    out = tmp_path / "run"
    args = train_args(synthetic_data, out, "--epochs", "1")
    result = run_with_file_size_limit(100_000, f"""
from train.__main__ import main
sys.exit(main({args!r}))
""", tmp_path)
    assert result.returncode == 2, result.stderr
    assert "no room to write" in result.stderr and "tinybeauty_" in result.stderr and "Traceback" not in result.stderr
    assert not list(out.glob(".*.tmp")) and not list(out.glob("*.pt"))  # no torn checkpoint under any name


def test_a_nul_byte_in_a_url_is_answered(artifacts):
    from web.server import Handler

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, artifacts=artifacts, quiet=True))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for url in ("/model/tinybeauty.onnx%00.onnx", "/%00", "/model/%00manifest.json"):
            connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
            connection.request("GET", url)
            assert connection.getresponse().status in (400, 404)
            connection.close()
    finally:
        server.shutdown()
        server.server_close()


# 6. non-finite weights or outputs: refused once, up front, naming the checkpoint ---------------

@pytest.mark.parametrize("poison,message", [("nan", "weights hold NaN or infinity"),
                                            ("huge", "output on a plain face holds NaN or infinity")])
def test_non_finite_checkpoint_is_refused_before_any_converter(poison, message, checkpoint, tmp_path, caplog):
    payload = torch.load(checkpoint, weights_only=True)
    for name, tensor in payload["model"].items():
        if name.endswith("weight"):
            if poison == "nan":
                tensor.view(-1)[0] = float("nan")
                break
            tensor.mul_(1e12)  # finite, but every activation overflows float32
    bad = tmp_path / "diverged.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(bad)
    out = tmp_path / "artifacts"
    assert export_main(["--checkpoint", str(bad), "--out", str(out), "--calibration-images", "8",
                        "--val-images", "4"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "diverged.pt" in errors[0] and message in errors[0]
    # no converter started and no staging folder made
    assert "[1/" not in caplog.text and not out.exists() and not list(tmp_path.glob(".artifacts.staging*"))
    caplog.clear()
    photo = face_photo(tmp_path / "photo.png")
    assert apply_main(["--model", str(bad), str(photo), "--out", str(tmp_path / "made_up"), "--aligned"]) == 2
    assert message in caplog.text and not (tmp_path / "made_up" / "photo_makeup.png").exists()


# 7. Chromium: Playwright's own download, the usual places, $TINYBEAUTY_CHROMIUM ---------------

@pytest.mark.parametrize("layout", ["chromium-1300/chrome-linux64/chrome",
                                    "chromium_headless_shell-1300/chrome-headless-shell-linux64/chrome-headless-shell"])
def test_playwrights_own_chromium_is_found(layout, tmp_path, monkeypatch):
    from tools.browser import find_chromium

    for older in ("chromium-1100/chrome-linux/chrome", layout):
        browser = tmp_path / "ms-playwright" / older
        browser.parent.mkdir(parents=True, exist_ok=True)
        browser.write_text("#!/bin/sh\n")
        browser.chmod(0o755)
    monkeypatch.delenv("TINYBEAUTY_CHROMIUM", raising=False)
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "ms-playwright"))
    assert find_chromium() == str(tmp_path / "ms-playwright" / layout)  # the newest revision first


def test_a_wrong_tinybeauty_chromium_is_said_not_passed_over(tmp_path, monkeypatch):
    from tools.browser import BrowserUnavailable, find_chromium

    monkeypatch.setenv("TINYBEAUTY_CHROMIUM", str(tmp_path / "no-such-chrome"))
    with pytest.raises(BrowserUnavailable, match="TINYBEAUTY_CHROMIUM=.*no-such-chrome"):
        find_chromium()
