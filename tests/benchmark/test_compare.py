"""python -m benchmark.compare: two exported sets side by side (the catalogue against one of its looks)."""

import json

from benchmark.compare import byte_costs, main
from export.__main__ import main as export_main
from train.keep_looks import main as keep_looks


def test_the_catalogue_against_one_of_its_looks(two_look_checkpoint, tmp_path, capsys):
    assert keep_looks(["--from", str(two_look_checkpoint), "--looks", "berry", "--out", str(tmp_path / "berry")]) == 0
    formats = ["--formats", "onnx", "tflite"]
    assert export_main(["--checkpoint", str(two_look_checkpoint), "--out", str(tmp_path / "both"), *formats]) == 0
    assert export_main(["--checkpoint", str(tmp_path / "berry" / two_look_checkpoint.name),
                        "--out", str(tmp_path / "one"), *formats]) == 0
    out = tmp_path / "compare"
    assert main(["--base", str(tmp_path / "one"), "--other", str(tmp_path / "both"), "--out", str(out),
                 "--rounds", "2", "--min-runs", "3", "--min-seconds", "0.01"]) == 0
    report = json.loads((out / "compare.json").read_text())
    assert report["base"]["looks"] == 1 and report["other"]["looks"] == 2
    manifests = {side: json.loads((tmp_path / side / "manifest.json").read_text()) for side in ("one", "both")}
    bytes_of = {side: {entry["format"]: entry["bytes"] for entry in manifest["artifacts"]}
                for side, manifest in manifests.items()}
    assert [row["format"] for row in report["formats"]] == ["onnx", "tflite"]
    for row in report["formats"]:
        assert row["base_bytes"] == bytes_of["one"][row["format"]]
        assert row["byte_difference"] == bytes_of["both"][row["format"]] - bytes_of["one"][row["format"]]
        assert row["base_looks"] == 1 and row["other_looks"] == 2  # each file ran with its own inputs
        assert len(row["rounds"]["base"]) == len(row["rounds"]["other"]) == 2 and row["ratio"] > 0
    assert (out / "compare.png").stat().st_size > 0 and "| onnx |" in (out / "compare.md").read_text()


def test_a_folder_without_a_manifest_is_refused(tmp_path, capsys):
    assert main(["--base", str(tmp_path), "--other", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "export the sets first" in capsys.readouterr().err


def test_a_looks_own_bytes_are_the_slope_from_fewer_looks_and_the_rest_is_the_look_input():
    # ptl files of one, two and four looks of one catalogue (the measured sizes of docs/benchmark.md)
    costs = byte_costs({"base": 95_591, "fewer": 99_087, "other": 99_650}, {"base": 1, "fewer": 2, "other": 4})
    assert costs["byte_difference"] == 4_059 and costs["bytes_per_extra_look"] == 1_353
    assert costs["bytes_per_look"] == 281.5 and costs["look_input_bytes"] == 3_496 - 281.5
    assert "bytes_per_look" not in byte_costs({"base": 10, "other": 14}, {"base": 1, "other": 3})


def test_fewer_looks_must_lie_between_the_two_sets(two_look_checkpoint, tmp_path, capsys):
    assert export_main(["--checkpoint", str(two_look_checkpoint), "--out", str(tmp_path / "both"),
                        "--formats", "onnx"]) == 0
    both = str(tmp_path / "both")
    assert main(["--base", both, "--fewer", both, "--other", both, "--out", str(tmp_path / "out")]) == 2
    assert "--fewer" in capsys.readouterr().err and not (tmp_path / "out" / "compare.json").exists()
