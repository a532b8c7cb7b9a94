"""The training loop as small functions (one epoch, evaluation, samples, checkpoints) and what its
steps share: the run's context (read only) and the training state they update."""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn
from tqdm import tqdm

from models.atomic import atomic_path, save_figure, write_text
from models.checkpoint import checkpoint_split, load_checkpoint, save_checkpoint, unwrap_model
from models.data import REAL_TEST_SPLIT, faces_as_tensors, load_split, same_face
from models.gates import QUALITY_BAR_DB
from models.metrics import mean_psnr_db, psnr_db
from models.tinybeauty import one_hot_looks
from train.config import CHECKPOINTS
from train.losses import makeup_loss
from train.region_maps import region_maps, region_tensor

if TYPE_CHECKING:
    from models.data import PairCache
    from train.config import TrainConfig
    from train.phases import Phase
    from train.pipeline import Loaders

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"
METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_l1", "train_eyeliner", "val_loss", "val_psnr",
                  "val_psnr_pooled", "baseline_psnr", "images_per_s", "epoch_s"]


def metric_columns(looks: tuple[str, ...]) -> list[str]:
    """The metrics file's columns: with several looks, each look's validation PSNR and baseline too."""
    per_look = [f"{kind}_{name}" for name in looks for kind in ("val_psnr", "baseline_psnr")] if len(looks) > 1 else []
    return METRIC_COLUMNS + per_look


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class RunContext:
    """What every step of a run reads and none changes: the resolved options, where it runs, the
    pairs with their split, the loaders, and the W&B run (None without --wandb)."""

    config: TrainConfig
    device: torch.device
    dist: Distributed
    cache: PairCache
    indices: dict[str, np.ndarray]
    split: dict
    loaders: Loaders
    wandb_run: object | None = None
    looks: list[dict] | None = None  # a --looks run's looks (name, index, swatch), for its checkpoints
    carried: dict = field(default_factory=dict)  # an --add-look run's entries of its source (train/add_look.py)

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    def distribute(self, net: nn.Module) -> nn.Module:
        """``net`` as the loop trains it: DistributedDataParallel under torchrun, else itself."""
        if not self.dist.enabled:
            return net
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(net, device_ids=device_ids)


@dataclass
class Training:
    """What the loop updates: the current phase with the network, optimizer and schedule it set up,
    the best figures so far and the metric rows written so far."""

    model: nn.Module
    state: dict
    phase: Phase | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
    start_epoch: int = 1
    rows: list[dict] = field(default_factory=list)


def setup_distributed() -> Distributed:
    """Join the torchrun process group when launched by torchrun (gloo on CPU, nccl on GPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    info = Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, device: torch.device,
                    loss_weights: dict, epoch: int, show_progress: bool, bf16: bool = False) -> dict:
    """One pass over ``loader``. ``bf16``: the network's forward (and so its backward) under bfloat16
    autocast; the loss, the weights and the optimizer stay float32."""
    model.train()
    totals = {"loss": 0.0, "l1": 0.0, "eyeliner": 0.0}
    seen, start = 0, time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", disable=not show_progress, leave=False)
    for batch in bar:
        source, target, masks = (tensor.to(device) for tensor in batch[:3])
        eye_mask, regions = split_masks(masks)
        # Loss on the unclamped face + residual: the clamp would cut gradients at saturated pixels.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            made_up = model(source, batch_look_weights(model, batch, device), clamp=False, regions=regions)
        parts = makeup_loss(made_up.float(), target, eye_mask, **loss_weights)
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        optimizer.step()
        for key in totals:
            totals[key] += parts[key].item() * len(source)
        seen += len(source)
        bar.set_postfix(loss=f"{parts['loss'].item():.4f}")
    elapsed = time.perf_counter() - start
    metrics = {f"train_{key}": value / max(seen, 1) for key, value in totals.items()}
    metrics["images_per_s"] = seen / max(elapsed, 1e-9)
    return metrics


def split_masks(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch's masks (train/dataset.py) as (eye mask, region maps or None where the data has none)."""
    return masks[:, :1], (masks[:, 1:] if masks.shape[1] > 1 else None)


