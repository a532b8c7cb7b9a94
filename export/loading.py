"""Opening any model file by its suffix: a checkpoint, or an exported file through its row of
the formats table (``export/formats.py``), run once on a plain face and said what size of face
it takes. What the benchmark, ``apply`` and the manifest check share.

The runner contract every format's ``load`` meets (:data:`Runner`, :class:`RuntimeUnavailable`)
is ``export/runtime.py``; this module sits above the table, which sits above the format modules,
so the imports run one way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.formats import FORMATS, ExportFormat
from export.runtime import ModelFileError, Runner, RuntimeUnavailable, pytorch_runner
from models.checkpoint import catalogue, load_checkpoint

CHECKPOINT_SUFFIXES = {".pt", ".pth"}
# The face size of a file that records none (an early export, or a checkpoint without a split):
# the paper's, and every shipped file's unless exported otherwise.
DEFAULT_IMAGE_SIZE = 256


@dataclass(frozen=True)
class LoadedModel:
    runner: Runner
    runtime: str  # what runs it, in words
    image_size: int  # the square face size the file takes (a checkpoint: the size it was trained at)
    # The looks it holds, in the order of its look input: [{"name", "index", "swatch_hex"}]. Several: the
    # runner takes look_weights (models/look_choice.py); one: none.
    looks: tuple[dict, ...] = ({"name": "the file's look", "index": 0, "swatch_hex": None},)
    # The face's region maps it reads beside the face, in the order of its regions input (train/region_maps.py:
    # drawn from the face mesh by faces/region_weights.py's region_masks); empty: it takes the face alone.
    region_inputs: tuple[str, ...] = ()

    @property
    def look_names(self) -> list[str]:
        return [look["name"] for look in self.looks]

    def runner_for(self, look_weights: np.ndarray | None) -> Runner:
        """A runner of ``(faces, regions=None)`` that puts on the looks ``look_weights`` [1, L] chooses
        (models/look_choice.py); the plain runner for None (a one-look file)."""
        if look_weights is None:
            return self.runner
        return lambda faces, **regions: self.runner(faces, np.repeat(look_weights, len(faces), axis=0), **regions)

    def empty_regions(self, count: int = 1) -> np.ndarray | None:
        """Region maps that say no region is known (all 0, what training gives a face the mesh missed), for a
        file that reads them; None for one that does not."""
        if not self.region_inputs:
            return None
        return np.zeros((count, len(self.region_inputs), self.image_size, self.image_size), np.float32)

    def even_blend(self) -> np.ndarray | None:
        """Every look at an even share (None for one look): a valid look input where any will do."""
        count = len(self.looks)
        return None if count == 1 else np.full((1, count), 1 / count, np.float32)


def format_for(path: Path) -> ExportFormat:
    """The export format of a file, by its suffix (the int8 file wins over the fp32 reference)."""
    for fmt in FORMATS:
        if fmt.shipped and Path(fmt.filename).suffix == path.suffix:
            return fmt
    known = sorted({Path(f.filename).suffix for f in FORMATS} | CHECKPOINT_SUFFIXES)
    raise RuntimeUnavailable(f"{path}: unknown model type {path.suffix!r}; use one of {', '.join(known)}")


def recorded_size(metadata: dict) -> int | None:
    """The face size a file's provenance records: ``tinybeauty.image_size``, or in files exported
    before it, the input spec (``float32 RGB NCHW [1,3,256,256] ...``, ``image RGB 256x256``)."""
    if metadata.get("tinybeauty.image_size"):
        return int(metadata["tinybeauty.image_size"])
    spec = metadata.get("tinybeauty.input", "")
    found = re.search(r"\[1,3,(\d+),\d+\]|\[1,(\d+),\d+,3\]|(\d+)x\d+", spec)
    return int(next(group for group in found.groups() if group)) if found else None


def recorded_looks(metadata: dict) -> tuple[dict, ...] | None:
    """The catalogue a file's provenance records (``tinybeauty.looks``); None in files exported before it."""
    text = metadata.get("tinybeauty.looks")
    return tuple(json.loads(text)) if text else None


def recorded_region_inputs(metadata: dict) -> tuple[str, ...]:
    """The region maps a file reads beside the face (``tinybeauty.region_inputs``, a JSON list); none recorded:
    the face alone."""
    text = metadata.get("tinybeauty.region_inputs")
    return tuple(json.loads(text)) if text else ()


def checkpoint_size(checkpoint: dict) -> int:
    """The face size a checkpoint was trained at (its split's; each look's, for several)."""
    split = checkpoint.get("split") or {}
    split = next(iter(split["looks"].values())) if "looks" in split else split
    return int(split.get("image_size") or DEFAULT_IMAGE_SIZE)


def _first_line(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _check_runs(path: Path, loaded: LoadedModel) -> None:
    """One face through the file: a network of another shape (a classifier, another input size)
    is refused here, naming the file, not on the user's first photo."""
    size = loaded.image_size
    face = np.full((1, 3, size, size), 0.5, np.float32)
    looks, regions = loaded.even_blend(), loaded.empty_regions()
    try:
        made_up = np.asarray(loaded.runner(face, *([] if looks is None else [looks]),
                                           **({} if regions is None else {"regions": regions})))
    except Exception as error:  # each runtime raises its own types for a wrong input
        raise ModelFileError(f"{path} does not run as a TinyBeauty model on a 1x3x{size}x{size} face "
                             f"({_first_line(error)}); pass a file exported by `make export`") from error
    if made_up.shape != face.shape:
        raise ModelFileError(f"{path} returns {list(made_up.shape)} for a 1x3x{size}x{size} face, not a face of the "
                             "same shape; it is not a TinyBeauty model: pass a file exported by `make export`")


def load_model(path: Path, threads: int | None = None) -> LoadedModel:
    """A checkpoint or any exported file, loaded and run once on a plain face.

    Raises FileNotFoundError, RuntimeUnavailable (cannot run here), CheckpointError or
    ModelFileError, each naming the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; export first (`make export`) or pass an existing file")
    if path.suffix in CHECKPOINT_SUFFIXES:
        model, checkpoint = load_checkpoint(path)
        loaded = LoadedModel(pytorch_runner(model, threads), "PyTorch eager fp32", checkpoint_size(checkpoint),
                             tuple(catalogue(model, checkpoint)), tuple(model.config.region_inputs))
    else:
        fmt = format_for(path)
        try:
            runner = fmt.load(path, threads)
            metadata = fmt.read_metadata(path)
            size, looks = recorded_size(metadata), recorded_looks(metadata)
            region_inputs = recorded_region_inputs(metadata)
        except RuntimeUnavailable:
            raise
        except Exception as error:  # each runtime has its own error types for a damaged file
            raise ModelFileError(f"{path} could not be loaded by {fmt.runtime} ({_first_line(error)}); re-export "
                                 "it (`make export`) or pass another model file") from error
        loaded = LoadedModel(runner, fmt.runtime, size or DEFAULT_IMAGE_SIZE, looks or LoadedModel.looks,
                             region_inputs)
    _check_runs(path, loaded)
    return loaded
