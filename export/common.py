"""What every exporter shares: the I/O contract, provenance, inputs, and the parity check.

Running a file: the runner type is ``export/runtime.py``, loading any file by its suffix ``export/loading.py``."""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from models.atomic import process_running
from models.int8 import STEM_INPUT_RANGE, output_of
from models.metrics import psnr_db
from models.tinybeauty import LookGates, QuantizedOutput, ResidualUNet, TinyBeauty, mixed_gates

M = TypeVar("M", TinyBeauty, ResidualUNet)

INPUT_NAME = "face"
LOOKS_INPUT_NAME = "look_weights"  # several looks only: float32 [1, L], one weight per look (models/look_choice.py)
# Region-input networks only (the default network): float32 [1, K, H, W] in [0, 1] (NHWC [1, H, W, K] in a .tflite),
# one soft map per name of tinybeauty.region_inputs, drawn from the face mesh (train/region_maps.py)
REGIONS_INPUT_NAME = "regions"
REGION_INPUTS_KEY = "tinybeauty.region_inputs"  # the metadata entry naming the maps: a JSON list
OUTPUT_NAME = "made_up"


def package_version() -> str:
    """The installed tinybeauty package's version (pyproject.toml is its one source)."""
    try:
        return importlib.metadata.version("tinybeauty")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


