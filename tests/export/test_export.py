import json
import pathlib
import shutil

import numpy as np
import pytest
import torch
from conftest import maps_for

from export.__main__ import main as export_main
from export.formats import BY_NAME, FORMATS
from export.runtime import RuntimeUnavailable, run_in_batches_of_one
from models.atomic import sha256_tree, tree_bytes
from models.checkpoint import CheckpointError, load_checkpoint
from models.gates import SIZE_BUDGET_BYTES

SHIPPED = [f.name for f in FORMATS if f.shipped]


def manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.parametrize("name", [f.name for f in FORMATS])
def test_each_format_round_trips(artifacts, checkpoint, name):
    fmt = BY_NAME[name]
    record = next(r for r in manifest(artifacts)["artifacts"] if r["format"] == name)
    path = artifacts / fmt.filename
    assert tree_bytes(path) == record["bytes"] and sha256_tree(path) == record["sha256"]
    assert record["checkpoint_sha256"] == manifest(artifacts)["checkpoint_sha256"]
    assert record["input"].startswith("face")
    assert record["passed"] and not record["problems"]
    if fmt.shipped:
        assert record["bytes"] < SIZE_BUDGET_BYTES
    model, _ = load_checkpoint(checkpoint)
    faces = torch.rand(2, 3, 64, 64)
    regions = maps_for(model, faces)  # the default network's maps beside the face
    with torch.no_grad():
        reference = model(faces, regions=regions).numpy()
    try:
        outputs = run_in_batches_of_one(fmt.load(path), faces.numpy(), None,
                                        None if regions is None else regions.numpy())
        assert any("ran with" in c for c in record["checks_run"])
    except RuntimeUnavailable:  # e.g. Core ML off macOS: the format's stand-in check, and the record says so
        assert fmt.stand_in is not None and record["checks_skipped"]
        outputs, checks = fmt.stand_in(path, model, faces, regions=regions)
        assert checks
    assert outputs.shape == reference.shape and np.isfinite(outputs).all()
    tolerance = 1e-4 if name == "onnx-fp32" else 0.08  # int8 vs fp32, on [0, 1] pixels
    assert np.abs(outputs - reference).mean() < tolerance / 4
    assert np.abs(outputs - reference).max() < tolerance * 3
    assert record["psnr_vs_pytorch_db"] > (60 if name == "onnx-fp32" else 35)


@pytest.mark.parametrize("name", SHIPPED)
def test_provenance_inside_artifacts(artifacts, name):
    fmt = BY_NAME[name]
    stored = fmt.read_metadata(artifacts / fmt.filename)
    assert stored["tinybeauty.checkpoint_sha256"] == manifest(artifacts)["checkpoint_sha256"]
    layout = {"NCHW": "[1,3,64,64]", "NHWC": "[1,64,64,3]", "image": "image RGB 64x64"}[fmt.layout]
    assert layout in stored["tinybeauty.input"]
    record = next(r for r in manifest(artifacts)["artifacts"] if r["format"] == name)
    assert record["input"] == stored["tinybeauty.input"]


def test_format_specific_contracts(artifacts):
    import zipfile

    import coremltools as ct

    # the lite interpreter's records only: no source-range tables, no TorchScript source (it ran above without)
    names = zipfile.ZipFile(artifacts / "tinybeauty.ptl").namelist()
    assert "bytecode.pkl" in {pathlib.PurePosixPath(n).name for n in names}
    assert not [n for n in names if n.endswith(".debug_pkl") or "/code/" in n]
    spec = ct.utils.load_spec(str(artifacts / "tinybeauty.mlmodel"))
    assert spec.description.metadata.license == "MIT"
    assert spec.description.input[0].type.WhichOneof("Type") == "imageType"
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(artifacts / "tinybeauty.tflite"))
    inputs, (made_up,) = interpreter.get_input_details(), interpreter.get_output_details()
    # the default network reads the face's region maps too, named as such (the face: the other input)
    (regions,) = [i for i in inputs if "regions" in i["name"]]
    (face,) = [i for i in inputs if "regions" not in i["name"]]
    assert list(face["shape"]) == [1, 64, 64, 3] and face["dtype"] == np.float32  # what the README promises
    assert list(regions["shape"]) == [1, 64, 64, 3] and regions["dtype"] == np.float32  # NHWC, as the face
    assert list(made_up["shape"]) == [1, 64, 64, 3] and made_up["dtype"] == np.float32