def batch_look_weights(model: nn.Module, batch, device: torch.device) -> torch.Tensor | None:
    """The look weights of a batch of several looks (its fourth item: look indices, or a blending run's
    weights, train/dataset.py); None for one look."""
    if len(batch) < 4:
        return None
    looks = batch[3]
    return (looks if looks.is_floating_point() else one_hot_looks(looks, unwrap_model(model).config)).to(device)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, loss_weights: dict) -> dict:
    """Validation loss and PSNR (prediction vs target) beside the no-makeup baseline (input vs target).

    PSNR is the mean of per-image PSNR (the paper's convention); ``val_psnr_pooled`` is one MSE
    over every pixel, for comparison. With several looks, each look's PSNR and baseline too
    (``val_psnr_NAME``, ``baseline_psnr_NAME``), and ``val_psnr`` and ``baseline_psnr`` are their
    means over the looks (each look counts the same)."""
    model.eval()
    net = unwrap_model(model)
    predictions, sources, targets, looks, loss_sum, count = [], [], [], [], 0.0, 0
    for batch in loader:
        source, target, masks = (tensor.to(device) for tensor in batch[:3])
        eye_mask, regions = split_masks(masks)
        made_up = net(source, batch_look_weights(net, batch, device), clamp=False, regions=regions)
        loss_sum += makeup_loss(made_up, target, eye_mask, **loss_weights)["loss"].item() * len(source)
        count += len(source)
        predictions.append(made_up.clamp(0, 1).cpu())
        sources.append(source.cpu())
        targets.append(target.cpu())
        looks.extend(batch[3].tolist() if len(batch) > 3 else [])
    prediction, source, target = torch.cat(predictions), torch.cat(sources), torch.cat(targets)
    metrics = {"val_loss": loss_sum / max(count, 1), "val_psnr": mean_psnr_db(prediction, target),
               "val_psnr_pooled": psnr_db(prediction, target), "baseline_psnr": mean_psnr_db(source, target)}
    if not looks:
        return metrics
    return metrics | per_look_psnr(net.config.looks, torch.tensor(looks), prediction, source, target)


def per_look_psnr(names: tuple[str, ...], looks: torch.Tensor, prediction: torch.Tensor, source: torch.Tensor,
                  target: torch.Tensor) -> dict:
    """Each look's mean PSNR and no-makeup baseline, and their means over the looks that have pairs."""
    figures = {}
    for index, name in enumerate(names):
        chosen = looks == index
        if chosen.any():
            figures[f"val_psnr_{name}"] = mean_psnr_db(prediction[chosen], target[chosen])
            figures[f"baseline_psnr_{name}"] = mean_psnr_db(source[chosen], target[chosen])
    present = [name for name in names if f"val_psnr_{name}" in figures]
    figures["val_psnr"] = sum(figures[f"val_psnr_{name}"] for name in present) / len(present)
    figures["baseline_psnr"] = sum(figures[f"baseline_psnr_{name}"] for name in present) / len(present)
    return figures


# Validation PSNR this far above the no-makeup baseline: the network has started to add makeup.
LEARNING_MARGIN_DB = 0.1


def step_plateau(scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau, metrics: dict) -> bool:
    """ReduceLROnPlateau on the validation loss, once the network has left the no-makeup baseline.

    An L1-trained residual net can start by adding nothing for tens of epochs (seed 1 of the CPU
    preset: 31 epochs); counting those as a plateau cut its lr from 5e-4 to 6.25e-5 before it
    learned anything, and it ended 3.3 dB below seed 0. Returns whether the scheduler stepped."""
    if not metrics["val_psnr"] > metrics["baseline_psnr"] + LEARNING_MARGIN_DB:
        return False
    scheduler.step(metrics["val_loss"])
    return True


