"""python -m train.keep_looks: a catalogue narrowed to some of its looks, without training."""

import json

import pytest
import torch

from export.__main__ import main as export_main
from models.checkpoint import CheckpointError, catalogue, checkpoint_split, load_checkpoint, read_checkpoint
from train.keep_looks import keep_looks, main


def one_hot(index, looks, count=2):
    return torch.nn.functional.one_hot(torch.full((count,), index), looks).float()


def test_one_kept_look_is_a_one_look_checkpoint_with_the_same_outputs(two_look_checkpoint, tmp_path):
    assert main(["--from", str(two_look_checkpoint), "--looks", "smoky", "--out", str(tmp_path / "smoky")]) == 0
    kept_path = tmp_path / "smoky" / two_look_checkpoint.name
    source, source_payload = load_checkpoint(two_look_checkpoint)
    kept, payload = load_checkpoint(kept_path)
    assert kept.config.looks == ("smoky",) and "optimizer" not in payload
    assert [look["name"] for look in catalogue(kept, payload)] == ["smoky"]
    assert catalogue(kept, payload)[0]["swatch_hex"] == catalogue(source, source_payload)[1]["swatch_hex"]
    assert checkpoint_split(payload, kept_path) == source_payload["split"]["looks"]["smoky"]
    faces = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(kept(faces), source(faces, one_hot(1, 2, 3)), atol=1e-6)
    # it exports as a one-look network: no look input, the look's own check faces
    assert export_main(["--checkpoint", str(kept_path), "--out", str(tmp_path / "files"), "--formats", "onnx"]) == 0
    looks = json.loads((tmp_path / "files" / "looks.json").read_text())
    assert looks["input"] is None and [look["name"] for look in looks["looks"]] == ["smoky"]


def test_kept_looks_take_the_order_given(two_look_checkpoint):
    payload = keep_looks(two_look_checkpoint, ["smoky", "berry"])
    assert [look["name"] for look in payload["looks"]] == ["smoky", "berry"]
    assert [look["index"] for look in payload["looks"]] == [0, 1]
    assert list(payload["split"]["looks"]) == ["smoky", "berry"]
    assert payload["kept_looks"]["max_difference"] <= 1e-5


def test_a_look_the_checkpoint_does_not_hold_is_refused_naming_its_looks(two_look_checkpoint, tmp_path, capsys):
    with pytest.raises(CheckpointError, match="holds the looks berry, smoky; classic is not among them"):
        keep_looks(two_look_checkpoint, ["classic"])
    with pytest.raises(CheckpointError, match="once"):
        keep_looks(two_look_checkpoint, ["berry", "berry"])
    assert main(["--from", str(two_look_checkpoint), "--looks", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "nope is not among them" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_one_look_checkpoint_has_nothing_to_narrow(checkpoint):
    with pytest.raises(CheckpointError, match="holds one look"):
        keep_looks(checkpoint, ["berry"])
    assert read_checkpoint(checkpoint)  # untouched
