"""The seed sweep checks its input before any training and owns its folder (train/sweep.py)."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import IMAGE_SIZE

from train.sweep import main as sweep_main
from train.sweep import parse_args


def tiny_recipe(data) -> list[str]:
    return ["--data", str(data), "--variant", "nano", "--image-size", str(IMAGE_SIZE), "--batch-size", "4",
            "--lr", "1e-3", "--epochs", "1", "--val-fraction", "0.25", "--test-fraction", "0.1"]


def refused(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        sweep_main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(("seeds", "message"), [("0,-1", "each seed must be a whole number between 0"),
                                                 ("0,4294967296", "each seed must be a whole number between 0"),
                                                 ("1,2,1", "seed 1 is listed more than once"),
                                                 ("0,x", "each seed must be a whole number")])
def test_every_seed_is_checked_before_any_training(seeds, message, tmp_path, capsys):
    assert message in refused(["--seeds", seeds, "--out", str(tmp_path / "sweep")], capsys)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("option", [["--seed", "5"], ["--seed=5"], ["--se", "5"], ["--out=elsewhere"],
                                    ["--ou", "elsewhere"], ["--overwrite"], ["--resume"]])
def test_options_the_sweep_sets_are_refused_in_every_spelling(option, tmp_path, capsys):
    error = refused(["--out", str(tmp_path / "sweep"), "--", "--epochs", "1", *option], capsys)
    assert "set per seed by the sweep" in error or "ambiguous option" in error
    assert not (tmp_path / "sweep").exists()


def test_a_bad_training_option_is_refused_before_the_first_seed(tmp_path, capsys):
    assert "--epochs" in refused(["--out", str(tmp_path / "sweep"), "--", "--epochs", "0"], capsys)
    assert not (tmp_path / "sweep").exists()


def test_threads_given_twice_is_refused(tmp_path, capsys):
    error = refused(["--out", str(tmp_path / "sweep"), "--threads", "1", "--", "--threads", "2"], capsys)
    assert "--threads after -- is set per seed" in error


def test_an_earlier_sweep_is_kept_unless_overwrite(synthetic_data, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert sweep_main(["--seeds", "0", "--out", str(out), "--", *tiny_recipe(synthetic_data)]) == 0
    first = (out / "sweep.json").read_bytes()
    assert "holds an earlier sweep" in refused(["--seeds", "0", "--out", str(out), "--",
                                                *tiny_recipe(synthetic_data)], capsys)
    assert (out / "sweep.json").read_bytes() == first
    (out / "sweep.json").unlink()  # a sweep stopped before its table: its seed's run still counts
    assert "seed_0" in refused(["--seeds", "0", "--out", str(out), "--", *tiny_recipe(synthetic_data)], capsys)
    assert sweep_main(["--seeds", "1", "--out", str(out), "--overwrite", "--", *tiny_recipe(synthetic_data)]) == 0
    assert [row["seed"] for row in json.loads((out / "sweep.json").read_text())["seeds"]] == [1]


def test_a_failing_training_stops_with_its_message_not_a_traceback(synthetic_data, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    broken = sorted((data / "source").iterdir())[0]
    broken.write_bytes(b"not an image")
    assert sweep_main(["--seeds", "0,1", "--out", str(tmp_path / "sweep"), "--", *tiny_recipe(data)]) == 2
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert any(broken.name in message for message in errors)  # train's own message names the file
    assert any("training seed 0 failed" in message for message in errors)
    assert not (tmp_path / "sweep" / "seed_1").exists()


def test_test_data_is_scored_per_seed_with_its_baseline_and_spread(synthetic_data, tmp_path):
    out = tmp_path / "sweep"
    assert sweep_main(["--seeds", "0,1", "--out", str(out), "--test-data", str(synthetic_data), "--",
                       *tiny_recipe(synthetic_data)]) == 0
    report = json.loads((out / "sweep.json").read_text())
    assert report["test_data"] == str(synthetic_data)
    rows, summary = report["seeds"], report["summary"]
    assert all(row["test_data_psnr_db"] > 0 and row["test_data_baseline_db"] > 0 for row in rows)
    assert rows[0]["test_data_baseline_db"] == rows[1]["test_data_baseline_db"]  # the same faces every seed
    assert rows[0]["test_data_psnr_db"] != rows[1]["test_data_psnr_db"]
    # the same folder as --data: every pair was someone's training pair, and the row says how many
    assert all(0 < row["test_data_pairs_in_training"] < 16 for row in rows)
    values = [row["test_data_psnr_db"] for row in rows]
    assert summary["test_data_psnr_db"]["min"] == min(values) and summary["test_data_psnr_db"]["n"] == 2
    assert "--test-data PSNR" in (out / "sweep.md").read_text()


def test_test_data_without_pairs_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    error = refused(["--out", str(tmp_path / "sweep"), "--test-data", str(tmp_path / "empty")], capsys)
    assert "--test-data" in error and "has no pairs.csv" in error and str(tmp_path / "empty") in error


def test_the_recipe_is_checked_with_the_seed_folders_not_trains_default_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tinybeauty_model").write_text("a file where train's default --out would go")
    args, _ = parse_args(["--seeds", "3,4", "--out", "sweep", "--", "--epochs", "1"])
    assert (args.recipe.out, args.recipe.epochs) == (str(Path("sweep") / "seed_3"), 1)


def test_a_format_the_export_does_not_know_is_refused_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit):
        sweep_main(["--export", "--formats", "onnx", "glb", "--out", str(tmp_path / "s")])
    assert "--formats: python -m export: error: argument --formats: invalid choice: 'glb'" in capsys.readouterr().err
    assert not (tmp_path / "s" / "seed_0").exists()
