import json
import pickle

import numpy as np
import onnx
import pytest
import torch

from export.__main__ import main as export_main
from export.formats import BY_NAME, FORMATS
from models.checkpoint import CheckpointError, load_checkpoint

SHIPPED = [f.name for f in FORMATS if f.shipped]


def manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.parametrize("name", [f.name for f in FORMATS])
def test_each_format_round_trips(artifacts, checkpoint, name):
    fmt = BY_NAME[name]
    record = next(r for r in manifest(artifacts)["artifacts"] if r["format"] == name)
    path = artifacts / fmt.filename
    assert path.stat().st_size == record["bytes"]
    assert record["checkpoint_sha256"] == manifest(artifacts)["checkpoint_sha256"] and record["input"].startswith("face")
    assert record["passed"] and not record["problems"]
    if fmt.shipped:
        assert record["bytes"] < 100_000
    model, _ = load_checkpoint(checkpoint)
    faces = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(faces).numpy()
    if name == "coreml":
        from export import coreml_format

        if not coreml_format.can_predict():
            assert any("needs macOS" in s for s in record["checks_skipped"])
            outputs, checks = fmt.stand_in(path, model, faces)
            assert any("dequantized from the file" in c for c in checks)
        else:
            outputs = np.concatenate([fmt.load(path)(f[None].numpy()) for f in faces])
    else:
        outputs = np.concatenate([fmt.load(path)(f[None].numpy()) for f in faces])
        assert any("ran with" in c for c in record["checks_run"])
    assert outputs.shape == reference.shape and np.isfinite(outputs).all()
    tolerance = 1e-4 if name == "onnx-fp32" else 0.08  # int8 vs fp32, on [0, 1] pixels
    assert np.abs(outputs - reference).mean() < tolerance / 4
    assert np.abs(outputs - reference).max() < tolerance * 3
    assert record["psnr_vs_pytorch_db"] > (60 if name == "onnx-fp32" else 35)


def test_provenance_inside_artifacts(artifacts, checkpoint):
    sha = manifest(artifacts)["checkpoint_sha256"]
    props = {p.key: p.value for p in onnx.load(str(artifacts / "tinybeauty.onnx")).metadata_props}
    assert props["tinybeauty.checkpoint_sha256"] == sha
    from export.ptl_format import read_metadata

    assert read_metadata(artifacts / "tinybeauty.ptl")["tinybeauty.checkpoint_sha256"] == sha
    import zipfile

    assert not [n for n in zipfile.ZipFile(artifacts / "tinybeauty.ptl").namelist() if n.endswith(".debug_pkl")]
    import coremltools as ct

    spec = ct.utils.load_spec(str(artifacts / "tinybeauty.mlmodel"))
    assert spec.description.metadata.userDefined["tinybeauty.checkpoint_sha256"] == sha
    assert spec.description.metadata.license == "MIT"
    assert spec.description.input[0].type.WhichOneof("Type") == "imageType"


def test_size_gate_fails_and_keeps_previous_artifacts(artifacts, checkpoint, tmp_path, capsys):
    out = tmp_path / "artifacts"
    out.mkdir()
    for name in ("tinybeauty.onnx", "manifest.json"):
        (out / name).write_bytes((artifacts / name).read_bytes())
    before = (out / "tinybeauty.onnx").read_bytes()
    code = export_main(["--checkpoint", str(checkpoint), "--out", str(out), "--formats", "onnx", "--budget-bytes", "1000",
                        "--calibration-images", "4", "--val-images", "2"])
    assert code == 1
    assert "over the 1,000-byte budget" in capsys.readouterr().out
    assert (out / "tinybeauty.onnx").read_bytes() == before  # the previous good file is untouched
    assert json.loads((out / "manifest.json").read_text()) == manifest(artifacts)


def test_quality_gate_fails_when_drop_limit_is_negative(checkpoint, tmp_path, capsys):
    code = export_main(["--checkpoint", str(checkpoint), "--out", str(tmp_path), "--formats", "onnx-fp32",
                        "--max-psnr-drop", "-1", "--calibration-images", "2", "--val-images", "2"])
    assert code == 1
    assert "over the -1.0 dB limit" in capsys.readouterr().out
    assert not (tmp_path / "reference" / "tinybeauty_fp32.onnx").exists()


def write_bad(path, kind, good):
    if kind == "missing":
        return
    if kind == "corrupt":
        path.write_bytes(good.read_bytes()[:500])
    elif kind == "pickled-module":
        torch.save(torch.nn.Conv2d(3, 3, 3), path)  # torch.save(model): needs unpickling code objects
    elif kind == "foreign":
        torch.save({"model": torch.nn.Conv2d(3, 3, 3).state_dict(), "model_config": {}}, path)
    elif kind == "old-config":
        payload = torch.load(good, weights_only=True)
        payload["model_config"]["depth"] = 4
        torch.save(payload, path)
    elif kind == "not-a-dict":
        torch.save([1, 2, 3], path)
    elif kind == "text":
        path.write_text("hello")


@pytest.mark.parametrize("kind,message", [
    ("missing", "does not exist"),
    ("corrupt", "corrupt or truncated"),
    ("text", "corrupt or truncated"),
    ("pickled-module", "pickled Python objects"),
    ("foreign", "do not fit the TinyBeauty architecture"),
    ("old-config", "model_config this code cannot build"),
    ("not-a-dict", "is not a TinyBeauty checkpoint"),
])
def test_bad_checkpoints_are_rejected_clearly(kind, message, checkpoint, tmp_path, caplog):
    path = tmp_path / "bad.pt"
    write_bad(path, kind, checkpoint)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    assert export_main(["--checkpoint", str(path), "--out", str(tmp_path / "out")]) == 2
    assert message in caplog.text


def test_pickle_error_type_is_what_weights_only_raises(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(torch.nn.Conv2d(1, 1, 1), path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_top_level_of_artifacts_is_exactly_what_ships(artifacts):
    top = sorted(p.name for p in artifacts.iterdir() if p.is_file())
    assert top == sorted([f.filename for f in FORMATS if f.shipped] + ["manifest.json"])
    assert all((artifacts / name).stat().st_size < 100_000 for name in top if name != "manifest.json")
    assert (artifacts / "reference" / "tinybeauty_fp32.onnx").is_file()
