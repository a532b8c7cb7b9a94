import json
import math
import os
import shutil

import pytest
import torch
from PIL import Image

from benchmark.__main__ import main as bench_main
from export.formats import FORMATS
from export.runtime import RuntimeUnavailable


def bench_args(artifacts, out, *extra, browser=False):
    return ["--artifacts", str(artifacts), "--out", str(out), "--threads", "1", "--min-runs", "3",
            "--min-seconds", "0", "--images", "4", "--no-live", *extra, *([] if browser else ["--no-browser"])]


def _browser_available() -> bool:
    from tools.browser import BrowserUnavailable, find_chromium, playwright
    from web.server import SetupError, check_runtime_installed

    try:
        find_chromium(), playwright(), check_runtime_installed()
    except (BrowserUnavailable, SetupError):
        assert os.environ.get("TINYBEAUTY_REQUIRE_BROWSER") != "1", "TINYBEAUTY_REQUIRE_BROWSER=1 but no browser"
        return False
    return True


def _unavailable(fmt) -> bool:
    try:
        fmt.load("/nonexistent")
    except RuntimeUnavailable:
        return True
    except Exception:  # any other error means the runtime exists here
        return False
    return False


@pytest.fixture(scope="module")
def report(artifacts, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert bench_main(bench_args(artifacts, out, "--min-psnr", "0", browser=True)) == 0
    return out


def test_report_has_every_figure(report, artifacts):
    data = json.loads((report / "report.json").read_text())
    rows = {row["format"]: row for row in data["rows"]}
    assert set(rows) == {"baseline", "pytorch", "browser", "browser-tflite"} | {f.name for f in FORMATS}
    # The page runs the very files the onnx and tflite rows run: the same numbers (LiteRT.js's XNNPACK in
    # wasm rounds a few int8 requantizations differently from the native build: within 0.05 dB).
    for page_row, python_row, runtime, tolerance in (("browser", "onnx", "onnxruntime-web 1.30.0", 0.01),
                                                     ("browser-tflite", "tflite", "LiteRT.js 2.5.3", 0.05)):
        browser = rows.pop(page_row)
        if not _browser_available():
            assert browser["quality"] == {} and any("not run" in note for note in browser["notes"])
            continue
        for part in ("test", "val"):
            in_page, in_python = browser["quality"][part], rows[python_row]["quality"][part]
            if data["region_inputs"]:  # the default network: the page draws each face's maps from its own mesh run
                # (onnxruntime-web or LiteRT.js), Python from its own: the soft edges differ in their last bits, which
                # moves an output level here and there, far below what a person sees
                assert in_page["psnr_vs_pytorch_db"] > 50, page_row
            else:
                assert abs(in_page["psnr_vs_pytorch_db"] - in_python["psnr_vs_pytorch_db"]) < 10 * tolerance, page_row
            assert abs(in_page["psnr_db"] - in_python["psnr_db"]) < tolerance, page_row
        assert browser["latency"]["1"]["median_ms"] > 0 and browser["latency"]["1"]["runs"] >= 3
        assert "Chromium" in browser["runtime"] and runtime in browser["runtime"]
    assert data["headline_split"] == "test" and set(data["pairs"]) == {"test", "val"}
    for name, row in rows.items():
        for part in ("test", "val"):
            scored = row["quality"][part]
            assert math.isfinite(scored["psnr_db"]) and math.isfinite(scored["psnr_pooled_db"])
            assert 0 < scored["ssim"] <= 1
            if name != "baseline":
                assert math.isfinite(scored["psnr_vs_pytorch_db"])
    for fmt in FORMATS:
        row = rows[fmt.name]
        if _unavailable(fmt):
            assert row["latency"] == {} and row.get("stand_in") and any("not run" in n for n in row["notes"])
            continue
        figures = row["latency"]["1"]
        assert figures["median_ms"] > 0 and figures["p90_ms"] >= figures["median_ms"] and figures["runs"] >= 3
        assert 0 < figures["share_of_fp32_peak"] < 5
        if fmt.name != "onnx-fp32":  # the fp32 reference ONNX matches PyTorch far better than any int8 file
            fp32_parity = rows["onnx-fp32"]["quality"]["test"]["psnr_vs_pytorch_db"]
            assert fp32_parity > row["quality"]["test"]["psnr_vs_pytorch_db"] + 10
    assert data["macs"] > 0 and data["machine"]["peak_fp32_gflops"]["1"] > 0
    table = (report / "report.md").read_text()
    assert "PSNR test (mean / pooled)" in table and "held-out test" in table
    for picture in ("latency_size.png", "samples.png"):
        assert Image.open(report / picture).size[0] > 100


def test_headline_is_the_mean_of_per_image_psnr(report, checkpoint):
    from models.checkpoint import checkpoint_split, load_checkpoint
    from models.data import faces_as_tensors, load_split
    from models.metrics import mean_psnr_db, psnr_db

    faces = torch.rand(3, 3, 8, 8)
    noisy = faces.clone()
    noisy[0] += 0.2  # one bad image pulls the pooled figure down more than the mean
    assert mean_psnr_db(noisy, faces) > psnr_db(noisy, faces)
    # The report's no-makeup row, recomputed from the recorded test faces it scored (--images 4).
    _, payload = load_checkpoint(checkpoint)
    source, target = faces_as_tensors(load_split(checkpoint_split(payload, checkpoint), "test", limit=4))
    baseline = next(r for r in json.loads((report / "report.json").read_text())["rows"] if r["format"] == "baseline")
    scored = baseline["quality"]["test"]
    assert scored["pairs"] == len(target)
    assert scored["psnr_db"] == pytest.approx(mean_psnr_db(source, target), abs=1e-6)
    assert scored["psnr_pooled_db"] == pytest.approx(psnr_db(source, target), abs=1e-6)


def test_altered_artifact_is_refused(artifacts, tmp_path, caplog):
    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts, copy)
    target = copy / "tinybeauty.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped
    target.write_bytes(bytes(data))
    assert bench_main(bench_args(copy, tmp_path / "bench")) == 2
    assert "tinybeauty.onnx" in caplog.text and "re-export" in caplog.text
    assert not (tmp_path / "bench" / "report.json").exists()