def to_uint8_image(batch: torch.Tensor) -> np.ndarray:
    """N x 3 x H x W in [0, 1] -> H x (N*W) x 3 uint8, images side by side."""
    array = (batch.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return np.concatenate(list(array), axis=1)


def write_png(array: np.ndarray, path: Path) -> Path:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path


@torch.no_grad()
def sample_grid(model: nn.Module, source: torch.Tensor, target: torch.Tensor,
                look_weights: torch.Tensor | None = None, regions: torch.Tensor | None = None) -> np.ndarray:
    """Rows of: input | prediction | target | residual x4 (grey = no change); ``look_weights``: each row's look,
    ``regions``: each row's region maps (a region-input network's)."""
    net = unwrap_model(model).eval()
    made_up = net(source, look_weights, regions=regions)
    residual = (made_up - source) * 4 + 0.5
    rows = [to_uint8_image(torch.stack(images)) for images in zip(source, made_up, target, residual, strict=True)]
    return np.concatenate(rows, axis=0)


def held_out_grid(model: nn.Module, source: torch.Tensor, target: torch.Tensor,
                  look_weights: torch.Tensor | None = None, regions: torch.Tensor | None = None) -> np.ndarray:
    """:func:`sample_grid` with the target's residual x4 as a fifth column, so a look that lands in the wrong
    place, or too faintly, shows beside the one it should have drawn."""
    wanted = to_uint8_image((target - source) * 4 + 0.5)
    return np.concatenate([sample_grid(model, source, target, look_weights, regions),
                           np.concatenate(np.split(wanted, len(source), axis=1), axis=0)], axis=1)


def plot_curves(metrics_path: Path, out_path: Path) -> Path | None:
    """Loss, PSNR (with the no-makeup baseline) and training speed per epoch, as a PNG; the speed panel
    shows a stall (subnormal floats cost ~10x: train/numerics.py)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    if not rows:
        return None
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_psnr, ax_speed) = plt.subplots(1, 3, figsize=(15, 3.8))
    ax_loss.plot(epochs, [float(r["train_loss"]) for r in rows], label="train")
    ax_loss.plot(epochs, [float(r["val_loss"]) for r in rows], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="L1 + 0.5 eyeliner", yscale="log", title="loss")
    ax_loss.legend()
    ax_psnr.plot(epochs, [float(r["val_psnr"]) for r in rows], label="model")
    ax_psnr.plot(epochs, [float(r["baseline_psnr"]) for r in rows], "--", label="no makeup (input)")
    ax_psnr.axhline(QUALITY_BAR_DB, color="grey", lw=0.8, ls=":", label=f"{QUALITY_BAR_DB:g} dB bar")
    ax_psnr.set(xlabel="epoch", ylabel="dB", title="validation PSNR (mean of per-image PSNR)")
    ax_psnr.legend()
    ax_speed.plot(epochs, [float(r["images_per_s"]) for r in rows])
    ax_speed.set(xlabel="epoch", ylabel="images/s", ylim=(0, None), title="training speed (all processes)")
    fig.tight_layout()
    return save_figure(fig, out_path)


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_metrics(path: Path, rows: list[dict], columns: list[str] = METRIC_COLUMNS) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_json(payload: dict, path: Path) -> Path:
    return write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def checkpoint_payload(run: RunContext, training: Training, epoch: int) -> dict:
    """What every checkpoint holds: the phase's own entries (``phase``, the plain ``model`` and its
    ``model_config``, and what the phase needs to resume: train/phases.py), then the optimizer and
    schedule, the figures so far, the resolved options and the data split."""
    state = training.state
    return training.phase.state(training.model) | {
        "optimizer": training.optimizer.state_dict(),
        "scheduler": training.scheduler.state_dict(),
        "epoch": epoch,
        "best_val_psnr": float(state["best_val_psnr"]),
        "best_val_loss": float(state["best_val_loss"]),
        "val_psnr": float(state["val_psnr"]),
        "baseline_psnr": float(state["baseline_psnr"]),
        "train_config": run.config.record(),
        "split": run.split,
    } | ({"looks": run.looks} if run.looks else {}) | run.carried


def save_epoch_checkpoints(out: Path, payload: dict, improved: dict[str, bool]) -> None:
    """Best-so-far files first, then `last` (the resume point); each write is atomic."""
    for key, better in improved.items():
        if better:
            save_checkpoint(out / CHECKPOINTS[key], payload)
    save_checkpoint(out / CHECKPOINTS["last"], payload)


SCORED_SPLITS = ("test", "val", REAL_TEST_SPLIT)
HELD_OUT_FILE = "held_out.json"
HELD_OUT_FACES = 4  # faces per held-out split in held_out_PART.png


def score_checkpoint(path: Path) -> dict:
    """PSNR of a checkpoint in PyTorch on its recorded test, validation and real-photo test splits,
    each with the no-makeup baseline (input vs target). Reported only: nothing is chosen by it.
    Beside the checkpoint, ``held_out_PART.png`` (``held_out_LOOK_PART.png`` per look) shows
    :data:`HELD_OUT_FACES` faces of each held-out split (spread over it) as :func:`held_out_grid` rows.
    A checkpoint of several looks is scored per look, each through its own head: ``{"looks": {name:
    figures}}``, with each look's name, index and swatch."""
    model, checkpoint = load_checkpoint(path)
    split = checkpoint_split(checkpoint, path)
    figures = {"epoch": int(checkpoint["epoch"])}
    faces = HeldOutFaces(model)
    if "looks" not in split:
        return figures | score_split(model, split, None, path.parent / "held_out", faces)
    looks = {look["name"]: look for look in checkpoint.get("looks", [])}
    per_look = {}
    for index, (name, record) in enumerate(split["looks"].items()):
        weights = one_hot_looks(torch.tensor([index]), model.config)
        scores = score_split(model, record, weights, path.parent / f"held_out_{name}", faces)
        per_look[name] = looks.get(name, {"name": name, "index": index}) | scores
    return figures | {"looks": per_look} | score_blends(model, split["looks"], path.parent / "held_out_blends", faces)


