"""The benchmark of a model that reads the face's region maps beside it (``--region-inputs``): every row is fed
each face's own maps, drawn from the face mesh on its image as training draws them, and the report says so."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.__main__ import main as bench_main
from models.atomic import sha256_file
from models.checkpoint import checkpoint_split, load_checkpoint
from models.data import faces_as_tensors, load_split
from models.metrics import mean_psnr_db
from train.region_maps import REGION_INPUTS, region_maps, region_tensor

IMAGES = 3


def test_the_benchmark_feeds_a_region_input_model_each_faces_maps(region_checkpoint, tmp_path):
    """A set of no exported files (only the checkpoint's rows): the PyTorch row is the network fed each face's
    own maps, which differs from feeding it empty ones; its latency is measured with maps."""
    artifacts, out = tmp_path / "artifacts", tmp_path / "bench"
    artifacts.mkdir()
    (artifacts / "manifest.json").write_text(json.dumps({
        "checkpoint": str(region_checkpoint), "checkpoint_sha256": sha256_file(region_checkpoint), "artifacts": []}))
    assert bench_main(["--artifacts", str(artifacts), "--out", str(out), "--threads", "1", "--min-runs", "2",
                       "--min-seconds", "0", "--images", str(IMAGES), "--no-live", "--no-browser",
                       "--min-psnr", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["region_inputs"] == list(REGION_INPUTS)
    assert set(report["region_maps"]) == set(report["pairs"]) == {"test", "val"}
    for part, count in report["region_maps"].items():
        assert count["faces"] == report["pairs"][part] and 0 <= count["empty"] <= count["faces"]
    assert "reads the face's region maps beside it (lips, eyes, cheeks)" in (out / "report.md").read_text()
    rows = {row["format"]: row for row in report["rows"]}
    assert rows["pytorch"]["latency"]["1"]["median_ms"] > 0

    model, checkpoint = load_checkpoint(region_checkpoint)
    split = checkpoint_split(checkpoint, region_checkpoint)
    for part in ("test", "val"):
        cache = load_split(split, part, limit=IMAGES)
        source, target = faces_as_tensors(cache)
        maps = region_tensor(region_maps(cache, Path(split["data"])))
        assert (maps.flatten(1).amax(1) == 0).sum() == report["region_maps"][part]["empty"]
        with torch.no_grad():
            own = mean_psnr_db(model(source, regions=maps), target)
            empty = mean_psnr_db(model(source, regions=torch.zeros_like(maps)), target)
        assert rows["pytorch"]["quality"][part]["psnr_db"] == pytest.approx(own, abs=1e-6)
        assert abs(own - empty) > 1e-3, "the maps reach the network"


def test_the_live_clip_feeds_each_frames_maps_from_the_tracked_mesh(region_checkpoint, tmp_path):
    """benchmark/live.py's run of apply's video path: every frame's face gets its maps from the tracked mesh."""
    from skimage import data as skimage_data

    from benchmark.live import end_to_end, write_clip
    from export.loading import load_model
    from faces import FaceTracker

    frames = [np.zeros((720, 1280, 3), np.uint8) for _ in range(3)]
    for index, frame in enumerate(frames):
        frame[100:612, 300 + 8 * index:812 + 8 * index] = skimage_data.astronaut()
    clip = write_clip(tmp_path / "clip.mp4", frames)
    model = load_model(region_checkpoint, threads=1)
    given = []

    def recording(faces, **inputs):
        given.append(inputs.get("regions"))
        return model.runner(faces, **inputs)

    figures = end_to_end(dataclasses.replace(model, runner=recording), clip, tmp_path / "out",
                         FaceTracker(model.image_size), runs=1)
    assert figures["frames"] == 3 and len(given) == 3
    assert all(maps.shape == (1, len(REGION_INPUTS), model.image_size, model.image_size) and maps.max() > 0.9
               for maps in given)