def test_artifacts_of_another_checkpoint_are_refused(artifacts, tmp_path, caplog):
    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    retrained = tmp_path / "retrained.pt"  # the same path, retrained since the export
    payload = torch.load(manifest["checkpoint"], weights_only=True)
    payload["epoch"] += 1
    torch.save(payload, retrained)
    manifest["checkpoint"] = str(retrained)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert bench_main(bench_args(copy, tmp_path / "bench")) == 2
    assert "not the checkpoint these artifacts were exported from" in caplog.text and "re-export" in caplog.text


def test_gate_fails_above_measured_value(artifacts, report, tmp_path, caplog):
    rows = json.loads((report / "report.json").read_text())["rows"]
    best = max(r["quality"]["test"]["psnr_db"] for r in rows if "test" in r["quality"])
    assert bench_main(bench_args(artifacts, tmp_path, "--min-psnr", f"{best + 1:.2f}")) == 1
    assert "under the" in caplog.text
    assert json.loads((tmp_path / "report.json").read_text())["gates"]["failures"]


def test_missing_manifest_is_a_clear_error(tmp_path, caplog):
    assert bench_main(["--artifacts", str(tmp_path), "--out", str(tmp_path / "b")]) == 2
    assert "make export" in caplog.text


def test_format_without_runtime_or_stand_in_is_reported_not_crashed(artifacts, tmp_path, monkeypatch):
    import dataclasses

    from export.formats import BY_NAME

    def nowhere(path, threads=None):
        raise RuntimeUnavailable("no runtime for this format on this machine")

    monkeypatch.setitem(BY_NAME, "pte", dataclasses.replace(BY_NAME["pte"], load=nowhere, stand_in=None))
    assert bench_main(bench_args(artifacts, tmp_path, "--min-psnr", "0")) == 0
    row = next(r for r in json.loads((tmp_path / "report.json").read_text())["rows"] if r["format"] == "pte")
    assert row["quality"] == {} and row["latency"] == {} and "quality not measured" in "; ".join(row["notes"])
    assert "not measured" in (tmp_path / "report.md").read_text()


def test_latency_runs_for_the_promised_time_and_cores_respect_affinity():
    import os

    from benchmark.latency import available_cores, measure_latency

    figures = measure_latency(lambda: None, warmup=1, min_runs=3, min_seconds=0.05)
    assert figures["runs"] > 300  # no cap cuts the promised minimum time short
    assert 1 <= available_cores() <= len(os.sched_getaffinity(0))


def test_camera_plot_is_drawn_from_the_row_that_measured_it(tmp_path):
    """bench/camera.png: the page's own ms per stage for each camera rate; none without camera figures."""
    from benchmark.report import CAMERA_STAGES, plot_camera

    def camera(fps, made_up):
        return {"size": "1280x720", "camera_fps": fps, "median_fps": made_up, "runtime": "LiteRT.js, 2 thread(s)",
                "median_run_ms": dict.fromkeys(CAMERA_STAGES, 3.0) | {"model": 9.0}, "median_run_p90_main_ms": 27.0}

    measured = {"rows": [{"format": "browser", "camera": None},
                         {"format": "browser-tflite", "camera": [camera(30, 29.9), camera(60, 38.0)]}]}
    path = plot_camera(measured, tmp_path / "camera.png")
    assert path == tmp_path / "camera.png" and Image.open(path).size[0] > 100
    assert plot_camera({"rows": [{"format": "browser", "camera": None}]}, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
