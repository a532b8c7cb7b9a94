"""A look added to a trained network (--add-look NAME --from CHECKPOINT, train/add_look.py): the earlier
looks' outputs bit-identical to the source's, the new look putting makeup on, every look's split and
metadata in the checkpoint, the source's skip factors kept, the file exported; and the refusals."""

import json
import logging

import pytest
import torch
from conftest import IMAGE_SIZE, maps_for, train_args

from export.__main__ import main as export_main
from models.checkpoint import load_checkpoint
from models.data import faces_as_tensors, load_split
from models.tinybeauty import GATE_START, one_hot_looks
from train.__main__ import main, parse_args
from train.looks import LOOKS
from train.synthetic import write_dataset

SHORT = ["--epochs", "2", "--threads", "1", "--eye-mask", "labels"]


@pytest.fixture(scope="module")
def look_folders(tmp_path_factory):
    parent = tmp_path_factory.mktemp("looks")
    for name, count in (("berry", 16), ("smoky", 12), ("classic", 12)):
        write_dataset(parent / name, n=count, size=IMAGE_SIZE, workers=1, look=name)
    return parent


def named_data(args: list[str], folders: dict) -> list[str]:
    """``train_args``'s --data replaced by NAME=DIR for each look of ``folders``."""
    at = args.index("--data")
    named = [arg for name, folder in folders.items() for arg in ("--data", f"{name}={folder}")]
    return args[:at] + named + args[at + 2:]


@pytest.fixture(scope="module")
def source_run(look_folders, tmp_path_factory):
    """Two looks (berry, smoky), the last epoch quantization-aware (so the checkpoint has skip factors)."""
    out = tmp_path_factory.mktemp("source")
    folders = {name: look_folders / name for name in ("berry", "smoky")}
    assert main(named_data(train_args(look_folders / "berry", out, *SHORT, "--qat-epochs", "1"), folders)) == 0
    return out / "tinybeauty_best_psnr.pt"


def add_args(data, out, source, *extra):
    """An --add-look command line: train_args without --variant and --image-size (they come from --from)."""
    args = train_args(data, out, *SHORT, "--add-look", "classic", "--from", str(source), *extra)
    for option in ("--variant", "--image-size"):
        at = args.index(option)
        del args[at:at + 2]
    return args


