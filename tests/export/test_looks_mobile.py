"""The look input of the mobile files (.ptl, .pte, .tflite) of a network of several looks: each file takes
``look_weights`` (float32 [1, L]) beside the face, one-hot gives each look as PyTorch does, a blend gives
PyTorch's blend, and the catalogue travels inside the file (read_metadata, load_model)."""

import json
import operator
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import IMAGE_SIZE

from export.__main__ import main as export_main
from export.formats import BY_NAME
from export.loading import load_model
from export.runtime import run_in_batches_of_one
from models.checkpoint import load_checkpoint
from models.gates import BLEND_MIN_PSNR_VS_PYTORCH_DB
from models.tinybeauty import VARIANTS, build_model

MOBILE = ["ptl", "pte", "tflite"]
LOOKS = ["berry", "smoky"]
# As the one-look files are held to in tests/export/test_export.py: int8 vs fp32, on [0, 1] pixels.
TOLERANCE = 0.08


@pytest.fixture(scope="module")
def mobile_files(two_look_checkpoint, tmp_path_factory):
    """The mobile formats exported from the two-look checkpoint (real converters, real runtimes)."""
    out = tmp_path_factory.mktemp("artifacts")
    assert export_main(["--checkpoint", str(two_look_checkpoint), "--out", str(out), "--formats", *MOBILE,
                        "--calibration-images", "8", "--val-images", "4"]) == 0
    return out


def record_of(folder, name):
    manifest = json.loads((folder / "manifest.json").read_text())
    return next(r for r in manifest["artifacts"] if r["format"] == name)


def pytorch(checkpoint, faces, weights):
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        return model(faces, weights).numpy()


def file_outputs(path, name, faces, weights):
    return run_in_batches_of_one(BY_NAME[name].load(path), faces.numpy(), weights.numpy())


def assert_close(outputs, reference):
    assert outputs.shape == reference.shape and np.isfinite(outputs).all()
    assert np.abs(outputs - reference).mean() < TOLERANCE / 4
    assert np.abs(outputs - reference).max() < TOLERANCE * 3


@pytest.mark.slow  # renders pairs and trains
@pytest.mark.parametrize("name", MOBILE)
def test_one_hot_gives_each_look_as_pytorch_does(mobile_files, two_look_checkpoint, name):
    path = mobile_files / BY_NAME[name].filename
    faces = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    ours, theirs = [], []
    for index in range(len(LOOKS)):
        weights = torch.nn.functional.one_hot(torch.full((len(faces),), index), len(LOOKS)).float()
        ours.append(file_outputs(path, name, faces, weights))
        theirs.append(pytorch(two_look_checkpoint, faces, weights))
        assert_close(ours[-1], theirs[-1])
    # The input is read: the file's two looks differ as PyTorch's do (a file that ignored it would give the
    # same face twice, as far from PyTorch's difference as zero is).
    ours_apart, theirs_apart = ours[0] - ours[1], theirs[0] - theirs[1]
    assert np.abs(ours_apart - theirs_apart).mean() < 0.5 * np.abs(theirs_apart).mean()
    record = record_of(mobile_files, name)
    assert record["passed"] and set(record["looks"]) == set(LOOKS)
    assert all(figures["psnr_drop_db"] <= 0.5 for figures in record["looks"].values())


@pytest.mark.slow  # renders pairs and trains
@pytest.mark.parametrize("name", MOBILE)
def test_a_blend_is_pytorchs_blend(mobile_files, two_look_checkpoint, name):
    faces = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    weights = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    outputs = file_outputs(mobile_files / BY_NAME[name].filename, name, faces, weights)
    assert_close(outputs, pytorch(two_look_checkpoint, faces, weights))
    assert record_of(mobile_files, name)["blend_psnr_vs_pytorch_db"] > BLEND_MIN_PSNR_VS_PYTORCH_DB