def test_size_gate_fails_and_keeps_previous_artifacts(artifacts, checkpoint, tmp_path, capsys):
    out = tmp_path / "artifacts"
    out.mkdir()
    for name in ("tinybeauty.onnx", "manifest.json"):
        (out / name).write_bytes((artifacts / name).read_bytes())
    before = (out / "tinybeauty.onnx").read_bytes()
    code = export_main(["--checkpoint", str(checkpoint), "--out", str(out), "--formats", "onnx",
                        "--budget-bytes", "1000",
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


class _RunsCodeWhenUnpickled:
    """A pickle that creates a file when loaded: what a full unpickle of a hostile checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_unrun(tmp_path):
    marker, path = tmp_path / "code_ran", tmp_path / "hostile.pt"
    torch.save({"model": _RunsCodeWhenUnpickled(marker), "model_config": {}}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(path)
    assert not marker.exists()
    assert export_main(["--checkpoint", str(path), "--out", str(tmp_path / "out")]) == 2
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_real_warnings_still_show_after_the_known_noise_is_silenced():
    import warnings

    from export.runtime import silence_known_noise

    real = [(category, f"a real {category.__name__} of this project")
            for category in (UserWarning, DeprecationWarning, FutureWarning, RuntimeWarning)]
    # ExecuTorch's message, raised from another module: only ExecuTorch's own is known noise.
    real.append((UserWarning, "This API is experimental and subject to change without notice"))
    known = [(DeprecationWarning, "`torch.jit.trace` is deprecated. Please switch to `torch.compile`"),
             (ResourceWarning, "Implicitly cleaning up <TemporaryDirectory '/tmp/x'>")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_noise()
        for category, message in known + real:
            warnings.warn(message, category, stacklevel=1)
    assert [(w.category, str(w.message)) for w in caught] == real


def test_top_level_of_artifacts_is_exactly_what_ships(artifacts):
    top = sorted(p.name for p in artifacts.iterdir() if p.name != "reference")
    # The files, the catalogue an app reads (looks.json) and the manifest.
    assert top == sorted([f.filename for f in FORMATS if f.shipped] + ["looks.json", "manifest.json"])
    assert all(tree_bytes(artifacts / name) < SIZE_BUDGET_BYTES for name in top if not name.endswith(".json"))
    assert (artifacts / "reference" / "tinybeauty_fp32.onnx").is_file()


def test_failed_check_keeps_the_previous_set_untouched(artifacts, checkpoint, tmp_path, monkeypatch, capsys):
    """An unexpected error inside a check (not a failed gate) still leaves the previous set as it was."""
    import dataclasses

    out = tmp_path / "artifacts"
    shutil.copytree(artifacts, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken_runtime(path, threads=None):
        raise RuntimeError("runtime crashed while loading")

    monkeypatch.setitem(BY_NAME, "onnx", dataclasses.replace(BY_NAME["onnx"], load=broken_runtime))
    code = export_main(["--checkpoint", str(checkpoint), "--out", str(out), "--formats", "onnx-fp32", "onnx",
                        "--calibration-images", "4", "--val-images", "2"])
    assert code == 1
    assert "runtime crashed while loading" in capsys.readouterr().out
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_new_set_replaces_the_old_one_as_a_whole(artifacts, checkpoint, tmp_path):
    """A new export is one set: no file of the previous export survives beside the new manifest."""
    out = tmp_path / "artifacts"
    shutil.copytree(artifacts, out)
    old_ptl = out / "tinybeauty.ptl"
    assert old_ptl.is_file()
    assert export_main(["--checkpoint", str(checkpoint), "--out", str(out), "--formats", "onnx",
                        "--calibration-images", "4", "--val-images", "2"]) == 0
    new = manifest(out)
    assert [r["file"] for r in new["artifacts"]] == ["tinybeauty.onnx"]
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["looks.json", "manifest.json", "tinybeauty.onnx"]
    from models.atomic import sha256_file

    assert sha256_file(out / "tinybeauty.onnx") == new["artifacts"][0]["sha256"]
    assert not list(tmp_path.glob(".artifacts*"))  # staging folder consumed by the swap


def test_replace_directory_swaps_in_one_step(tmp_path):
    from models.atomic import replace_directory

    old, new = tmp_path / "set", tmp_path / ".set.staging"
    old.mkdir()
    (old / "a.bin").write_text("old a")
    (old / "manifest.json").write_text("old")
    new.mkdir()
    (new / "manifest.json").write_text("new")
    handle = (old / "manifest.json").open()  # a reader that opened the old manifest keeps reading the old set
    replace_directory(new, old)
    assert handle.read() == "old"
    handle.close()
    assert sorted(p.name for p in old.iterdir()) == ["manifest.json"] and (old / "manifest.json").read_text() == "new"
    assert not new.exists()


def test_skip_rescaling_is_float_exact(checkpoint):
    from models.rescale import equalize_skips

    model, _ = load_checkpoint(checkpoint)
    faces = torch.rand(3, 3, 64, 64)
    regions = maps_for(model, faces)
    rescaled, factors = equalize_skips(model, faces, regions=regions)
    assert set(factors) == {"enc1", "enc2", "enc3"} and all(k > 0 for k in factors.values())
    with torch.no_grad():
        assert torch.allclose(rescaled(faces, clamp=False, regions=regions), model(faces, clamp=False, regions=regions),
                              atol=1e-5)
        stem = rescaled.residual.stem(rescaled.network_input(faces, regions))
        skip = rescaled.residual.enc3(rescaled.residual.pool(rescaled.residual.enc2(rescaled.residual.pool(
            rescaled.residual.enc1(stem)))))
        partner = rescaled.residual.bottleneck(skip)
    assert skip.max() == pytest.approx(partner.max().item(), rel=0.3)  # ranges fitted (calibrated on these faces)


def test_export_log_has_no_known_noise(artifacts, checkpoint, tmp_path, capfd):
    assert export_main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "a"), "--formats", "ptl", "onnx",
                        "--calibration-images", "4", "--val-images", "2"]) == 0
    captured = capfd.readouterr()
    text = captured.out + captured.err
    assert "cat operator must share the same quantization parameters" not in text
    assert "LeafSpec" not in text


def test_mlpackage_bits_search_is_recorded_and_gated(artifacts):
    import json as json_module

    from export.mlpackage_format import MAX_DROP_DB, read_metadata

    stored = read_metadata(artifacts / "tinybeauty.mlpackage")
    bits = json_module.loads(stored["tinybeauty.weight_bits"])
    steps = json_module.loads(stored["tinybeauty.size_quality"])
    assert len(bits) == 9 and set(bits.values()) <= {4, 6, 8}
    assert steps[0]["bits"] == "all 8" and all(step["drop_db"] <= MAX_DROP_DB for step in steps)
    assert [s["bytes"] for s in steps] == sorted((s["bytes"] for s in steps), reverse=True)  # each step smaller
    assert steps[-1]["bytes"] == pytest.approx(tree_bytes(artifacts / "tinybeauty.mlpackage"), rel=0.05)


def test_altered_package_file_changes_its_digest(artifacts, tmp_path):
    package = tmp_path / "p.mlpackage"
    shutil.copytree(artifacts / "tinybeauty.mlpackage", package)
    before = sha256_tree(package)
    (package / "extra.txt").write_text("x")
    assert sha256_tree(package) != before


def mlprogram_block(spec):
    (function,) = spec.mlProgram.functions.values()
    return function.block_specializations[function.opset]


def test_mlpackage_program_has_short_names_and_no_repeated_constants(artifacts):
    import coremltools as ct

    spec = ct.utils.load_spec(str(artifacts / "tinybeauty.mlpackage"))
    operations = mlprogram_block(spec).operations
    names = {out.name for op in operations for out in op.outputs}
    names |= {op.attributes["name"].immediateValue.tensor.strings.values[0] for op in operations}
    names -= {"face", "made_up"}  # the app's input and output keep their names
    assert names and max(map(len, names)) <= 4, sorted(names, key=len)[-3:]  # coremltools' own reach 60
    constants = [op.outputs[0].type.SerializeToString() + op.attributes["val"].SerializeToString()
                 for op in operations if op.type == "const" and op.attributes["val"].HasField("immediateValue")]
    assert len(constants) == len(set(constants))  # one const per value, not five per convolution


def test_mlpackage_interface_and_metadata_match_the_mlmodel(artifacts):
    import coremltools as ct

    package = ct.utils.load_spec(str(artifacts / "tinybeauty.mlpackage")).description
    neural_network = ct.utils.load_spec(str(artifacts / "tinybeauty.mlmodel")).description
    assert [f.name for f in package.input] == ["face", "regions"] and [f.name for f in package.output] == ["made_up"]
    assert list(package.input) == list(neural_network.input) and list(package.output) == list(neural_network.output)
    for field in ("author", "license", "versionString", "shortDescription"):
        assert getattr(package.metadata, field) == getattr(neural_network.metadata, field) != ""
    provenance = {k: v for k, v in neural_network.metadata.userDefined.items() if k.startswith("tinybeauty.")}
    assert provenance and provenance.items() <= dict(package.metadata.userDefined).items()


def test_compacting_an_ml_program_keeps_what_it_computes(checkpoint, tmp_path):
    import copy

    from coremltools.optimize.coreml import OpPalettizerConfig, OptimizationConfig, palettize_weights

    from export import coreml_format, mlpackage_format
    from export.common import ExportInputs

    ct = coreml_format._quiet_coremltools()
    model, _ = load_checkpoint(checkpoint)
    faces = torch.rand(2, 3, 64, 64)
    regions = maps_for(model, faces)
    inputs = ExportInputs(example=faces[:1], calibration=faces, val_source=faces, val_target=faces,
                          example_regions=regions[:1], calibration_regions=regions, val_regions=regions)
    float_model = coreml_format.convert(model, inputs, "mlprogram", ct.target.iOS16)
    palettized = palettize_weights(float_model, OptimizationConfig(
        global_config=OpPalettizerConfig(mode="kmeans", nbits=6, weight_threshold=0)))
    compacted = mlpackage_format.compact(palettized)
    for mlmodel, name in ((palettized, "long"), (compacted, "short")):
        mlmodel.save(str(tmp_path / f"{name}.mlpackage"))
    long_spec, short_spec = palettized.get_spec(), compacted.get_spec()
    assert mlpackage_format.program_signature(short_spec) == mlpackage_format.program_signature(long_spec)
    assert short_spec.ByteSize() < 0.6 * long_spec.ByteSize()
    assert short_spec.description == long_spec.description
    weights = "Data/com.apple.CoreML/weights/weight.bin"
    assert (tmp_path / "short.mlpackage" / weights).read_bytes() == (tmp_path / "long.mlpackage" / weights).read_bytes()
    with torch.no_grad():  # the stand-in reads the same weights back, by position, and still matches PyTorch
        outputs = {name: mlpackage_format.stored_model(tmp_path / f"{name}.mlpackage", model)[0](faces, regions=regions)
                   for name in ("long", "short")}
        assert torch.equal(outputs["long"], outputs["short"])
        assert (outputs["short"] - model(faces, regions=regions)).abs().max() < 0.1
    altered = copy.deepcopy(short_spec)  # the signature sees a changed constant: the check can fail
    next(op for op in mlprogram_block(altered).operations if op.type == "const"
         and op.attributes["val"].immediateValue.tensor.WhichOneof("value") == "ints"
         ).attributes["val"].immediateValue.tensor.ints.values[0] += 1
    assert mlpackage_format.program_signature(altered) != mlpackage_format.program_signature(short_spec)
