"""--region-inputs: the face mesh's region maps beside the face, carried through every augmentation
(train/dataset.py), read by the stem (models/tinybeauty.py) and given wherever the network runs in
training (train/trainer.py): the quantization-aware phase (train/qat.py), several looks, --add-look and
the sweep; export, apply and the benchmark refuse such a checkpoint."""

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IMAGE_SIZE, train_args
from PIL import Image

from export.__main__ import main as export_main
from models import data as models_data
from models.checkpoint import CheckpointError, load_checkpoint
from models.data import faces_as_tensors, load_split
from models.int8 import trained_activation_ranges
from models.tinybeauty import VARIANTS, TinyBeautyConfig, build_model, one_hot_looks
from train.__main__ import main, parse_args
from train.config import TrainConfig
from train.dataset import PairDataset, load_pairs
from train.pipeline import resumed_config
from train.qat import QuantAware
from train.region_maps import REGION_CACHE, REGION_INPUTS, region_maps, region_tensor
from train.sweep import main as sweep_main
from train.synthetic import render_pair, to_uint8, write_dataset


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
    with pytest.raises(ValueError, match="3 region maps .*region inputs"):
        model(face)
    with pytest.raises(ValueError, match="face alone"):
        build_model(plain)(face, regions=torch.zeros(2, 3, 32, 32))


def test_the_maps_are_the_default_and_the_option_turns_them_off_with_every_look_count_and_fine_tuning():
    config, given = parse_args(["--region-inputs", "--epochs", "24", "--looks", "berry,smoky"])
    assert config.region_inputs and config.record()["region_inputs"] is True and "region_inputs" in given
    assert config.qat_epochs == 2 and config.looks == ["berry", "smoky"]  # no longer refused together
    assert parse_args([])[0].region_inputs and parse_args([])[0].record()["region_inputs"] is True
    off, given = parse_args(["--no-region-inputs"])
    assert off.region_inputs is False and "region_inputs" in given and "region_inputs" not in off.record()


def test_a_resumed_run_keeps_its_recorded_input_whatever_the_default():
    """A record without region_inputs is a run of the face alone: resumed so even where the default is on."""
    on_by_default = TrainConfig(region_inputs=True, out="elsewhere")
    assert resumed_config(on_by_default, set(), {"epochs": 3}, Path("last.pt")).region_inputs is False
    assert resumed_config(TrainConfig(), set(), {"region_inputs": True}, Path("last.pt")).region_inputs is True
    with pytest.raises(CheckpointError, match="--region-inputs"):
        resumed_config(on_by_default, {"region_inputs"}, {"epochs": 3}, Path("last.pt"))


def test_the_fine_tuning_rounds_the_face_and_maps_as_one_int8_input():
    """The stem reads face and maps on one 8-bit grid over [0, 1]; the maps change the rounded output; the plain
    network handed to the export carries no rounding hook."""
    torch.manual_seed(0)
    model = build_model(replace(VARIANTS["nano"], region_inputs=REGION_INPUTS))
    faces, maps = torch.rand(4, 3, 32, 32), (torch.rand(4, 3, 32, 32) > 0.7).float() * torch.rand(4, 3, 32, 32)
    wrapper = QuantAware(model, palette_bits=0, calibration=faces, calibration_regions=maps).eval()
    seen = []
    hook = model.residual.stem[0].register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    with torch.no_grad():
        with_maps = wrapper(faces, regions=maps)
        without_maps = wrapper(faces, regions=torch.zeros_like(maps))
    hook.remove()
    stem_input = seen[0]
    assert stem_input.shape[1] == 6
    assert torch.allclose(stem_input * 255, (stem_input * 255).round(), atol=1e-3)  # one scale: steps of 1/255
    assert not torch.allclose(stem_input[:, 3:], maps)  # the maps were rounded, not passed as they are
    assert (stem_input[:, 3:] - maps).abs().max() <= 0.5 / 255 + 1e-6
    assert not torch.equal(with_maps, without_maps)
    plain = wrapper.exported_model()
    assert not plain.residual.stem._forward_pre_hooks and not plain.residual.stem._forward_hooks
    with pytest.raises(ValueError, match="region maps"):
        wrapper(faces)


def test_a_region_input_run_fine_tunes_quantization_aware(synthetic_data, tmp_path):
    """A tiny run with one quantization-aware epoch trains, records its activation ranges for the export, and its
    rounded forward reads the maps."""
    out = tmp_path / "run"
    assert main(train_args(synthetic_data, out, "--epochs", "2", "--qat-epochs", "1", "--threads", "1",
                           "--region-inputs")) == 0
    checkpoint = torch.load(out / "tinybeauty_best_psnr.pt", weights_only=True)
    assert checkpoint["phase"] == "qat" and checkpoint["model_config"]["region_inputs"] == list(REGION_INPUTS)
    ranges = trained_activation_ranges(checkpoint)
    assert ranges is not None and all(high > 0 for _, high in ranges.values())
    model, _ = load_checkpoint(out / "tinybeauty_best_psnr.pt")
    cache = load_split(checkpoint["split"], "val")
    faces = faces_as_tensors(cache)[0]
    maps = region_tensor(region_maps(cache, synthetic_data))
    assert maps.amax() > 0.9  # the mesh found faces: the maps hold regions
    wrapper = QuantAware(model, 0, faces, checkpoint["skip_factors"], calibration_regions=maps)
    wrapper.load_state_dict(checkpoint["qat_state"], strict=False)  # the ranges it trained (no palettes here)
    assert torch.equal(wrapper.ranges, checkpoint["qat_state"]["ranges"])
    with torch.no_grad():
        wrapper.eval()
        assert not torch.equal(wrapper(faces, regions=maps), wrapper(faces, regions=torch.zeros_like(maps)))
    held_out = json.loads((out / "held_out.json").read_text())
    assert np.isfinite(held_out["test_psnr_db"])
    assert main(["--out", str(out), "--epochs", "3", "--resume"]) == 0  # resumed inside the phase: maps again
    assert torch.load(out / "tinybeauty_last.pt", weights_only=True)["epoch"] == 3


