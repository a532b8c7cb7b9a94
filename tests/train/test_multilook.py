"""Several looks trained at once (train/multilook.py): NAME=DIR folders and a parent of look folders, a
split per look, batches that mix looks with each sample's loss through its own look, per-look figures
beside each look's baseline, and the errors for looks that do not exist or are given twice."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import IMAGE_SIZE, maps_for, train_args

from models.data import Pair, PairCache
from models.tinybeauty import one_hot_looks
from train.__main__ import main, parse_args
from train.dataset import PairDataset, same_faces
from train.look_options import builtin_folder, parse_look_names
from train.looks import LOOKS
from train.losses import makeup_loss
from train.multilook import join_looks
from train.synthetic import write_dataset

SHORT = ["--epochs", "3", "--qat-epochs", "1", "--threads", "1", "--eye-mask", "labels"]


@pytest.fixture(scope="module")
def look_folders(tmp_path_factory):
    """Two looks' pair folders under one parent: berry on 16 faces, smoky on 12 (other counts, same renderer)."""
    parent = tmp_path_factory.mktemp("looks")
    write_dataset(parent / "berry", n=16, size=IMAGE_SIZE, workers=1, look="berry")
    write_dataset(parent / "smoky", n=12, size=IMAGE_SIZE, workers=1, look="smoky")
    return parent


def look_args(parent, out, *extra):
    args = train_args(parent / "berry", out, *SHORT, *extra)
    at = args.index("--data")
    return args[:at] + ["--data", f"berry={parent / 'berry'}", "--data", f"smoky={parent / 'smoky'}"] + args[at + 2:]


