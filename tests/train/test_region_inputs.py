"""--region-inputs: the face mesh's region maps beside the face, carried through every augmentation
(train/dataset.py), read by the stem (models/tinybeauty.py) and given wherever the network runs in
training (train/trainer.py); export, apply and the benchmark refuse such a checkpoint."""

import json

import numpy as np
import pytest
import torch
from conftest import train_args
from PIL import Image

from export.__main__ import main as export_main
from models import data as models_data
from models.checkpoint import CheckpointError, load_checkpoint
from models.tinybeauty import TinyBeautyConfig, build_model
from train.__main__ import main, parse_args
from train.dataset import PairDataset, load_pairs
from train.region_maps import REGION_CACHE, REGION_INPUTS, region_maps
from train.synthetic import render_pair, to_uint8


def cache_whose_maps_are_its_faces(n=6, size=32):
    """Random faces whose three region maps are their own colour channels, eye mask the green one: any
    geometry applied to the faces and not identically to the maps shows as a difference."""
    rng = np.random.default_rng(0)
    sources = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    pairs = [models_data.Pair(f"p{i}", None, None) for i in range(n)]
    cache = models_data.PairCache(pairs, [""] * n, sources, sources.copy(), sources[..., 1].copy(), "band")
    cache.region_maps = sources.copy()
    return cache


def items(dataset, epoch):
    dataset.set_epoch(epoch)
    return [dataset[i] for i in range(len(dataset))]


@pytest.mark.parametrize("crop", [None, 16])
@pytest.mark.parametrize("augment", ["none", "photometric", "geometric"])
def test_region_maps_follow_every_crop_flip_and_warp(crop, augment):
    cache = cache_whose_maps_are_its_faces()
    without_maps = cache_whose_maps_are_its_faces()
    without_maps.region_maps = None
    # A colour change moves nothing: the maps keep the uncoloured faces' crop and flip, and their values.
    moved = "none" if augment == "photometric" else augment
    flips = 0
    for epoch in range(3):
        got = items(PairDataset(cache, train=True, crop=crop, seed=5, augment=augment), epoch)
        faces = items(PairDataset(cache, train=True, crop=crop, seed=5, augment=moved), epoch)
        plain = items(PairDataset(without_maps, train=True, crop=crop, seed=5, augment=augment), epoch)
        for (_, _, masks), (moved_face, _, _), (_, _, eye_mask) in zip(got, faces, plain, strict=True):
            assert masks.shape[0] == 4
            assert torch.equal(masks[1:], moved_face)  # the maps took exactly the face's geometry
            assert torch.equal(masks[:1], eye_mask)  # the eye mask is what it is without maps
        unmoved = [torch.from_numpy(face[:crop, :crop].copy()).permute(2, 0, 1).float() / 255 for face in cache.sources]
        flips += sum(not torch.equal(item[2][1:], face) for item, face in zip(got, unmoved, strict=True))
    assert flips > 0  # some items were flipped, cropped elsewhere or warped: the check above saw geometry


def test_validation_items_carry_the_whole_maps():
    cache = cache_whose_maps_are_its_faces()
    source, _, masks = PairDataset(cache)[2]
    assert torch.equal(masks[1:], source)