def named_looks(folders: dict, out, *extra) -> list[str]:
    args = train_args(next(iter(folders.values())), out, "--threads", "1", "--eye-mask", "labels", *extra)
    at = args.index("--data")
    named = [arg for name, folder in folders.items() for arg in ("--data", f"{name}={folder}")]
    return args[:at] + named + args[at + 2:]


def test_several_looks_and_an_added_look_read_the_maps(two_look_folders, tmp_path, caplog):
    """--data NAME=DIR twice with --region-inputs (one quantization-aware epoch): each look's maps placed and
    cached in its own folder, each look scored with them; then --add-look from that checkpoint: the new look's
    pairs get maps too and the earlier looks' outputs stay bit-identical."""
    folders = {look: two_look_folders / look for look in ("berry", "smoky")}
    looks_run = tmp_path / "looks"
    assert main(named_looks(folders, looks_run, "--epochs", "2", "--qat-epochs", "1", "--region-inputs")) == 0
    source_path = looks_run / "tinybeauty_best_psnr.pt"
    source, checkpoint = load_checkpoint(source_path)
    assert source.config.looks == ("berry", "smoky") and source.config.region_inputs == REGION_INPUTS
    assert checkpoint["phase"] == "qat"
    assert all((folder / REGION_CACHE).is_file() for folder in folders.values())
    held_out = json.loads((looks_run / "held_out.json").read_text())
    assert all(np.isfinite(held_out["looks"][look]["val_psnr_db"]) for look in folders)

    classic = tmp_path / "classic"
    write_dataset(classic, n=12, size=IMAGE_SIZE, workers=1, look="classic")
    added_run = tmp_path / "added"
    add = [*named_looks({"classic": classic}, added_run, "--epochs", "1", "--add-look", "classic", "--from",
                        str(source_path))]
    for option in ("--variant", "--image-size"):
        del add[add.index(option):add.index(option) + 2]
    with caplog.at_level(logging.ERROR):
        assert main([*add, "--no-region-inputs"]) == 2  # the network reads maps: it cannot be told otherwise
    assert "--no-region-inputs (its network reads the region maps" in caplog.text
    assert main(add) == 0
    assert (classic / REGION_CACHE).is_file()
    added, added_checkpoint = load_checkpoint(added_run / "tinybeauty_best_psnr.pt")
    assert added.config.region_inputs == REGION_INPUTS and added.config.looks == ("berry", "smoky", "classic")
    assert added_checkpoint["train_config"]["region_inputs"] is True
    cache = load_split(checkpoint["split"]["looks"]["berry"], "val")
    faces, maps = faces_as_tensors(cache)[0], region_tensor(region_maps(cache, folders["berry"]))
    count = len(faces)
    with torch.no_grad():
        for index in range(2):
            before = source(faces, one_hot_looks(torch.full((count,), index), source.config), regions=maps)
            after = added(faces, one_hot_looks(torch.full((count,), index), added.config), regions=maps)
            assert torch.equal(before, after)
        new_look = added(faces, one_hot_looks(torch.full((count,), 2), added.config), regions=maps)
        empty = added(faces, one_hot_looks(torch.full((count,), 2), added.config), regions=torch.zeros_like(maps))
    assert not torch.equal(new_look, empty)


def test_the_sweep_trains_and_scores_region_input_runs(synthetic_data, tmp_path):
    out = tmp_path / "sweep"
    recipe = train_args(synthetic_data, tmp_path / "unused", "--epochs", "1", "--qat-epochs", "0", "--region-inputs")
    del recipe[recipe.index("--out"):recipe.index("--out") + 2]
    assert sweep_main(["--seeds", "0", "--out", str(out), "--threads", "1", "--test-data", str(synthetic_data),
                       "--", *recipe]) == 0
    row = json.loads((out / "sweep.json").read_text())["seeds"][0]
    assert np.isfinite(row["test_psnr_db"]) and np.isfinite(row["test_data_psnr_db"])
    assert torch.load(out / "seed_0" / "tinybeauty_best_psnr.pt", weights_only=True)["model_config"]["region_inputs"]


def test_a_region_input_run_trains_resumes_scores_and_exports_with_its_maps(synthetic_data, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(synthetic_data, out, "--epochs", "1", "--qat-epochs", "0", "--threads", "1")) == 0  # default
    assert main(["--out", str(out), "--epochs", "2", "--resume"]) == 0  # the maps are placed again on resume
    model, checkpoint = load_checkpoint(out / "tinybeauty_best_psnr.pt")
    assert checkpoint["model_config"]["region_inputs"] == list(REGION_INPUTS) and checkpoint["epoch"] >= 1
    assert checkpoint["train_config"]["region_inputs"] is True
    held_out = json.loads((out / "held_out.json").read_text())
    assert np.isfinite(held_out["test_psnr_db"]) and (out / "held_out_test.png").is_file()
    assert (synthetic_data / REGION_CACHE).is_file()
    face = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    with pytest.raises(ValueError, match="region maps .*lips"):  # a caller that does not give the maps
        model(face)
    assert export_main(["--checkpoint", str(out / "tinybeauty_best_psnr.pt"), "--out", str(tmp_path / "files"),
                        "--formats", "onnx", "--calibration-images", "4", "--val-images", "2"]) == 0  # draws them
