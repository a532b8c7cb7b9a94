"""One file for every look: a network of two looks exported (ONNX here; the other formats have their own
files), checked per look, its catalogue in looks.json, the manifest and the file's metadata; apply puts on
a look or a blend by name; the benchmark scores each look on its own faces; and every choice a file
cannot take is refused naming it and the looks there are."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from apply.__main__ import main as apply_main
from benchmark.__main__ import main as bench_main
from export.__main__ import main as export_main
from export.loading import load_model
from models.checkpoint import load_checkpoint
from tests.conftest import IMAGE_SIZE
from train.looks import LOOKS
from train.sweep_looks import shipped_figures

NAMES = ["berry", "smoky"]


@pytest.fixture(scope="module")
def two_look_set(two_look_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("artifacts")
    assert export_main(["--checkpoint", str(two_look_checkpoint), "--out", str(out), "--formats", "onnx-fp32", "onnx",
                        "--calibration-images", "8", "--val-images", "4"]) == 0
    return out


@pytest.mark.slow
def test_the_onnx_gates_are_rows_moved_in_uint8(two_look_set):
    """export/onnx_format.py: each look gate is expanded to a row of its output's width (onnxruntime's
    channels-last Mul is 5x faster over rows than over spans of C), its Reshape and Expand on uint8 values,
    and its Mul is int8 (both inputs dequantized, the output quantized)."""
    import onnx

    graph = onnx.load(str(two_look_set / "tinybeauty.onnx")).graph
    producers = {name: node for node in graph.node for name in node.output}
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    expands = [node for node in graph.node if node.op_type == "Expand"]
    assert len(expands) == 3  # dec3, dec2, dec1
    widths = []
    for expand in expands:
        assert producers[expand.input[0]].op_type == "Reshape"
        assert producers[producers[expand.input[0]].input[0]].op_type == "QuantizeLinear"  # the gate, in uint8
        shape = onnx.numpy_helper.to_array(next(i for i in graph.initializer if i.name == expand.input[1]))
        widths.append(int(shape[-1]))
        (dequantize,) = readers[expand.output[0]]
        (mul,) = readers[dequantize.output[0]]
        assert dequantize.op_type == "DequantizeLinear" and mul.op_type == "Mul"
        assert all(producers[name].op_type == "DequantizeLinear" for name in mul.input)
        assert [reader.op_type for reader in readers[mul.output[0]]] == ["QuantizeLinear"]
    assert widths == [IMAGE_SIZE // 8, IMAGE_SIZE // 4, IMAGE_SIZE // 2]


@pytest.mark.slow
def test_the_export_checks_each_look_and_a_blend(two_look_set):
    manifest = json.loads((two_look_set / "manifest.json").read_text())
    assert [look["name"] for look in manifest["looks"]] == NAMES
    assert list(manifest["split"]["looks"]) == NAMES
    for record in manifest["artifacts"]:
        assert list(record["looks"]) == NAMES and record["passed"]
        for figures in record["looks"].values():  # each look through its one-hot input, gated on its own
            assert figures["psnr_drop_db"] <= manifest["max_psnr_drop_db"]
        assert record["blend_psnr_vs_pytorch_db"] > 30
        assert any(check.startswith("an even blend of the 2 looks") for check in record["checks_run"])


@pytest.mark.slow
def test_looks_json_is_the_catalogue_an_app_reads(two_look_set):
    catalogue = json.loads((two_look_set / "looks.json").read_text())
    assert catalogue["input"] == "look_weights" and "[1,2]" in catalogue["input_spec"]
    assert [(look["name"], look["index"], look["swatch_hex"]) for look in catalogue["looks"]] == [
        (name, index, LOOKS[name].swatch_hex()) for index, name in enumerate(NAMES)]
    for look in catalogue["looks"]:
        assert 1 <= look["val_faces"] <= 4 and set(look["val_psnr_db_by_format"]) == {"onnx-fp32", "onnx"}
        assert look["val_psnr_db"] != look["val_baseline_db"]


@pytest.mark.slow
def test_the_file_takes_the_look_input_and_names_its_looks(two_look_set, two_look_checkpoint):
    loaded = load_model(two_look_set / "tinybeauty.onnx")
    assert loaded.look_names == NAMES and loaded.image_size == IMAGE_SIZE
    model, _ = load_checkpoint(two_look_checkpoint)
    face = np.random.default_rng(0).random((1, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    outputs = {}
    for weights in ([[1, 0]], [[0, 1]], [[0.5, 0.5]]):
        weights = np.asarray(weights, np.float32)
        outputs[str(weights)] = loaded.runner(face, weights)
        with torch.no_grad():
            expected = model(torch.from_numpy(face), torch.from_numpy(weights)).numpy()
        assert np.abs(outputs[str(weights)] - expected).max() < 0.02  # int8 against float
    assert not np.allclose(outputs["[[1. 0.]]"], outputs["[[0. 1.]]"])  # each look is its own
    assert len(load_model(two_look_checkpoint).looks) == 2  # the checkpoint too


@pytest.mark.slow
def test_apply_puts_on_a_look_or_a_blend_and_refuses_what_the_file_lacks(two_look_set, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    crop = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)).save(crop)
    model = str(two_look_set / "tinybeauty.onnx")
    results = {}
    for choice in ("berry", "1", "berry=0.5,smoky=0.5"):
        out = tmp_path / choice.replace("=", "_").replace(",", "_")
        assert apply_main(["--model", model, str(crop), "--out", str(out), "--aligned", "--look", choice]) == 0
        results[choice] = np.asarray(Image.open(out / "face_makeup.png"), np.float32)
    assert "look: berry 0.5 + smoky 0.5" in caplog.text
    assert np.abs(results["berry"] - results["1"]).mean() > 0  # index 1 is smoky, not berry
    face = np.asarray(Image.open(crop), np.float32).transpose(2, 0, 1)[None] / 255
    blend = load_model(two_look_set / "tinybeauty.onnx").runner(face, np.array([[0.5, 0.5]], np.float32))
    assert np.abs(results["berry=0.5,smoky=0.5"] - blend[0].transpose(1, 2, 0) * 255).mean() < 1.0  # the file's blend
    for choice, message in (("glitter", "has no look 'glitter'; its looks are berry, smoky"),
                            ("berry=0.6,smoky=0.6", "adds up to 1.2, not 1")):
        caplog.clear()
        assert apply_main(["--model", model, str(crop), "--out", str(tmp_path / "refused"), "--aligned",
                           "--look", choice]) == 2
        assert message in caplog.text and not (tmp_path / "refused" / "face_makeup.png").exists()


@pytest.mark.slow
def test_the_benchmark_scores_and_gates_each_look(two_look_set, tmp_path):
    out = tmp_path / "bench"
    assert bench_main(["--artifacts", str(two_look_set), "--out", str(out), "--threads", "1", "--min-runs", "3",
                       "--min-seconds", "0", "--images", "4", "--no-live", "--no-browser", "--min-psnr", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["looks"] == NAMES
    rows = {row["format"]: row for row in report["rows"]}
    for fmt in ("baseline", "pytorch", "onnx", "onnx-fp32"):
        assert list(rows[fmt]["looks"]) == NAMES
        for name in NAMES:
            assert rows[fmt]["looks"][name]["test"]["pairs"] >= 1
    # Each look's figures are its own faces': the looks' baselines differ (smoky changes much more).
    baseline = rows["baseline"]["looks"]
    assert baseline["berry"]["test"]["psnr_db"] != baseline["smoky"]["test"]["psnr_db"]
    assert rows["onnx"]["latency"]["1"]["median_ms"] > 0
    # what a catalogue's sweep reads of it (train/sweep_looks.py): each look's own figure in the shipped .onnx
    for name in NAMES:
        assert shipped_figures(report, name)["shipped_test_psnr_db"] == rows["onnx"]["looks"][name]["test"]["psnr_db"]
    assert "| look |" in (out / "report.md").read_text()
    grid = Image.open(out / "looks.png")  # input, then each look made up and its residual, per face
    assert grid.size == (IMAGE_SIZE * 5, IMAGE_SIZE * 2)
    assert (out / "looks.txt").read_text().startswith("columns: input | berry | berry residual x4 | smoky")


@pytest.mark.slow
def test_the_live_section_runs_a_file_of_several_looks(two_look_set, tmp_path):
    """The benchmark's live clip goes through apply's video path with every look of the file live (the
    file needs its look input: without it onnxruntime refuses the run)."""
    from apply.video import make_tracker
    from benchmark.live import FRAME_SIZE, end_to_end, figure_eight, portrait, write_clip
    from tools.tracking_metrics import paste_along_paths

    model = load_model(two_look_set / "tinybeauty.onnx", threads=1)
    frames = paste_along_paths(portrait(), [figure_eight(4)], canvas_size=FRAME_SIZE, seed=0)
    clip = write_clip(tmp_path / "clip.mp4", frames)
    result = end_to_end(model, clip, tmp_path / "out", make_tracker(model.image_size), runs=1)
    assert result["frames"] == 4
