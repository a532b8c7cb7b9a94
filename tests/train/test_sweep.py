import json

import pytest
from conftest import IMAGE_SIZE

from train.sweep import main as sweep_main


def tiny_recipe(data) -> list[str]:
    return ["--data", str(data), "--variant", "nano", "--image-size", str(IMAGE_SIZE), "--batch-size", "4",
            "--lr", "1e-3", "--epochs", "2", "--val-fraction", "0.25", "--test-fraction", "0.1"]


def test_sweep_reports_each_seed_and_the_spread(synthetic_data, tmp_path):
    out = tmp_path / "sweep"
    assert sweep_main(["--seeds", "0,1", "--out", str(out), "--", *tiny_recipe(synthetic_data)]) == 0
    report = json.loads((out / "sweep.json").read_text())
    rows, summary = report["seeds"], report["summary"]
    assert [row["seed"] for row in rows] == [0, 1]
    assert all((out / f"seed_{seed}" / "tinybeauty_best_psnr.pt").is_file() for seed in (0, 1))
    tests = [row["test_psnr_db"] for row in rows]
    assert tests[0] != tests[1]  # another seed: another split and start
    assert abs(summary["test_psnr_db"]["mean"] - sum(tests) / 2) < 1e-9
    assert summary["test_psnr_db"]["min"] == min(tests) and summary["test_psnr_db"]["max"] == max(tests)
    assert all(0 <= row["epochs_at_baseline"] <= 2 for row in rows)
    table = (out / "sweep.md").read_text()
    assert "mean ± std" in table and table.count("\n| ") >= 3


@pytest.mark.slow
def test_sweep_export_gives_each_int8_files_loss(synthetic_data, tmp_path):
    out = tmp_path / "sweep"
    assert sweep_main(["--seeds", "0", "--out", str(out), "--export", "--", *tiny_recipe(synthetic_data)]) == 0
    (row,) = json.loads((out / "sweep.json").read_text())["seeds"]
    # every shipped int8 file's loss against PyTorch on the test faces, from its own runtime's report
    assert {"onnx", "tflite", "pte", "ptl"} <= set(row["int8_loss_db"])
    assert all(abs(loss) < 1.0 for loss in row["int8_loss_db"].values())
    assert row["shipped_test_psnr_db"] == row["test_psnr_db"] - row["int8_loss_db"]["onnx"]
    assert "int8 ONNX test PSNR" in (out / "sweep.md").read_text()
    assert (out / "seed_0" / "bench" / "report.json").is_file()


def test_sweep_refuses_options_it_sets_per_seed(tmp_path, capsys):
    with pytest.raises(SystemExit):
        sweep_main(["--out", str(tmp_path), "--", "--seed", "3"])
    assert "set per seed" in capsys.readouterr().err


def catalogue_recipe(parent) -> list[str]:
    return ["--data", str(parent), "--variant", "nano", "--image-size", str(IMAGE_SIZE), "--batch-size", "4",
            "--lr", "1e-3", "--epochs", "2", "--val-fraction", "0.25", "--test-fraction", "0.2", "--threads", "1",
            "--eye-mask", "labels", "--no-region-inputs"]


def test_a_catalogue_sweep_judges_each_look_against_it_alone(two_look_folders, tmp_path):
    """--alone: each seed trains each look alone beside the catalogue, on the look's own split and epochs, and each
    look's row gives the catalogue's figure minus the alone run's."""
    from models.checkpoint import read_checkpoint

    out = tmp_path / "sweep"
    assert sweep_main(["--seeds", "0", "--alone", "--out", str(out), "--", *catalogue_recipe(two_look_folders)]) == 0
    (row,) = json.loads((out / "sweep.json").read_text())["seeds"]
    assert row["looks"] == ["berry", "smoky"]
    catalogue = read_checkpoint(out / "seed_0" / "tinybeauty_best_psnr.pt")
    for name in ("berry", "smoky"):
        alone = read_checkpoint(out / "seed_0" / f"alone_{name}" / "tinybeauty_best_psnr.pt")
        assert alone["train_config"]["looks"] == [name] and alone["train_config"]["epochs"] == 2
        own = alone["split"]["looks"][name] if "looks" in alone["split"] else alone["split"]
        assert ([entry["name"] for entry in own["test"]]  # the same held-out faces in both runs
                == [entry["name"] for entry in catalogue["split"]["looks"][name]["test"]])
        assert row[f"{name}.test_psnr_db"] != row[f"{name}.alone_test_psnr_db"]
        assert row[f"{name}.versus_alone_test_db"] == row[f"{name}.test_psnr_db"] - row[f"{name}.alone_test_psnr_db"]
        assert row[f"{name}.test_baseline_db"] == row[f"{name}.alone_test_baseline_db"]
    assert row["berry.test_baseline_db"] != row["smoky.test_baseline_db"]  # each look beside its own baseline
    table = (out / "sweep.md").read_text()
    assert "catalogue - alone (PyTorch)" in table and table.count("\n| berry |") == table.count("\n| smoky |") == 1
    assert (out / "versus_alone.png").read_bytes().startswith(b"\x89PNG")


def test_a_sweep_refuses_alone_with_one_look_and_test_data_with_several(two_look_folders, tmp_path, capsys):
    with pytest.raises(SystemExit):
        sweep_main(["--alone", "--out", str(tmp_path / "a"), "--", "--looks", "berry"])
    assert "--alone trains each look of a catalogue alone" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep_main(["--test-data", str(two_look_folders / "berry"), "--out", str(tmp_path / "b"), "--",
                    *catalogue_recipe(two_look_folders)])
    assert "--test-data holds one look's pairs" in capsys.readouterr().err


def test_the_catalogue_table_judges_each_look_on_the_parts_it_has():
    """Without a test split (--test-fraction 0) the real-photo part alone judges a look; a look more than 0.3 dB
    under its alone run on a part is not within the aim, one above it is; a report without an .onnx gives none."""
    from train.sweep_looks import looks_markdown, shipped_figures, versus_alone
    from train.sweep_runs import summarize

    rows = []
    for seed, (berry, smoky) in enumerate([(35.0, 36.0), (35.2, 36.4)]):
        row = {"seed": seed, "berry.test-real_psnr_db": berry, "berry.alone_test-real_psnr_db": berry - 2.0,
               "smoky.test-real_psnr_db": smoky, "smoky.alone_test-real_psnr_db": smoky + 0.5}
        rows.append(row | versus_alone(row, "berry") | versus_alone(row, "smoky"))
    assert rows[0]["smoky.versus_alone_test-real_db"] == -0.5 and "berry.versus_alone_test_db" not in rows[0]
    table = looks_markdown(["berry", "smoky"], rows, summarize(rows), "recipe")
    lines = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| berry") or
             line.startswith("| smoky")}
    assert lines["| berry"].endswith("| yes |") and lines["| smoky"].endswith("| no |")
    assert "+2.00 (0.00)" in lines["| berry"] and "-0.50 (0.00)" in lines["| smoky"]
    assert shipped_figures({"rows": [{"format": "ptl", "quality": {"test": {"psnr_db": 30.0}}}]}, "berry") == {}