class FloatResidualAdd(torch.nn.Module):
    """``clamp(face + residual(face), 0, 1)`` around a quantized residual network: the add and the
    clamp stay in float, so untouched pixels keep full precision. Its inputs are the face and, for several
    looks, the look weights; a network that reads region maps takes them too (:func:`float_residual_add`
    picks the class whose inputs are the file's)."""

    def __init__(self, residual: torch.nn.Module):
        super().__init__()
        self.residual = residual

    def forward(self, face: torch.Tensor, look_weights: torch.Tensor | None = None) -> torch.Tensor:
        return self.made_up(face, look_weights, None)

    def made_up(self, face: torch.Tensor, look_weights: torch.Tensor | None,
                regions: torch.Tensor | None) -> torch.Tensor:
        """The residual network reads the face, with the region maps behind its colours where it takes them
        (``TinyBeauty.network_input``: one tensor, which the int8 files quantize with one scale, face and maps
        both in [0, 1]); the residual is added to the face alone."""
        features = face if regions is None else self.network_input(face, regions)
        residual = self.residual(features) if look_weights is None else self.residual(features, look_weights)
        return torch.clamp(face + residual, 0.0, 1.0)

    @staticmethod
    def network_input(face: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """What the stem reads: the face with the maps behind its colours (``TinyBeauty.network_input``)."""
        return torch.cat([face, regions], dim=1)


class FloatResidualAddRegions(FloatResidualAdd):
    """:class:`FloatResidualAdd` of a one-look network that reads region maps: inputs (face, regions)."""

    def forward(self, face: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        return self.made_up(face, None, regions)


class FloatResidualAddLooksRegions(FloatResidualAdd):
    """:class:`FloatResidualAdd` of a network of several looks that reads region maps: inputs (face,
    look_weights, regions)."""

    def forward(self, face: torch.Tensor, look_weights: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        return self.made_up(face, look_weights, regions)


def float_residual_add(residual: torch.nn.Module, inputs: ExportInputs) -> FloatResidualAdd:
    """The float add and clamp around ``residual`` whose positional inputs are the file's: (face), (face,
    look_weights), (face, regions) or (face, look_weights, regions), as :attr:`ExportInputs.example_args`.
    A network without region inputs gets :class:`FloatResidualAdd` itself, so its files stay as they were."""
    if inputs.example_regions is None:
        return FloatResidualAdd(residual)
    return (FloatResidualAddRegions if inputs.example_looks is None else FloatResidualAddLooksRegions)(residual)


def region_names(metadata: dict) -> tuple[str, ...]:
    """The region maps a file's provenance says it reads (``tinybeauty.region_inputs``); () for the face alone.
    What a format's ``load`` checks the maps it is given against (export.loading reads the same entry)."""
    text = metadata.get(REGION_INPUTS_KEY)
    return tuple(json.loads(text)) if text else ()


def checked_regions(path: Path, names: tuple[str, ...], faces: np.ndarray,
                    regions: np.ndarray | None) -> np.ndarray | None:
    """``regions`` as a runner of the file at ``path`` (reading the maps ``names``) feeds them: float32 NCHW,
    contiguous; None for a file that reads none. A ValueError naming the file and the maps when a file that
    reads maps is run without them (or with maps of another shape), or one that reads none is given some."""
    if not names:
        if regions is not None:
            raise ValueError(f"{path} takes the face alone, no region maps (its network was trained with "
                             "--no-region-inputs): pass regions=None")
        return None
    expected = [len(faces), len(names), *faces.shape[2:]]
    if regions is None or list(regions.shape) != expected:
        found = "none" if regions is None else list(regions.shape)
        raise ValueError(f"{path} reads {len(names)} region maps ({', '.join(names)}) beside the face: give "
                         f"regions float32 NCHW {expected} in [0, 1] (train/region_maps.py draws them from the face "
                         f"mesh; all 0 says no region is known), got {found}")
    return np.ascontiguousarray(regions, dtype=np.float32)


class ConstantGates(nn.Module):
    """A several-look network's :class:`LookGates` as the files hold them: each gated output's gates, a constant
    [L, C] (training's sigmoid of a parameter is not an op the files run). The same module path and values."""

    def __init__(self, gates: LookGates):
        super().__init__()
        self.channels = dict(gates.channels)
        for name, table in gates.tables().items():
            self.register_buffer(name, table.detach().clone())

    def forward(self, look_weights: torch.Tensor) -> dict[str, torch.Tensor]:
        return mixed_gates(look_weights, {name: getattr(self, name) for name in self.channels}, self.channels)


def constant_gates(model: M) -> M:
    """A copy of ``model`` (a TinyBeauty or its residual network) whose look gates (several looks; one look has
    none) are :class:`ConstantGates`."""
    copied = copy.deepcopy(model)
    residual = copied.residual if isinstance(copied, TinyBeauty) else copied
    if residual.look_gates is not None:
        residual.look_gates = ConstantGates(residual.look_gates)
    return copied


@dataclass
class ExportInputs:
    """Tensors the exporters and their checks need: faces N x 3 x H x W float in [0, 1] and, for a
    network of several looks, each face's look weights N x L (one-hot: the look of its pair), for a network
    that reads region maps (the default network), each face's own maps N x K x H x W in [0, 1]."""

    example: torch.Tensor  # 1 x 3 x H x W, fixes the exported input shape
    calibration: torch.Tensor  # training faces for int8 activation ranges
    val_source: torch.Tensor  # validation faces for parity checks
    val_target: torch.Tensor
    # The 8-bit range of each quantized output as a quantization-aware checkpoint trained it
    # (models/int8.py); None: every int8 format calibrates its own on ``calibration``.
    activation_ranges: dict[str, tuple[float, float]] | None = None
    # Several looks: the look weights of example (an even blend: every look's gates are live), of each
    # calibration face and of each check face (one-hot, the look of its pair). None for one look.
    example_looks: torch.Tensor | None = None
    calibration_looks: torch.Tensor | None = None
    val_looks: torch.Tensor | None = None
    # Region-input networks: the maps of example (a real face's, so every path of the graph is live), of each
    # calibration face and of each check face (train/region_maps.py). None for a network that reads none.
    example_regions: torch.Tensor | None = None
    calibration_regions: torch.Tensor | None = None
    val_regions: torch.Tensor | None = None

    @property
    def image_size(self) -> int:
        return int(self.example.shape[-1])

    @property
    def input_names(self) -> list[str]:
        """The file's inputs in order: face, then look_weights (several looks), then regions (region maps)."""
        return ([INPUT_NAME] + [LOOKS_INPUT_NAME] * (self.example_looks is not None)
                + [REGIONS_INPUT_NAME] * (self.example_regions is not None))

    @property
    def example_args(self) -> tuple[torch.Tensor, ...]:
        """What a converter traces the file's network with: (face,), (face, look_weights), (face, regions) or
        (face, look_weights, regions), in the order of :attr:`input_names`."""
        return tuple(arg for arg in (self.example, self.example_looks, self.example_regions) if arg is not None)

    def calibration_args(self) -> list[tuple[torch.Tensor, ...]]:
        """Each calibration face as the file's inputs, batch 1, in the order of :attr:`example_args`."""
        columns = [tensor for tensor in (self.calibration, self.calibration_looks, self.calibration_regions)
                   if tensor is not None]
        return [tuple(column[index][None] for column in columns) for index in range(len(self.calibration))]

    def residual_args(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The residual network's inputs for the file's ``args``: the face (with its maps behind it, for a
        region-input network: what FloatResidualAdd hands it), then the look weights (several looks)."""
        if self.example_regions is None:
            return args
        return (torch.cat([args[0], args[-1]], dim=1), *args[1:-1])

    @property
    def residual_example_args(self) -> tuple[torch.Tensor, ...]:
        """What the residual network alone (quantized by the .ptl and .pte) is traced with."""
        return self.residual_args(self.example_args)

    def residual_calibration_args(self) -> list[tuple[torch.Tensor, ...]]:
        """Each calibration face as the residual network's inputs, batch 1."""
        return [self.residual_args(args) for args in self.calibration_args()]


def _observed_output(node: torch.fx.Node, outputs: tuple[QuantizedOutput, ...]) -> str | None:
    """The quantized output (of ``outputs``) whose values an observed graph node holds: the node's
    own module (``nn_module_stack`` in a PT2E graph, the called module's name in an FX one), else,
    for ops that only move values (max-pool, upsample, concatenation, pixel shuffle), the output of
    the node they read (a concatenation's inputs share one range, so its first is enough)."""
    while isinstance(node, torch.fx.Node) and node.op != "placeholder":
        stack = node.meta.get("nn_module_stack")
        path = list(stack.values())[-1][0] if stack else (node.target if node.op == "call_module" else "")
        found = output_of(str(path), outputs)
        if found:
            return found
        if not node.args:
            return None
        node = node.args[0][0] if isinstance(node.args[0], (list, tuple)) else node.args[0]
    return None


def pin_activation_ranges(prepared: torch.fx.GraphModule, ranges: dict[str, tuple[float, float]],
                          outputs: tuple[QuantizedOutput, ...]) -> int:
    """Replace each calibrated activation observer of a prepared FX or PT2E graph of the network whose
    quantized outputs are ``outputs`` (models/tinybeauty.py: ``quantized_outputs``) with a min/max
    observer that has seen exactly its output's trained range (same dtype, scheme and integer
    range), so the converted graph rounds as the fine-tuning did. The input face's observer keeps its
    calibration (a region-input network's stem input: :func:`pin_stem_input`). Returns how many observers
    were pinned; refuses a graph where none could be."""
    pinned = 0
    for node in prepared.graph.nodes:
        if node.op != "call_module" or "activation_post_process" not in str(node.target):
            continue
        observer = prepared.get_submodule(node.target)
        weight = isinstance(node.args[0], torch.fx.Node) and node.args[0].op == "get_attr"
        if weight or getattr(observer, "qscheme", None) not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            continue  # weight observers keep their exact weight ranges
        name = _observed_output(node.args[0], outputs)
        if name is None:
            continue
        setattr(prepared, node.target, fixed_observer(observer, ranges[name]))
        pinned += 1
    if not pinned:
        raise RuntimeError("no activation observer of the quantized graph could be matched to a trained range")
    return pinned


def fixed_observer(observer: torch.nn.Module, span: tuple[float, float],
                    qscheme: torch.qscheme | None = None) -> torch.nn.Module:
    """A min/max observer like ``observer`` (same dtype and integer range; its scheme unless ``qscheme`` is given)
    that has seen exactly ``span``."""
    minmax = importlib.import_module(type(observer).__module__).MinMaxObserver  # torch.ao or torchao
    fixed = minmax(dtype=observer.dtype, qscheme=qscheme or observer.qscheme, quant_min=observer.quant_min,
                   quant_max=observer.quant_max, eps=float(observer.eps))
    fixed(torch.tensor(span, dtype=torch.float32))
    return fixed


def pin_stem_input(prepared: torch.fx.GraphModule, stem_input: torch.fx.Node) -> int:
    """Round the stem's input of a region-input network, the face and its maps in one tensor (``stem_input``:
    the graph's node of it), over exactly :data:`STEM_INPUT_RANGE`: one scale for both, 1/255, so an 8-bit
    face's pixels are exact and nothing in [0, 1] clips (a calibrated range stops short of the brightest
    pixel), as the quantization-aware phase rounds it. Returns how many observers were pinned; refuses a
    graph where none reads ``stem_input``."""
    pinned = 0
    for node in list(stem_input.users):
        if node.op == "call_module" and "activation_post_process" in str(node.target):
            setattr(prepared, node.target, fixed_observer(prepared.get_submodule(node.target), STEM_INPUT_RANGE))
            pinned += 1
    if not pinned:
        raise RuntimeError(f"no activation observer reads the stem's input ({stem_input.name}) in the quantized graph")
    return pinned


def pin_look_gates(prepared: torch.fx.GraphModule) -> int:
    """Round every look gate vector of a several-look network (computed from the look weights alone: the weights
    times a constant table, a gate is in (0, 1)) over exactly :data:`STEM_INPUT_RANGE`, (0, 1): scale 1/255 and
    zero point 0 for every gated output, where calibration gives each its own, a little under 1/255 (a 0.2% step
    either way on a gated feature). One scale for all: the ``.ptl`` holds one constant record for the gates
    (shared with the stem input's, pinned to the same range in a region-input network), not one per gate (~150
    bytes a record); the ``.pte`` slices its one gate vector per output, which XNNPACK takes in int8 only where
    the slice's input and output share their scale. Returns how many observers were pinned (none: a one-look
    graph)."""
    gates = look_gate_nodes(prepared.graph)
    pinned = 0
    for node in prepared.graph.nodes:
        if node.op != "call_module" or "activation_post_process" not in str(node.target):
            continue
        source = node.args[0]
        if isinstance(source, torch.fx.Node) and source.op == "call_function" and source in gates:
            setattr(prepared, node.target, fixed_observer(prepared.get_submodule(node.target), STEM_INPUT_RANGE))
            pinned += 1
    return pinned


def look_gate_nodes(graph: torch.fx.Graph) -> set[torch.fx.Node]:
    """The nodes of a traced network computed from its look weights input and constants alone: the look gates and
    the steps on the way to them (empty for a one-look network). A constant is a ``get_attr`` or a node of
    constants alone (a kernel's observer)."""
    found: set[torch.fx.Node] = set()
    constant: set[torch.fx.Node] = set()
    for node in graph.nodes:  # in order: a node's inputs come before it
        inputs = node.all_input_nodes
        if node.op == "get_attr" or (inputs and all(arg in constant for arg in inputs)):
            constant.add(node)
        elif (node.op == "placeholder" and node.name == LOOKS_INPUT_NAME) or (
                any(arg in found for arg in inputs) and all(arg in found or arg in constant for arg in inputs)):
            found.add(node)
    return found


@dataclass
class ExportMeta:
    """Provenance written into every artifact that has room for metadata."""

    checkpoint: str
    checkpoint_sha256: str
    git_commit: str
    val_psnr_db: float
    image_size: int
    version: str = field(default_factory=package_version)
    author: str = "TinyBeauty developers"
    license: str = "MIT"
    description: str = ("TinyBeauty makeup transfer: adds learned makeup to an aligned face, one look or "
                        "any blend of the looks it holds (output = clamp(input + residual, 0, 1)).")
    layout: str = "NCHW"  # how the file takes its face: NCHW, NHWC (tensors) or image (Core ML)
    extra: dict = field(default_factory=dict)
    # The catalogue, in the order of the look input: [{"name", "index", "swatch_hex"}]; one entry for a
    # one-look file (which takes no look input).
    looks: list[dict] = field(default_factory=list)
    # The region maps the network reads beside the face, in the order of its regions input (empty: the face
    # alone, and the file takes no regions input).
    region_inputs: list[str] = field(default_factory=list)

    @property
    def looks_input(self) -> bool:
        return len(self.looks) > 1

    def regions_shape(self) -> list[int]:
        """The regions input's shape in the file: NHWC [1, S, S, K] for a channels-last file, else NCHW
        [1, K, S, S] (a Core ML file takes them as a float32 MultiArray of that shape beside its image)."""
        size, count = self.image_size, len(self.region_inputs)
        return [1, size, size, count] if self.layout == "NHWC" else [1, count, size, size]

    def regions_spec(self) -> str:
        """The regions input in words (the maps' names are ``tinybeauty.region_inputs``, in channel order)."""
        kind = "MultiArray float32" if self.layout == "image" else "float32"
        layout = "NHWC" if self.layout == "NHWC" else "NCHW"
        return (f"{REGIONS_INPUT_NAME}: {kind} {layout} [{','.join(map(str, self.regions_shape()))}] in [0,1], one "
                f"soft map per name of tinybeauty.region_inputs ({', '.join(self.region_inputs)}) from the face mesh; "
                "all 0 where no face is found")

    def looks_spec(self) -> str:
        """The look input in words (the looks' names are ``tinybeauty.looks``, in the order of its weights)."""
        return (f"{LOOKS_INPUT_NAME}: float32 [1,{len(self.looks)}] in [0,1], one weight per look of tinybeauty.looks; "
                "one-hot picks a look, weights adding up to 1 blend looks")

    def io_spec(self, name: str) -> str:
        size = self.image_size
        if self.layout == "image":
            return f"{name}: image RGB {size}x{size} (8-bit per channel)"
        shape = [1, 3, size, size] if self.layout == "NCHW" else [1, size, size, 3]
        return f"{name}: float32 RGB {self.layout} [{','.join(map(str, shape))}] in [0,1]"

    def as_strings(self) -> dict[str, str]:
        """Flat string metadata (what ONNX, Core ML and TorchScript extra files can hold)."""
        return {
            "tinybeauty.version": self.version,
            "tinybeauty.checkpoint": self.checkpoint,
            "tinybeauty.checkpoint_sha256": self.checkpoint_sha256,
            "tinybeauty.git_commit": self.git_commit,
            "tinybeauty.val_psnr_db": f"{self.val_psnr_db:.3f}",
            "tinybeauty.image_size": str(self.image_size),
            "tinybeauty.input": self.io_spec(INPUT_NAME),
            "tinybeauty.output": self.io_spec(OUTPUT_NAME),
            **({"tinybeauty.looks": json.dumps(self.looks)} if self.looks else {}),
            **({"tinybeauty.look_input": self.looks_spec()} if self.looks_input else {}),
            **({REGION_INPUTS_KEY: json.dumps(self.region_inputs),
                "tinybeauty.regions_input": self.regions_spec()} if self.region_inputs else {}),
            **{f"tinybeauty.{k}": str(v) for k, v in self.extra.items()},
        }


def git_commit() -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                                timeout=5, cwd=Path(__file__).resolve().parent)
        sha = result.stdout.strip()
        if result.returncode != 0 or not sha:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def parity(made_up: np.ndarray | torch.Tensor, reference: torch.Tensor, target: torch.Tensor) -> dict:
    """PSNR of an artifact's output against the fp32 PyTorch output and against ground truth."""
    made_up = torch.as_tensor(np.asarray(made_up, dtype=np.float32))
    return {"psnr_vs_pytorch_db": psnr_db(made_up, reference), "psnr_vs_truth_db": psnr_db(made_up, target)}


def staging_dir(out_dir: Path) -> Path:
    """The folder this process builds and checks a new artifact set in, beside ``out_dir`` (not
    inside it, so that the whole set can replace ``out_dir`` in one step). Named for the process:
    two exports into the same folder at once never write into each other's set."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.staging.{os.getpid()}"


def fresh_staging_dir(out_dir: Path) -> Path:
    """This run's staging folder, new and empty. First removes the ones earlier exports into
    ``out_dir`` left (a failed export keeps its rejected set there for inspection until the next
    export); those of exports still running on this machine are theirs and stay."""
    out_dir = Path(out_dir)
    for folder in out_dir.parent.glob(f".{out_dir.name}.staging*"):
        pid = folder.name.rpartition(".")[2]
        if pid.isdigit() and int(pid) != os.getpid() and process_running(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
    staging = staging_dir(out_dir)
    staging.mkdir(parents=True)
    return staging
