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

from models.data import PairCache
from models.tinybeauty import one_hot_looks
from train.__main__ import main, parse_args
from train.dataset import PairDataset
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


def test_the_sweep_refuses_several_looks(tmp_path, capsys):
    from train.sweep import parse_args as sweep_parse_args

    with pytest.raises(SystemExit):
        sweep_parse_args(["--seeds", "0,1", "--out", str(tmp_path / "sweep"), "--", "--looks", "berry,smoky"])
    assert "scores one look per run, and these options train 2 (berry, smoky)" in capsys.readouterr().err