@pytest.fixture(scope="module")
def added_run(look_folders, source_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("added")
    assert main(add_args(look_folders / "classic", out, source_run)) == 0
    return out


def faces_of(checkpoint_path, look: str) -> torch.Tensor:
    split = torch.load(checkpoint_path, weights_only=True)["split"]
    return faces_as_tensors(load_split(split["looks"][look], "val"))[0]


@pytest.mark.slow  # renders pairs and trains
def test_earlier_looks_are_bit_identical_and_the_new_look_puts_makeup_on(added_run, source_run):
    source, _ = load_checkpoint(source_run)
    added, checkpoint = load_checkpoint(added_run / "tinybeauty_best_psnr.pt")
    assert added.config.looks == ("berry", "smoky", "classic")
    faces = torch.cat([faces_of(source_run, look) for look in ("berry", "smoky")])
    count, maps = len(faces), {"regions": maps_for(source, faces)}  # the default network's maps (any will do)
    with torch.no_grad():
        for index in range(2):
            before = source(faces, one_hot_looks(torch.full((count,), index), source.config), **maps)
            after = added(faces, one_hot_looks(torch.full((count,), index), added.config), **maps)
            assert torch.equal(before, after)
        classic = added(faces, one_hot_looks(torch.full((count,), 2), added.config), **maps)
        earlier = [added(faces, one_hot_looks(torch.full((count,), index), added.config), **maps) for index in range(2)]
    assert not any(torch.equal(classic, output) for output in [faces, *earlier])
    gates = "residual.look_gates.weight"
    source_weights = torch.load(source_run, weights_only=True)["model"]
    assert all(torch.equal(checkpoint["model"][key], source_weights[key]) for key in source_weights if key != gates)
    rows, earlier = checkpoint["model"][gates], source_weights[gates]
    assert torch.equal(rows[:2], earlier)  # the earlier looks' rows as they were; the new one started at their mean
    assert (rows[2] - earlier.mean(dim=0).clamp(-GATE_START, GATE_START)).abs().max() > 1e-4  # and trained


@pytest.mark.slow  # renders pairs and trains
def test_the_checkpoint_holds_every_looks_split_and_metadata(added_run, source_run, look_folders):
    source = torch.load(source_run, weights_only=True)
    added = torch.load(added_run / "tinybeauty_last.pt", weights_only=True)
    assert list(added["split"]["looks"]) == ["berry", "smoky", "classic"]
    for look in ("berry", "smoky"):
        assert added["split"]["looks"][look] == source["split"]["looks"][look]
    assert added["split"]["looks"]["classic"]["data"] == str(look_folders / "classic")
    assert added["looks"] == [{"name": name, "index": index, "swatch_hex": LOOKS[name].swatch_hex()}
                              for index, name in enumerate(("berry", "smoky", "classic"))]
    assert added["phase"] == "float" and source["phase"] == "qat"
    assert added["skip_factors"] == source["skip_factors"]
    assert added["train_config"]["add_look"] == "classic" and added["train_config"]["variant"] == "nano"
    held_out = json.loads((added_run / "held_out.json").read_text())
    assert list(held_out["looks"]) == ["berry", "smoky", "classic"]
    figures = held_out["looks"]["classic"]
    assert {"test_psnr_db", "test_baseline_db", "val_psnr_db", "val_baseline_db"} <= set(figures)


@pytest.mark.slow  # renders pairs and trains
def test_an_added_look_run_is_run_again_not_resumed(added_run, caplog):
    with caplog.at_level(logging.ERROR):
        assert main(["--out", str(added_run), "--resume"]) == 2
    assert "is an --add-look run, which --resume does not continue" in caplog.text


@pytest.mark.slow  # renders pairs, trains and exports
def test_the_added_checkpoint_exports(added_run, tmp_path):
    out = tmp_path / "artifacts"
    assert export_main(["--checkpoint", str(added_run / "tinybeauty_best_psnr.pt"), "--out", str(out),
                        "--formats", "onnx", "--calibration-images", "8", "--val-images", "4"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [look["name"] for look in manifest["looks"]] == ["berry", "smoky", "classic"]


@pytest.mark.slow  # renders pairs and trains
def test_a_look_added_to_a_one_look_network(look_folders, tmp_path):
    """A one-look network (no look input) grows a look input: its look's one-hot output is its output."""
    one, added = tmp_path / "one", tmp_path / "added"
    assert main(train_args(look_folders / "berry", one, *SHORT, "--qat-epochs", "0")) == 0
    args = add_args(look_folders / "smoky", added, one / "tinybeauty_last.pt")
    args[args.index("--add-look") + 1] = "smoky"
    assert main(args) == 0
    source, _ = load_checkpoint(one / "tinybeauty_last.pt")
    model, checkpoint = load_checkpoint(added / "tinybeauty_last.pt")
    faces = faces_of(added / "tinybeauty_last.pt", "berry")
    with torch.no_grad():
        maps = maps_for(source, faces)
        assert torch.equal(source(faces, regions=maps),
                           model(faces, one_hot_looks(torch.zeros(len(faces)), model.config), regions=maps))
    assert list(checkpoint["split"]["looks"]) == ["berry", "smoky"]
    assert [look["name"] for look in checkpoint["looks"]] == ["berry", "smoky"]


@pytest.mark.slow  # renders pairs and trains
@pytest.mark.parametrize(("extra", "message"), [
    (["--add-look", "smoky"], "holds that look already (its looks: berry, smoky)"),
    (["--variant", "tiny"], "--variant tiny (it has nano)"),
    (["--image-size", "128"], "--image-size 128 (it has 64)"),
])
def test_what_the_source_cannot_take_is_refused(extra, message, look_folders, source_run, tmp_path, caplog):
    args = add_args(look_folders / "classic", tmp_path / "out", source_run, *extra)
    with caplog.at_level(logging.ERROR):
        assert main(args) == 2
    assert message in caplog.text
    assert not (tmp_path / "out" / "tinybeauty_last.pt").exists()


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path, caplog):
    not_a_checkpoint = tmp_path / "weights.pt"
    torch.save({"weights": torch.zeros(3)}, not_a_checkpoint)
    with caplog.at_level(logging.ERROR):
        assert main(["--add-look", "smoky", "--from", str(not_a_checkpoint), "--out", str(tmp_path / "out")]) == 2
    assert "is not a TinyBeauty checkpoint" in caplog.text


@pytest.mark.parametrize(("argv", "message"), [
    (["--add-look", "smoky"], "--add-look smoky needs --from CHECKPOINT"),
    (["--from", "FILE"], "--from names the checkpoint a look is added to: give --add-look NAME too"),
    (["--add-look", "smoky", "--from", "missing.pt"], "--from missing.pt: no such file"),
    (["--add-look", "glitter", "--from", "FILE"], "--add-look glitter is not a built-in look"),
    (["--add-look", "smoky", "--from", "FILE", "--looks", "berry,smoky"], "--looks names the looks of a new network"),
    (["--add-look", "smoky", "--from", "FILE", "--resume"], "run it again rather than --resume"),
    (["--add-look", "smoky", "--from", "FILE", "--qat-epochs", "2"], "--add-look trains the new look in float"),
    (["--add-look", "smoky", "--from", "FILE", "--data", "a=A", "--data", "b=B"], "adds one look"),
    (["--add-look", "smoky", "--from", "FILE", "--data", "EMPTY"], "no pairs.csv, source/ + target/"),
])
def test_add_look_options_that_cannot_work_are_refused(argv, message, tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(b"read when the run starts")
    (tmp_path / "empty").mkdir()
    argv = [str(tmp_path / "checkpoint.pt") if arg == "FILE" else str(tmp_path / "empty") if arg == "EMPTY" else arg
            for arg in argv]
    with pytest.raises(SystemExit) as exit_info:
        parse_args([*argv, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and message.replace("EMPTY", str(tmp_path / "empty")) in capsys.readouterr().err


def test_an_added_look_takes_a_few_epochs_and_no_quantization_aware_ones(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"read when the run starts")
    config, given = parse_args(["--add-look", "smoky", "--from", str(tmp_path / "checkpoint.pt"),
                                "--out", str(tmp_path / "out")])
    assert (config.add_look, config.start_from, config.data) == ("smoky", str(tmp_path / "checkpoint.pt"), None)
    assert config.qat_epochs == 0 and config.epochs < 20 and "data" not in given
    small, _ = parse_args(["--add-look", "smoky", "--from", str(tmp_path / "checkpoint.pt"), "--image-size", "64",
                           "--out", str(tmp_path / "out")])
    assert small.crop is None  # the crop is the source run's (train/add_look.py), not the CPU preset's 128


@pytest.mark.slow  # renders pairs and trains
def test_an_added_built_in_look_keeps_the_held_out_person_of_its_source(source_run, tmp_path, capsys):
    """A built-in look added to a run holds out the person its source held out (the default where the source
    records none); another is refused, naming both, and so is --held-out-person beside --data."""
    from models.checkpoint import CheckpointError
    from train.__main__ import parse_args
    from train.add_look import open_source

    config, given = parse_args(["--add-look", "natural", "--from", str(source_run), "--out", str(tmp_path / "a")])
    assert open_source(config, given).config.held_out_person == "hopper"
    config, given = parse_args(["--add-look", "natural", "--from", str(source_run), "--held-out-person", "collins",
                                "--out", str(tmp_path / "b")])
    with pytest.raises(CheckpointError, match=r"--held-out-person collins \(it has hopper\)"):
        open_source(config, given)
    with pytest.raises(SystemExit):
        parse_args(add_args(tmp_path, tmp_path / "c", source_run, "--held-out-person", "hopper"))
    assert "--held-out-person hopper picks the built-in set's real-photo test person" in capsys.readouterr().err