class HeldOutFaces:
    """A checkpoint's recorded faces of a part and the region maps a region-input network reads of them (None for
    one that reads none), each part of each look read once for every score that uses it."""

    def __init__(self, model: nn.Module):
        self.model, self.read = model, {}

    def __call__(self, record: dict, part: str) -> tuple[PairCache, torch.Tensor | None]:
        key = (id(record), part)  # the records live in the checkpoint's split while it is scored
        if key not in self.read:
            cache = load_split(record, part)
            self.read[key] = cache, scored_regions(self.model, cache, Path(record["data"]))
        return self.read[key]


def score_blends(model: nn.Module, records: dict[str, dict], pictures: Path, faces: HeldOutFaces) -> dict:
    """Each two looks' even blend (weights 0.5, 0.5) on the held-out faces both looks hold (the same name and
    pixels), against the even blend of their two targets: ``{"blends": {"A+B": {PART_psnr_db, PART_baseline_db,
    PART_two_runs_psnr_db, PART_pairs}}}``, where two runs is the mean of the two looks' own outputs (what an app
    that ran the file once per look would show). ``pictures``_PART.png: one face, a row per blend
    (:func:`held_out_grid`). Empty where no two looks share a face."""
    names = list(records)
    blends: dict[str, dict] = {}
    for part in ("test", REAL_TEST_SPLIT):
        read = {name: faces(records[name], part) for name in names if records[name].get(part)}
        own: dict[str, torch.Tensor] = {}  # each look's own output on its faces, made once for all its blends
        rows = []
        for first, second in ((a, b) for i, a in enumerate(names) for b in names[i + 1:]):
            if first not in read or second not in read:
                continue
            (cache, maps), other = read[first], read[second][0]
            pairs = shared_faces(cache, other)
            if not pairs:
                continue
            mine, theirs = (np.array(side) for side in zip(*pairs, strict=True))
            source, target = faces_as_tensors(cache, mine)
            target = (target + faces_as_tensors(other, theirs)[1]) / 2
            regions = None if maps is None else maps[mine]
            weights = torch.zeros(len(source), len(names))
            weights[:, [names.index(first), names.index(second)]] = 0.5
            for name in (first, second):  # the second look's own faces at theirs: the same pixels as mine
                if name not in own:
                    own[name] = own_output(model, *read[name], names.index(name))
            with torch.no_grad():
                blended = model(source, weights, regions=regions)
            blends.setdefault(f"{first}+{second}", {}).update({
                f"{part}_psnr_db": mean_psnr_db(blended, target),
                f"{part}_baseline_db": mean_psnr_db(source, target),
                f"{part}_two_runs_psnr_db": mean_psnr_db((own[first][mine] + own[second][theirs]) / 2, target),
                f"{part}_pairs": len(source)})
            rows.append((source[:1], target[:1], weights[:1], None if regions is None else regions[:1]))
        if rows:
            columns = [torch.cat(column) if column[0] is not None else None for column in zip(*rows, strict=True)]
            write_png(held_out_grid(model, *columns), pictures.with_name(f"{pictures.name}_{part}.png"))
    return {"blends": blends} if blends else {}


