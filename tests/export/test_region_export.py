"""A network that reads the face's region maps beside it (--region-inputs) exported to every format: each file
takes a ``regions`` input after the face, names the maps in its metadata, runs each face with its own maps as
PyTorch does, changes its output when the maps change (the input is wired), and refuses a run without them."""

import json

import numpy as np
import pytest
import torch

from export.__main__ import main as export_main
from export.formats import BY_NAME, FORMATS
from export.loading import load_model, recorded_region_inputs
from export.pipeline import prepare_inputs
from export.runtime import RuntimeUnavailable
from models.checkpoint import checkpoint_split, load_checkpoint
from models.gates import SIZE_BUDGET_BYTES
from models.metrics import psnr_db
from tests.conftest import IMAGE_SIZE
from train.region_maps import REGION_INPUTS

NAMES = list(REGION_INPUTS)  # lips, eyes, cheeks


@pytest.fixture(scope="module")
def region_set(region_checkpoint, tmp_path_factory):
    """Every format exported once from the region-input network, for the module's tests."""
    out = tmp_path_factory.mktemp("region_artifacts")
    assert export_main(["--checkpoint", str(region_checkpoint), "--out", str(out), "--calibration-images", "8",
                        "--val-images", "4"]) == 0
    return out


@pytest.fixture(scope="module")
def faces_and_maps(region_checkpoint):
    """The network, and its check faces with their own maps, drawn the way the export draws them."""
    model, checkpoint = load_checkpoint(region_checkpoint)
    inputs = prepare_inputs(checkpoint_split(checkpoint, region_checkpoint), None, 2, 4, model.config.region_inputs)
    assert inputs.val_regions.shape == (4, len(NAMES), IMAGE_SIZE, IMAGE_SIZE)
    assert inputs.val_regions.amax() > 0.5  # the mesh found the faces: the maps are live, not empty
    return model, inputs.val_source, inputs.val_regions


def manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.slow
def test_the_export_records_the_maps_every_file_reads(region_set):
    recorded = manifest(region_set)
    assert recorded["region_inputs"] == NAMES and recorded["model_config"]["region_inputs"] == NAMES
    assert json.loads((region_set / "looks.json").read_text())["region_inputs"] == NAMES
    assert {r["format"] for r in recorded["artifacts"]} == {f.name for f in FORMATS}
    for record in recorded["artifacts"]:
        assert record["passed"] and not record["problems"], record
        assert record["regions_input"].startswith("regions:")
        assert record["psnr_drop_db"] <= recorded["max_psnr_drop_db"]
        if record["shipped"]:
            assert record["bytes"] < SIZE_BUDGET_BYTES
    for fmt in FORMATS:  # the files' own provenance names the maps and their layout
        stored = fmt.read_metadata(region_set / fmt.filename)
        assert recorded_region_inputs(stored) == tuple(NAMES)
        shape = "[1,64,64,3]" if fmt.layout == "NHWC" else "[1,3,64,64]"
        assert shape in stored["tinybeauty.regions_input"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [f.name for f in FORMATS])
def test_each_file_runs_each_face_with_its_own_maps(region_set, faces_and_maps, name):
    fmt = BY_NAME[name]
    path = region_set / fmt.filename
    model, faces, maps = faces_and_maps
    other = torch.ones_like(maps)  # other maps: every region everywhere
    with torch.no_grad():
        reference, moved = model(faces, regions=maps), model(faces, regions=other)
    try:
        loaded = load_model(path)
    except RuntimeUnavailable:  # Core ML off macOS: its stand-in, which checks the regions input in the spec
        outputs, _ = fmt.stand_in(path, model, faces, None, maps)
        changed, _ = fmt.stand_in(path, model, faces, None, other)
    else:
        assert loaded.region_inputs == tuple(NAMES) and loaded.image_size == IMAGE_SIZE
        run = lambda regions: np.concatenate([loaded.runner(face[None], regions=regions[i:i + 1])  # noqa: E731
                                              for i, face in enumerate(faces.numpy())])
        outputs, changed = run(maps.numpy()), run(other.numpy())
        with pytest.raises(ValueError, match=r"reads 3 region maps \(lips, eyes, cheeks\).*got none"):
            fmt.load(path)(faces[:1].numpy())
        with pytest.raises(ValueError, match=r"got \[1, 2, 64, 64\]"):
            fmt.load(path)(faces[:1].numpy(), regions=maps[:1, :2].numpy())
    outputs, changed = torch.as_tensor(outputs), torch.as_tensor(changed)
    floor = 60 if name == "onnx-fp32" else 35  # fp32 against fp32; int8 or 8-bit weights against fp32
    assert psnr_db(outputs, reference) > floor and psnr_db(changed, moved) > floor
    # the input is wired: other maps move the file's output away from PyTorch's with the face's own maps
    # (a 2-epoch network's residual is small, so by a few dB: 8-9 here, int8 noise included)
    assert not torch.equal(outputs, changed)
    assert psnr_db(outputs, reference) > psnr_db(changed, reference) + 5