def test_region_maps_lie_on_the_lips_and_eyes_and_are_empty_without_a_face(tmp_path):
    """On rendered faces with exact label maps the mesh's lip and eye maps cover the labelled lips and eyes;
    an image without a face gets empty maps; the shapes are cached in the data folder."""
    for folder in ("source", "target"):
        (tmp_path / folder).mkdir()
    labels = []
    for i in range(2):
        source, target, label_map = render_pair(i, seed=0, size=256)
        Image.fromarray(to_uint8(source)).save(tmp_path / "source" / f"f{i}.png")
        Image.fromarray(to_uint8(target)).save(tmp_path / "target" / f"f{i}.png")
        labels.append(label_map)
    blank = np.full((256, 256, 3), 128, np.uint8)
    Image.fromarray(blank).save(tmp_path / "source" / "blank.png")
    Image.fromarray(blank).save(tmp_path / "target" / "blank.png")
    cache = load_pairs(tmp_path, 256, eye_mask="band")
    maps = region_maps(cache, tmp_path)
    assert maps.shape == (3, 256, 256, len(REGION_INPUTS)) and REGION_INPUTS == ("lips", "eyes", "cheeks")
    assert (tmp_path / REGION_CACHE).is_file()
    for index, name in enumerate(cache.names):
        if name == "blank":
            assert not maps[index].any()
            continue
        label_map = labels[int(name[1:])]
        for channel, wanted in ((0, models_data.LIP_LABELS), (1, models_data.EYE_LABELS)):
            truth, found = np.isin(label_map, wanted), maps[index][..., channel] > 127
            assert found[truth].mean() > 0.9  # the labelled part lies inside its map
            centre = lambda mask: np.argwhere(mask).mean(0)  # noqa: E731
            assert np.abs(centre(found) - centre(truth)).max() < 0.05 * 256  # about it (the eyes' reach the lids)
            assert found.mean() < 0.1  # not the whole face
    assert np.array_equal(region_maps(cache, tmp_path), maps)  # read back from the cache


def test_the_stem_reads_the_maps_and_a_network_without_them_is_unchanged():
    plain = TinyBeautyConfig()
    assert "region_inputs" not in plain.to_dict()  # a plain model_config is what it always was
    config = TinyBeautyConfig(region_inputs=REGION_INPUTS)
    assert TinyBeautyConfig.from_dict(config.to_dict()) == config
    torch.manual_seed(0)
    model = build_model(config).eval()
    assert model.residual.stem[0].in_channels == 3 + len(REGION_INPUTS)
    face = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        here = model(face, regions=torch.zeros(2, 3, 32, 32), clamp=False)
        there = model(face, regions=torch.ones(2, 3, 32, 32), clamp=False)
    assert here.shape == face.shape and not torch.equal(here, there)
    with pytest.raises(ValueError, match="3 region maps .*--region-inputs"):
        model(face)
    with pytest.raises(ValueError, match="face alone"):
        build_model(plain)(face, regions=torch.zeros(2, 3, 32, 32))


def test_the_option_takes_one_look_without_quantization_aware_fine_tuning():
    config, _ = parse_args(["--region-inputs", "--qat-epochs", "0"])
    assert config.region_inputs and config.record()["region_inputs"] is True
    assert "region_inputs" not in parse_args([])[0].record()
    with pytest.raises(SystemExit):
        parse_args(["--region-inputs", "--epochs", "24"])  # two epochs of quantization-aware fine-tuning


def test_a_region_input_run_trains_resumes_scores_and_exports_with_its_maps(synthetic_data, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(synthetic_data, out, "--epochs", "1", "--qat-epochs", "0", "--threads", "1",
                           "--region-inputs")) == 0
    assert main(["--out", str(out), "--epochs", "2", "--resume"]) == 0  # the maps are placed again on resume
    model, checkpoint = load_checkpoint(out / "tinybeauty_best_psnr.pt", feeds_regions=True)
    assert checkpoint["model_config"]["region_inputs"] == list(REGION_INPUTS) and checkpoint["epoch"] >= 1
    assert checkpoint["train_config"]["region_inputs"] is True
    held_out = json.loads((out / "held_out.json").read_text())
    assert np.isfinite(held_out["test_psnr_db"]) and (out / "held_out_test.png").is_file()
    assert (synthetic_data / REGION_CACHE).is_file()
    with pytest.raises(CheckpointError, match="--region-inputs"):  # a caller that does not draw the maps
        load_checkpoint(out / "tinybeauty_best_psnr.pt")
    assert export_main(["--checkpoint", str(out / "tinybeauty_best_psnr.pt"), "--out", str(tmp_path / "files"),
                        "--formats", "onnx", "--calibration-images", "4", "--val-images", "2"]) == 0  # draws them
