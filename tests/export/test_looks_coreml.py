"""The look input of the Core ML files (.mlmodel and .mlpackage) of a network of several looks: the file
takes ``look_weights`` (a MultiArray float32 [1, L]) beside the face image, each one-hot look is PyTorch's
look, a blend is PyTorch's blend, and the looks' names travel in the file's metadata.

Core ML predicts on macOS only; elsewhere each format's stand-in (the weights the file stores, rebuilt in
PyTorch) runs in its place, behind the spec check that the file takes the look input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import IMAGE_SIZE

from export.__main__ import main as export_main
from export.coreml_format import can_predict, image_io_problems
from export.formats import BY_NAME
from export.loading import load_model, recorded_looks
from export.mlpackage_format import MAX_DROP_DB, stored_model
from export.runtime import RuntimeUnavailable
from models.checkpoint import load_checkpoint
from models.gates import BLEND_MIN_PSNR_VS_PYTORCH_DB, MAX_PSNR_DROP_DB
from models.metrics import mean_psnr_db

FORMATS = ("coreml", "mlpackage")
LOOKS = ["berry", "smoky"]
# As the one-look round trip (tests/export/test_export.py): 8-bit weights against fp32, on [0, 1] pixels.
TOLERANCE = 0.08


@pytest.fixture(scope="module")
def exported(two_look_checkpoint, tmp_path_factory):
    """The Core ML formats alone, exported (and checked per look and for a blend) from the two-look run."""
    out = tmp_path_factory.mktemp("artifacts")
    assert export_main(["--checkpoint", str(two_look_checkpoint), "--out", str(out), "--formats", *FORMATS,
                        "--calibration-images", "4", "--val-images", "2"]) == 0
    return out


def file_outputs(name: str, path, model, faces: torch.Tensor, look_weights: torch.Tensor) -> np.ndarray:
    """The file's made-up faces: Core ML itself on macOS, else the format's stand-in."""
    fmt = BY_NAME[name]
    try:
        runner = fmt.load(path)
    except RuntimeUnavailable:
        outputs, checks = fmt.stand_in(path, model, faces, look_weights)
        assert any("look_weights" in check for check in checks)  # the spec check saw the look input
        return outputs
    return np.concatenate([runner(face[None].numpy(), looks[None].numpy())
                           for face, looks in zip(faces, look_weights, strict=True)])


def assert_close(outputs: np.ndarray, reference: torch.Tensor) -> None:
    difference = np.abs(outputs - reference.numpy())
    assert outputs.shape == tuple(reference.shape) and np.isfinite(outputs).all()
    assert difference.mean() < TOLERANCE / 4 and difference.max() < TOLERANCE * 3


@pytest.mark.slow  # renders pairs and trains
@pytest.mark.parametrize("name", FORMATS)
def test_the_file_takes_look_weights(exported, name):
    import coremltools as ct

    spec = ct.utils.load_spec(str(exported / BY_NAME[name].filename))
    face, looks = spec.description.input
    assert (face.name, face.type.WhichOneof("Type")) == ("face", "imageType")
    assert looks.name == "look_weights" and list(looks.type.multiArrayType.shape) == [1, 2]
    assert looks.type.multiArrayType.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert "berry, smoky" in looks.shortDescription  # what Xcode shows beside the input
    assert image_io_problems(spec, IMAGE_SIZE, looks=2) == []
    # The spec check knows the second input: a file of two looks is not what a one- or three-look network takes.
    assert "expected inputs ['face']" in image_io_problems(spec, IMAGE_SIZE, looks=1)[0]
    assert "expected FLOAT32 [1, 3]" in image_io_problems(spec, IMAGE_SIZE, looks=3)[0]


@pytest.mark.slow  # renders pairs and trains
@pytest.mark.parametrize("name", FORMATS)
def test_each_one_hot_look_is_pytorchs_look(exported, two_look_checkpoint, name):
    model, _ = load_checkpoint(two_look_checkpoint)
    faces = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    for look in range(len(LOOKS)):
        one_hot = torch.nn.functional.one_hot(torch.full((2,), look), len(LOOKS)).float()
        with torch.no_grad():
            reference = model(faces, one_hot)
        assert_close(file_outputs(name, exported / BY_NAME[name].filename, model, faces, one_hot), reference)
    record = next(r for r in json.loads((exported / "manifest.json").read_text())["artifacts"] if r["format"] == name)
    assert list(record["looks"]) == LOOKS  # the export's gates, per look
    assert all(figures["psnr_drop_db"] <= MAX_PSNR_DROP_DB for figures in record["looks"].values())


@pytest.mark.slow  # renders pairs and trains
@pytest.mark.parametrize("name", FORMATS)
def test_a_blend_is_pytorchs_blend(exported, two_look_checkpoint, name):
    model, _ = load_checkpoint(two_look_checkpoint)
    faces = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    blend = torch.tensor([[0.25, 0.75], [0.6, 0.4]])
    with torch.no_grad():
        reference = model(faces, blend)
    assert_close(file_outputs(name, exported / BY_NAME[name].filename, model, faces, blend), reference)
    record = next(r for r in json.loads((exported / "manifest.json").read_text())["artifacts"] if r["format"] == name)
    assert record["blend_psnr_vs_pytorch_db"] >= BLEND_MIN_PSNR_VS_PYTORCH_DB


@pytest.mark.slow  # renders pairs and trains
@pytest.mark.parametrize("name", FORMATS)
def test_the_metadata_names_the_looks(exported, name):
    path = exported / BY_NAME[name].filename
    metadata = BY_NAME[name].read_metadata(path)
    assert [look["name"] for look in recorded_looks(metadata)] == LOOKS
    assert metadata["tinybeauty.look_input"].startswith("look_weights: float32 [1,2]")
    if can_predict():
        assert load_model(path).look_names == LOOKS
    else:  # Core ML off macOS: the file opens nowhere here, and says so
        with pytest.raises(RuntimeUnavailable, match="needs macOS"):
            load_model(path)


@pytest.mark.slow  # renders pairs and trains
def test_every_look_keeps_the_palettization_margin(exported, two_look_checkpoint):
    """The .mlpackage's bit search holds each look (not their mean) within its margin of PyTorch."""
    from export.pipeline import prepare_inputs
    from models.checkpoint import checkpoint_split

    model, checkpoint = load_checkpoint(two_look_checkpoint)
    inputs = prepare_inputs(checkpoint_split(checkpoint, two_look_checkpoint), None, 4, 2)
    rebuilt, _ = stored_model(exported / BY_NAME["mlpackage"].filename, model)
    for look in range(len(LOOKS)):
        rows = inputs.val_looks[:, look] == 1
        with torch.no_grad():
            drop = (mean_psnr_db(model(inputs.val_source[rows], inputs.val_looks[rows]), inputs.val_target[rows])
                    - mean_psnr_db(rebuilt(inputs.val_source[rows], inputs.val_looks[rows]), inputs.val_target[rows]))
        assert drop <= MAX_DROP_DB + 1e-6