@pytest.mark.slow  # renders pairs and trains
@pytest.mark.parametrize("name", MOBILE)
def test_the_catalogue_travels_inside_the_file(mobile_files, name):
    path = mobile_files / BY_NAME[name].filename
    stored = BY_NAME[name].read_metadata(path)
    assert [look["name"] for look in json.loads(stored["tinybeauty.looks"])] == LOOKS
    assert stored["tinybeauty.look_input"].startswith("look_weights: float32 [1,2]")
    loaded = load_model(path)
    assert loaded.look_names == LOOKS
    face = np.full((1, 3, IMAGE_SIZE, IMAGE_SIZE), 0.5, np.float32)
    assert loaded.runner(face, loaded.even_blend()).shape == face.shape


@pytest.mark.slow  # renders pairs and trains
def test_each_file_declares_its_look_input(mobile_files):
    """What an app sees: a second input of float32 [1, 2], named look_weights where the format names inputs."""
    from ai_edge_litert.interpreter import Interpreter
    from executorch.runtime import Runtime

    interpreter = Interpreter(model_path=str(mobile_files / "tinybeauty.tflite"))
    assert interpreter.get_signature_list()["serving_default"]["inputs"] == ["args_0", "look_weights"]
    looks = next(i for i in interpreter.get_input_details() if "look_weights" in i["name"])
    assert list(looks["shape"]) == [1, 2] and looks["dtype"] == np.float32  # not an int8 input
    meta = Runtime.get().load_program(mobile_files / "tinybeauty.pte").load_method("forward").metadata
    assert meta.num_inputs() == 2 and tuple(meta.input_tensor_meta(1).sizes()) == (1, 2)
    face = np.full((1, 3, IMAGE_SIZE, IMAGE_SIZE), 0.5, np.float32)
    with pytest.raises(RuntimeError):  # the lite interpreter's forward takes the look weights too
        BY_NAME["ptl"].load(mobile_files / "tinybeauty.ptl")(face)


def test_constant_gates_are_the_networks_gates():
    """The exports' form of the look gates (constants, no sigmoid) gives the model's output, exactly."""
    from export.common import ConstantGates, constant_gates

    model = build_model(replace(VARIANTS["nano"], looks=("berry", "smoky", "natural")))
    with torch.no_grad():
        model.residual.look_gates.weight.normal_(0, 0.1)
    face, looks = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE), torch.tensor([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]])
    constant = constant_gates(model)
    assert isinstance(constant.residual.look_gates, ConstantGates)
    with torch.no_grad():
        assert torch.equal(constant(face, looks), model(face, looks))
        assert torch.equal(constant_gates(model.residual)(face, looks), model.residual(face, looks))
    assert constant_gates(build_model("nano")).residual.look_gates is None  # one look: no gates