@torch.no_grad()
def own_output(model: nn.Module, cache: PairCache, regions: torch.Tensor | None, look: int) -> torch.Tensor:
    """The network's output on every face of ``cache`` with only look ``look`` on."""
    source = faces_as_tensors(cache)[0]
    return model(source, one_hot_looks(torch.full((len(source),), look), model.config), regions=regions)


def shared_faces(first: PairCache, second: PairCache) -> list[tuple[int, int]]:
    """(i, j): pair i of ``first`` and pair j of ``second`` hold the same face (:func:`models.data.same_face`)."""
    where = {name: j for j, name in enumerate(second.names)}
    return [(i, where[name]) for i, name in enumerate(first.names)
            if name in where and same_face(first, i, second, where[name])]


def score_split(model: nn.Module, split: dict, look_weights: torch.Tensor | None, pictures: Path,
                faces: HeldOutFaces) -> dict:
    """``{part}_psnr_db`` and ``{part}_baseline_db`` of each scored part ``split`` records pairs of; the
    held-out parts' faces drawn into ``pictures``_PART.png. A region-input network is given each face's region
    maps (train/region_maps.py)."""
    figures = {}
    for part in SCORED_SPLITS:
        if not split.get(part):
            continue
        cache, regions = faces(split, part)
        source, target = faces_as_tensors(cache)
        weights = None if look_weights is None else look_weights.expand(len(source), -1)
        with torch.no_grad():
            figures[f"{part}_psnr_db"] = mean_psnr_db(model(source, weights, regions=regions), target)
        figures[f"{part}_baseline_db"] = mean_psnr_db(source, target)
        if part != "val":
            shown = np.unique(np.linspace(0, len(source) - 1, HELD_OUT_FACES).round().astype(int))
            looks_and_regions = [None if tensor is None else tensor[shown] for tensor in (weights, regions)]
            write_png(held_out_grid(model, source[shown], target[shown], *looks_and_regions),
                      pictures.with_name(f"{pictures.name}_{part}.png"))
    return figures


def scored_regions(model: nn.Module, cache: PairCache, root: Path) -> torch.Tensor | None:
    """The region maps of ``cache``'s faces a region-input network reads (None for one that reads none)."""
    names = model.config.region_inputs
    return None if not names else region_tensor(region_maps(cache, root, names))