@pytest.fixture(scope="module")
def two_look_run(look_folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(look_args(look_folders, out)) == 0
    return out


@pytest.mark.slow  # renders pairs (and most train)
def test_a_two_look_run_reports_each_look(two_look_run):
    checkpoint = torch.load(two_look_run / "tinybeauty_best_psnr.pt", weights_only=True)
    assert checkpoint["model_config"]["looks"] == ["berry", "smoky"]
    assert checkpoint["looks"] == [{"name": "berry", "index": 0, "swatch_hex": LOOKS["berry"].swatch_hex()},
                                   {"name": "smoky", "index": 1, "swatch_hex": LOOKS["smoky"].swatch_hex()}]
    with (two_look_run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    for row in rows:  # each look beside its own baseline; the headline is their mean
        for look in ("berry", "smoky"):
            assert float(row[f"baseline_psnr_{look}"]) > 20
        mean = (float(row["val_psnr_berry"]) + float(row["val_psnr_smoky"])) / 2
        assert float(row["val_psnr"]) == pytest.approx(mean)
    held_out = json.loads((two_look_run / "held_out.json").read_text())
    assert list(held_out["looks"]) == ["berry", "smoky"]
    for look, figures in held_out["looks"].items():
        assert {"test_psnr_db", "test_baseline_db", "val_psnr_db", "val_baseline_db"} <= set(figures)
        assert figures["swatch_hex"] == LOOKS[look].swatch_hex()
    # The looks' baselines differ (smoky changes far more of the face than berry): each is its own look's.
    assert abs(held_out["looks"]["berry"]["test_baseline_db"] - held_out["looks"]["smoky"]["test_baseline_db"]) > 1


@pytest.mark.slow  # renders pairs (and trains)
def test_a_blending_run_trains_and_scores_each_two_looks_even_blend(look_folders, tmp_path):
    """Two looks on the same 12 faces (split alike), --blend-share: the run trains through blended samples and
    held_out.json scores the looks' even blend on the test faces they share, beside its baseline, as a picture too."""
    berry = tmp_path / "berry"
    for folder in ("source", "target", "mask"):
        (berry / folder).mkdir(parents=True)
        for path in sorted((look_folders / "berry" / folder).iterdir())[:12]:  # smoky's 12 faces
            shutil.copy(path, berry / folder / path.name)
    out = tmp_path / "run"
    args = train_args(berry, out, *SHORT, "--blend-share", "0.5")
    at = args.index("--data")
    args = args[:at] + ["--data", f"berry={berry}", "--data", f"smoky={look_folders / 'smoky'}"] + args[at + 2:]
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["blend_share"] == 0.5
    blend = json.loads((out / "held_out.json").read_text())["blends"]["berry+smoky"]
    split = torch.load(out / "tinybeauty_best_psnr.pt", weights_only=True)["split"]["looks"]
    assert blend["test_pairs"] == len(split["smoky"]["test"]) > 0
    assert {entry["name"] for entry in split["berry"]["test"]} == {entry["name"] for entry in split["smoky"]["test"]}
    assert 15 < blend["test_baseline_db"] < 60 and 10 < blend["test_psnr_db"] < 60
    assert 10 < blend["test_two_runs_psnr_db"] < 60
    assert (out / "held_out_blends_test.png").is_file()
    config, _ = parse_args(["--out", str(out), "--resume", "--blend-share", "0.5"])  # a resume may repeat it
    assert config.resume and config.blend_share == 0.5


@pytest.mark.slow  # renders pairs (and most train)
def test_the_split_is_recorded_per_look(two_look_run, look_folders):
    split = torch.load(two_look_run / "tinybeauty_last.pt", weights_only=True)["split"]
    assert list(split["looks"]) == ["berry", "smoky"]
    for look, pairs in (("berry", 16), ("smoky", 12)):
        record = split["looks"][look]
        assert record["data"] == str(look_folders / look)
        names = {part: {entry["name"] for entry in record[part]} for part in ("train", "val", "test")}
        assert sum(len(part) for part in names.values()) == pairs
        assert not (names["train"] & names["val"] or names["train"] & names["test"] or names["val"] & names["test"])


@pytest.mark.slow  # renders pairs (and most train)
def test_a_parent_folder_of_looks_trains_the_same_run(two_look_run, look_folders, tmp_path):
    """--data PARENT (subfolders berry/ and smoky/) is the same run as --data berry=... --data smoky=...;
    a folder without pairs (a run's output) beside them is not a look."""
    parent = tmp_path / "parent"
    shutil.copytree(look_folders, parent)
    (parent / "notes").mkdir()
    out = tmp_path / "run"
    assert main(train_args(parent, out, *SHORT)) == 0
    ours = torch.load(out / "tinybeauty_last.pt", weights_only=True)
    theirs = torch.load(two_look_run / "tinybeauty_last.pt", weights_only=True)
    assert ours["model_config"]["looks"] == ["berry", "smoky"]
    assert all(torch.equal(ours["model"][key], theirs["model"][key]) for key in theirs["model"])


@pytest.mark.slow  # renders pairs (and most train)
def test_one_named_look_is_todays_one_look_run(look_folders, tmp_path):
    """--data berry=DIR alone trains exactly what --data DIR does (one look is today's network and run)."""
    named, plain = tmp_path / "named", tmp_path / "plain"
    args = train_args(look_folders / "berry", named, *SHORT)
    args[args.index("--data") + 1] = f"berry={look_folders / 'berry'}"
    assert main(args) == 0
    assert main(train_args(look_folders / "berry", plain, *SHORT)) == 0
    ours = torch.load(named / "tinybeauty_last.pt", weights_only=True)
    todays = torch.load(plain / "tinybeauty_last.pt", weights_only=True)
    assert list(ours["model"]) == list(todays["model"])
    assert all(torch.equal(ours["model"][key], todays["model"][key]) for key in todays["model"])
    assert "looks" not in todays["train_config"] and "looks" not in todays  # records what it did before looks


@pytest.mark.slow  # renders pairs (and most train)
def test_resumed_run_of_several_looks_continues_the_same_stream(look_folders, tmp_path):
    """2 epochs + resume to 3 gives the weights of 3 epochs straight (float phase: --qat-epochs 0 in both)."""
    run, straight = tmp_path / "run", tmp_path / "straight"
    assert main(look_args(look_folders, run, "--epochs", "2", "--qat-epochs", "0")) == 0
    assert main(["--out", str(run), "--epochs", "3", "--resume"]) == 0
    assert main(look_args(look_folders, straight, "--qat-epochs", "0")) == 0
    resumed = torch.load(run / "tinybeauty_last.pt", weights_only=True)
    expected = torch.load(straight / "tinybeauty_last.pt", weights_only=True)
    assert all(torch.equal(expected["model"][key], resumed["model"][key]) for key in expected["model"])


@pytest.mark.slow  # renders pairs (and most train)
def test_batches_mix_looks_and_each_loss_goes_through_its_own_gates(look_folders):
    """A training batch holds several looks' samples, each with its look index; the loss of a batch of one
    look moves only that look's gates (and the shared network)."""
    from train.dataset import load_pairs

    parts = [(load_pairs(look_folders / look, IMAGE_SIZE, eye_mask="labels"), {"train": np.arange(n)})
             for look, n in (("berry", 16), ("smoky", 12))]
    cache, indices = join_looks(parts)
    assert isinstance(cache, PairCache) and cache.looks.tolist() == [0] * 16 + [1] * 12
    loader = torch.utils.data.DataLoader(PairDataset(cache, indices["train"], train=True, crop=32), batch_size=8,
                                         shuffle=True, generator=torch.Generator().manual_seed(0))
    batches = [batch[3] for batch in loader]
    assert any(len(set(looks.tolist())) > 1 for looks in batches)
    args, _ = parse_args(look_args(look_folders, "unused"))
    from train.pipeline import build_network

    model = build_network(args, None, torch.device("cpu"))
    source, target, eye, _look = next(iter(torch.utils.data.DataLoader(
        PairDataset(cache, np.arange(16, 20)), batch_size=4)))  # smoky only
    made_up = model(source, one_hot_looks(torch.ones(4), model.config), clamp=False, regions=maps_for(model, source))
    makeup_loss(made_up, target, eye)["loss"].backward()
    grad = model.residual.look_gates.weight.grad
    assert grad[0].abs().max() == 0 and grad[1].abs().max() > 0
    assert model.residual.head.weight.grad.abs().max() > 0


def handmade_looks(names: list[str], looks: list[int], faces: list[int], side: int = 8) -> PairCache:
    """A cache whose pair i is face ``faces[i]`` (its pixels) in look ``looks[i]``; each look paints its own colour."""
    rng = np.random.default_rng(0)
    face_pixels = rng.integers(0, 200, (max(faces) + 1, side, side, 3), dtype=np.uint8)
    sources = face_pixels[faces]
    targets = np.stack([np.clip(source.astype(int) + 10 + 20 * look, 0, 255).astype(np.uint8)
                        for source, look in zip(sources, looks, strict=True)])
    pairs = [Pair(name, None, None, None) for name in names]
    return PairCache(pairs, [""] * len(pairs), sources, targets, np.zeros(sources.shape[:3], np.uint8),
                     looks=np.array(looks, np.int64))


def test_a_face_is_blended_only_with_its_own_pixels_in_another_look():
    # pairs 0-2 in look 0, 3-5 in look 1: "a" is the same face in both, "b" shares a name but not the face,
    # "c" is a look-0 face only; "d" is in look 1 only.
    cache = handmade_looks(["a", "b", "c", "a", "b", "d"], [0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 3, 4])
    partners = same_faces(cache, np.arange(6))
    assert [p.tolist() for p in partners] == [[3], [], [], [0], [], []]
    assert [p.tolist() for p in same_faces(cache, np.array([0, 1, 2]))] == [[], [], []]  # its partner not in training


def test_a_blending_set_trains_blends_of_two_looks_against_the_blend_of_their_targets():
    cache = handmade_looks(["a", "b", "a", "b", "c"], [0, 0, 1, 1, 2], [0, 1, 0, 1, 2])
    blending = PairDataset(cache, train=True, seed=3, blend=0.999)
    blended = 0
    for epoch in range(4):
        blending.set_epoch(epoch)
        for item in range(len(cache)):
            source, target, _mask, weights = blending[item]
            assert weights.dtype == torch.float32 and weights.shape == (3,) and weights.sum() == pytest.approx(1)
            (looks,) = torch.nonzero(weights, as_tuple=True)
            if item == 4:  # face c is in one look only: itself, one-hot
                assert weights.tolist() == [0, 0, 1]
            assert set(looks.tolist()) <= ({0, 1} if item < 4 else {2})
            mixed = sum(weights[look].item() * cache.targets[cache.looks == look][item % 2].astype(np.float32)
                        for look in looks.tolist())
            expected = torch.from_numpy(np.rint(mixed).astype(np.uint8)).permute(2, 0, 1).float() / 255
            flipped = expected.flip(-1)
            assert torch.equal(target, expected) or torch.equal(target, flipped)  # a random flip
            assert torch.equal(source, torch.from_numpy(cache.sources[item]).permute(2, 0, 1).float() / 255) or \
                torch.equal(source, torch.from_numpy(cache.sources[item]).permute(2, 0, 1).float().flip(-1) / 255)
            blended += len(looks) == 2
    assert blended > 0.8 * 4 * 4  # nearly every sample of a shared face, at a share of 0.999
    again = PairDataset(cache, train=True, seed=3, blend=0.999)
    for dataset in (again, blending):
        dataset.set_epoch(3)
    assert all(torch.equal(a, b) for a, b in zip(again[1], blending[1], strict=True))  # (seed, epoch) fixes it
    plain = PairDataset(cache, train=True, seed=3)  # no blend: each sample's look index, as before
    assert plain[0][3].dtype == torch.int64 and plain[2][3].item() == 1


def test_built_in_looks_live_beside_the_built_in_set(tmp_path):
    assert builtin_folder(tmp_path / "synthetic", "berry") == tmp_path / "synthetic"
    assert builtin_folder(tmp_path / "synthetic", "smoky") == tmp_path / "synthetic-smoky"
    config, _ = parse_args(["--looks", "berry,smoky", "--out", str(tmp_path / "out")])
    assert config.looks == ["berry", "smoky"] and config.preset == "cpu" and config.look_data is None


@pytest.mark.parametrize(("argv", "message"), [
    (["--looks", "berry,glitter"], "no look named 'glitter'; the catalogue has berry, natural, classic, smoky"),
    (["--looks", "berry,smoky,berry"], "names the look berry twice"),
    (["--data", "a=A", "--data", "a=B"], "names the look a twice"),
    (["--data", "a=A", "--looks", "berry"], "--looks and --data NAME=DIR both name the looks"),
    (["--looks", "berry", "--blend-share", "0.3"], "needs a run of several looks"),
    (["--blend-share", "0.3"], "needs a run of several looks"),
    (["--looks", "berry,smoky", "--blend-share", "1"], "--blend-share"),
])
def test_look_options_that_cannot_work_are_refused(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        parse_args([*argv, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow  # renders pairs (and most train)
def test_a_look_folder_without_pairs_is_refused(look_folders, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit):
        parse_args(["--data", f"berry={look_folders / 'berry'}", "--data", f"smoky={empty}",
                    "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert f"--data smoky={empty}" in err and "no pairs.csv, source/ + target/" in err


@pytest.mark.slow  # renders pairs (and most train)
def test_looks_that_a_parent_folder_does_not_have_are_refused(look_folders, tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--data", str(look_folders), "--looks", "berry,classic", "--out", str(tmp_path / "out")])
    assert "--looks classic" in capsys.readouterr().err


def test_catalogue_names_parse_in_order():
    assert parse_look_names(" smoky, berry ") == ["smoky", "berry"]


def test_the_sweep_takes_a_catalogue(tmp_path):
    from train.sweep import parse_args as sweep_parse_args

    args, _ = sweep_parse_args(["--seeds", "0,1", "--alone", "--out", str(tmp_path / "sweep"), "--", "--looks",
                                "berry,smoky"])
    assert args.recipe.looks == ["berry", "smoky"] and args.alone