@pytest.mark.slow
def test_the_files_take_regions_last_in_their_own_layout(region_set):
    import coremltools as ct
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    session = ort.InferenceSession(str(region_set / "tinybeauty.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("face", [1, 3, 64, 64]), ("regions", [1, 3, 64, 64])]
    interpreter = Interpreter(model_path=str(region_set / "tinybeauty.tflite"))
    inputs = {i["name"]: i for i in interpreter.get_input_details()}
    regions = next(i for name, i in inputs.items() if "regions" in name)
    assert list(regions["shape"]) == [1, 64, 64, 3] and regions["dtype"] == np.float32  # NHWC, float like the face
    assert all(i["dtype"] == np.float32 for i in inputs.values())  # the face stays float: added to in float
    for filename in ("tinybeauty.mlmodel", "tinybeauty.mlpackage"):
        spec = ct.utils.load_spec(str(region_set / filename))
        face, maps = spec.description.input
        assert (face.name, face.type.WhichOneof("Type")) == ("face", "imageType")
        assert maps.name == "regions" and list(maps.type.multiArrayType.shape) == [1, 3, 64, 64]


def two_look_region_checkpoint(source, target):
    """A network of two looks that reads region maps, built without training one: the one-look region
    network's layers, the first look's gates open (exactly the one-look network), the second look's
    gates at random, saved with a split of two looks over the same faces, as training writes one."""
    from dataclasses import replace

    from models.checkpoint import save_checkpoint
    from models.tinybeauty import TinyBeauty
    from train.add_look import OPEN_GATE

    model, payload = load_checkpoint(source)
    config = replace(model.config, looks=("berry", "smoky"))
    network = TinyBeauty(config)
    state = model.state_dict()
    channels = network.residual.look_gates.weight.shape[1]
    state["residual.look_gates.weight"] = torch.stack([torch.full((channels,), OPEN_GATE), 0.1 + 0.05 * torch.randn(
        channels, generator=torch.Generator().manual_seed(0))])
    network.load_state_dict(state)
    return save_checkpoint(target, {
        "model": network.state_dict(), "model_config": config.to_dict(), "epoch": payload["epoch"],
        "val_psnr": payload["val_psnr"], "split": {"looks": {look: payload["split"] for look in config.looks}},
        "looks": [{"name": look, "index": index, "swatch_hex": None} for index, look in enumerate(config.looks)]})


@pytest.mark.slow
def test_a_network_of_several_looks_takes_face_look_weights_and_regions(region_checkpoint, faces_and_maps, tmp_path):
    checkpoint = two_look_region_checkpoint(region_checkpoint, tmp_path / "two_looks_regions.pt")
    out = tmp_path / "artifacts"
    formats = ["onnx", "coreml", "ptl", "pte", "tflite"]
    assert export_main(["--checkpoint", str(checkpoint), "--out", str(out), "--formats", *formats,
                        "--calibration-images", "8", "--val-images", "2"]) == 0
    recorded = manifest(out)
    assert recorded["region_inputs"] == NAMES and [look["name"] for look in recorded["looks"]] == ["berry", "smoky"]
    for record in recorded["artifacts"]:  # each look gated on its faces with their maps, and a blend
        assert record["passed"] and list(record["looks"]) == ["berry", "smoky"]
        assert record["blend_psnr_vs_pytorch_db"] > 30
    model, _ = load_checkpoint(checkpoint)
    _, faces, maps = faces_and_maps
    looks = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.0, 1.0]])
    with torch.no_grad():
        reference = model(faces, looks, regions=maps)
    for name in ("onnx", "ptl", "pte", "tflite"):
        loaded = load_model(out / BY_NAME[name].filename)
        assert loaded.region_inputs == tuple(NAMES) and loaded.look_names == ["berry", "smoky"]
        outputs = np.concatenate([loaded.runner(face[None], looks[i:i + 1].numpy(), regions=maps[i:i + 1].numpy())
                                  for i, face in enumerate(faces.numpy())])
        assert psnr_db(torch.as_tensor(outputs), reference) > 35, name
    import coremltools as ct

    spec = ct.utils.load_spec(str(out / "tinybeauty.mlmodel"))
    assert [feature.name for feature in spec.description.input] == ["face", "look_weights", "regions"]