def test_the_ptl_multiplies_dense_gates_on_one_scale(monkeypatch):
    """The .ptl's int8 graph: every look gate rounded over (0, 1) (scale 1/255, one constant for all), and
    expanded to its output's full shape before the Mul (QNNPACK broadcasts slowly), giving exactly what the
    broadcast Mul gives."""
    from export import ptl_format
    from export.common import ExportInputs

    model = build_model(replace(VARIANTS["nano"], looks=("berry", "smoky", "natural"))).eval()
    with torch.no_grad():
        model.residual.look_gates.weight.normal_(0, 0.1)
    generator = torch.Generator().manual_seed(0)
    faces = torch.rand(6, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    looks = torch.eye(3)[[0, 1, 2, 0, 1, 2]]
    inputs = ExportInputs(example=faces[:1], calibration=faces[:3], val_source=faces[3:], val_target=faces[3:],
                          example_looks=torch.full((1, 3), 1 / 3), calibration_looks=looks[:3], val_looks=looks[3:])
    dense = ptl_format.quantize_residual(model, inputs)
    multiplies = [node for node in dense.graph.nodes if node.target == torch.ops.quantized.mul]
    assert len(multiplies) == 3
    for node in multiplies:
        gate = node.args[1]
        assert (gate.target, gate.kwargs) == ("contiguous", {"memory_format": torch.channels_last})
        assert gate.args[0].target == "expand_as" and gate.args[0].args[1] is node.args[0]
    scales = [float(getattr(dense, node.args[1].target)) for node in dense.graph.nodes
              if node.target == torch.quantize_per_tensor and node.args[0].target in (torch.matmul, operator.matmul)]
    assert scales == pytest.approx([1 / 255] * 3)

    monkeypatch.setattr(ptl_format, "dense_gates", lambda quantized: 0)
    broadcast = ptl_format.quantize_residual(model, inputs)
    with torch.no_grad(), ptl_format.quantized_engine():
        blend = torch.tensor([[0.2, 0.5, 0.3]])
        for face, weights in ((faces[3:4], looks[3:4]), (faces[4:5], looks[4:5]), (faces[5:6], blend)):
            assert torch.equal(dense(face, weights), broadcast(face, weights))


def three_look_inputs(looks: int = 3):
    """A nano network of ``looks`` looks with random gates, and export inputs for it (random faces)."""
    from export.common import ExportInputs

    model = build_model(replace(VARIANTS["nano"], looks=("berry", "smoky", "natural")[:looks])).eval()
    if looks > 1:
        with torch.no_grad():
            model.residual.look_gates.weight.normal_(0, 0.1)
    generator = torch.Generator().manual_seed(0)
    faces = torch.rand(6, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    hot = torch.eye(looks)[[0, 1, 2, 0, 1, 2]] if looks > 1 else None
    inputs = ExportInputs(example=faces[:1], calibration=faces[:3], val_source=faces[3:], val_target=faces[3:],
                          example_looks=None if hot is None else torch.full((1, looks), 1 / looks),
                          calibration_looks=None if hot is None else hot[:3],
                          val_looks=None if hot is None else hot[3:])
    return model, inputs


def test_the_pte_network_is_the_networks_function():
    """The .pte's form of the network (XNNPACK's ops: upsampling by concatenation, the gates as one
    convolution) gives the network's output: the upsampling exactly, the whole to float rounding."""
    from export.pte_format import ConcatUpsample, ConvGates, xnnpack_network

    features = torch.randn(2, 5, 7, 9)
    assert torch.equal(ConcatUpsample()(features), torch.nn.Upsample(scale_factor=2, mode="nearest")(features))
    for looks in (1, 3):
        model, _ = three_look_inputs(looks)
        network = xnnpack_network(model.residual)
        assert isinstance(network.look_gates, ConvGates) == (looks > 1)
        face = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE)
        weights = torch.tensor([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]]) if looks > 1 else None
        with torch.no_grad():
            assert torch.allclose(network(face, weights), model.residual(face, weights), atol=1e-6)


@pytest.mark.parametrize("looks", [1, 3])
def test_the_pte_is_one_xnnpack_partition(looks):
    """Every op of the .pte's network runs in XNNPACK, one partition (nothing left to the portable kernels,
    no partition boundary); a several-look network's gate kernel is rounded on one scale and its gates, sliced
    per output, on (0, 1)."""
    from export import pte_format
    from export.common import ExportMeta

    model, inputs = three_look_inputs(looks)
    meta = ExportMeta(checkpoint="test", checkpoint_sha256="0", git_commit="0", val_psnr_db=0.0,
                      image_size=IMAGE_SIZE)
    graph = pte_format.lowered(model, inputs, meta).exported_program().graph
    targets = [str(node.target) for node in graph.nodes if node.op == "call_function"]
    assert targets.count("executorch_call_delegate") == 1
    assert set(targets) == {"executorch_call_delegate", "<built-in function getitem>"}

    quantized = pte_format.quantize_residual(model, inputs)
    kernels = [node.args[1] for node in quantized.graph.nodes if node.target == torch.ops.aten.conv2d.default]
    gate_kernels = [kernel for kernel in kernels if "per_tensor" in str(kernel.target)]
    assert len(gate_kernels) == (looks > 1) and len(kernels) == 9 + (looks > 1)
    slices = [node for node in quantized.graph.nodes if node.target == torch.ops.aten.slice.Tensor]
    assert len(slices) == (3 if looks > 1 else 0)
    for node in slices:
        (rounding,) = node.users
        assert rounding.args[1] == pytest.approx(1 / 255) and rounding.args[2] == -128
