"""Training phases: stretches of a run, each with its own form of the network, optimizer and schedule.

A run follows a schedule, a list of ``(phase, epochs)`` (:func:`schedule`): float training, then
quantization-aware fine-tuning (train/qat.py) for the last ``--qat-epochs``. A phase

- ``enter``: makes the run's network, optimizer and schedule its own at its first epoch;
- ``state``: what a checkpoint holds of it: ``phase`` (its name), the plain ``model`` with its
  ``model_config`` (what export reads, whatever the phase), and what the phase needs to go on;
- ``resume``: continues from a checkpoint written inside it, exactly as if never interrupted.

A new phase: a :class:`Phase` subclass with a unique ``name``, listed in :func:`schedule`.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import nn

from models.checkpoint import CheckpointError, unwrap_model
from models.tinybeauty import merge, one_hot_looks
from train.qat import QuantAware
from train.region_maps import region_tensor

if TYPE_CHECKING:
    from pathlib import Path

    from train.config import TrainConfig
    from train.trainer import RunContext, Training

log = logging.getLogger(__name__)

QAT_CALIBRATION_FACES = 32  # training faces that set the activation ranges the phase starts from
QAT_LR_SCALE = 0.1  # the phase fine-tunes: a tenth of the lr the float schedule reached


class Phase(ABC):
    """One stretch of a run's schedule. It holds no training state: that lives in :class:`Training`."""

    name: ClassVar[str]  # what checkpoints record in ``phase``
    bf16: ClassVar[bool]  # whether --precision bf16 applies to its forward and backward

    @abstractmethod
    def enter(self, run: RunContext, training: Training) -> None:
        """Set ``training``'s model, optimizer and schedule for this phase's first epoch."""

    @abstractmethod
    def resume(self, run: RunContext, training: Training, checkpoint: dict) -> None:
        """As :meth:`enter`, continuing from ``checkpoint`` (written inside this phase), whose
        weights ``training.model`` already holds."""

    @abstractmethod
    def state(self, model: nn.Module) -> dict:
        """The checkpoint entries of this phase's ``model``: ``phase``, ``model``, ``model_config``, own ones."""


def plateau(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=config.plateau_factor,
                                                      patience=config.plateau_patience)


def plain_weights(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


class FloatPhase(Phase):
    """The network as built (with --reparam, its branches) in float: Adam at --lr, ReduceLROnPlateau."""

    name = "float"
    bf16 = True

    def enter(self, run: RunContext, training: Training) -> None:
        net = unwrap_model(training.model)
        training.optimizer = torch.optim.Adam(net.parameters(), lr=run.config.lr)
        training.scheduler = plateau(training.optimizer, run.config)
        training.model = run.distribute(net)

    def resume(self, run: RunContext, training: Training, checkpoint: dict) -> None:
        self.enter(run, training)
        training.optimizer.load_state_dict(checkpoint["optimizer"])
        training.scheduler.load_state_dict(checkpoint["scheduler"])

    def state(self, model: nn.Module) -> dict:
        net = unwrap_model(model)
        return {"phase": self.name, "model": plain_weights(net), "model_config": net.config.to_dict()}


class QuantAwarePhase(Phase):
    """Quantization-aware fine-tuning (train/qat.py): the merged network inside :class:`QuantAware`,
    a new Adam at a tenth of the lr the float schedule reached over what the phase trains. The
    best-so-far figures restart, so the best checkpoints hold this phase's weights (what the int8
    files are made from). Its checkpoints add ``palette_bits``, ``skip_factors`` (the skip
    rescaling it trained with, which the export then uses) and ``qat_state`` (tables and ranges)."""

    name = "qat"
    bf16 = False

    def enter(self, run: RunContext, training: Training) -> None:
        lr = training.optimizer.param_groups[0]["lr"] if training.optimizer else run.config.lr
        self._start(run, training, self._wrap(run, training, None), lr * QAT_LR_SCALE)
        training.state.update(best_val_psnr=-math.inf, best_val_loss=math.inf)
        bits = run.config.palette_bits
        log.info("quantization-aware fine-tuning for the last %d epochs (int8 rounding%s); validation PSNR is now "
                 "the int8 estimate and the best checkpoints restart", run.config.qat_epochs,
                 f", {bits}-bit palettes" if bits else "")

    def resume(self, run: RunContext, training: Training, checkpoint: dict) -> None:
        wrapper = self._wrap(run, training, checkpoint["skip_factors"])
        wrapper.load_state_dict(checkpoint["qat_state"])
        self._start(run, training, wrapper, run.config.lr * QAT_LR_SCALE)  # the loaded state sets the lr
        training.optimizer.load_state_dict(checkpoint["optimizer"])
        training.scheduler.load_state_dict(checkpoint["scheduler"])

    def state(self, model: nn.Module) -> dict:
        wrapper = unwrap_model(model)
        plain = wrapper.exported_model()
        return {"phase": self.name, "palette_bits": wrapper.palette_bits, "skip_factors": dict(wrapper.skip_factors),
                "qat_state": plain_weights(wrapper), "model": plain_weights(plain),
                "model_config": plain.config.to_dict()}

    @staticmethod
    def _wrap(run: RunContext, training: Training, factors: dict[str, float] | None) -> QuantAware:
        net = merge(unwrap_model(training.model))  # --reparam's branches first: int8 rounds the shipped convs
        chosen = calibration_indices(run.indices["train"], run.cache.looks)
        faces = run.cache.sources[chosen]
        calibration = torch.from_numpy(faces).permute(0, 3, 1, 2).float().div(255).to(run.device)
        looks = None if run.cache.looks is None else \
            one_hot_looks(torch.from_numpy(run.cache.looks[chosen]), net.config).to(run.device)
        maps = run.cache.region_maps
        regions = None if maps is None else region_tensor(maps[chosen]).to(run.device)
        return QuantAware(net, run.config.palette_bits, calibration, factors, looks, regions).to(run.device)

    @staticmethod
    def _start(run: RunContext, training: Training, wrapper: QuantAware, lr: float) -> None:
        training.optimizer = torch.optim.Adam([p for p in wrapper.parameters() if p.requires_grad], lr=lr)
        training.scheduler = plateau(training.optimizer, run.config)
        training.model = run.distribute(wrapper)


def calibration_indices(train: np.ndarray, looks: np.ndarray | None) -> np.ndarray:
    """The training pairs that set the fine-tuning's first activation ranges: the first ones, or as many
    of each look's first ones with several looks (each look's head sets the head's range)."""
    if looks is None:
        return train[:QAT_CALIBRATION_FACES]
    per_look = -(-QAT_CALIBRATION_FACES // (int(looks.max()) + 1))
    return np.concatenate([train[looks[train] == look][:per_look] for look in np.unique(looks[train])])


def schedule(config: TrainConfig) -> list[tuple[Phase, int]]:
    """The run's phases in order, each with its number of epochs."""
    return [(FloatPhase(), config.epochs - config.qat_epochs), (QuantAwarePhase(), config.qat_epochs)]


def phase_of_epoch(plan: list[tuple[Phase, int]], epoch: int) -> Phase:
    """The phase that trains ``epoch`` (1-based)."""
    for phase, epochs in plan:
        if epoch <= epochs:
            return phase
        epoch -= epochs
    raise ValueError(f"epoch {epoch + sum(epochs for _, epochs in plan)} is past the schedule ({describe(plan)})")


def describe(plan: list[tuple[Phase, int]]) -> str:
    """``float epochs 1-8, qat epochs 9-10``"""
    spans, first = [], 1
    for phase, epochs in plan:
        if epochs:
            last = first + epochs - 1
            spans.append(f"{phase.name} epochs {first}-{last}" if last > first else f"{phase.name} epoch {first}")
        first += epochs
    return ", ".join(spans)


def enter(phase: Phase, run: RunContext, training: Training) -> None:
    phase.enter(run, training)
    training.phase = phase


def resumed_phase(plan: list[tuple[Phase, int]], checkpoint: dict, path: Path, epochs: int) -> Phase:
    """The phase that wrote ``checkpoint``, to continue. Refuses one the schedule has none of, or
    has only after the epoch the resume starts at: an earlier phase cannot follow a later one."""
    names = [phase.name for phase, _ in plan]
    name = checkpoint.get("phase", "float")
    if name not in names:
        raise CheckpointError(f"{path} was written in a training phase {name!r} this version does not have "
                              f"(it has {', '.join(names)}); resume it with the version that wrote it, or start "
                              "a new run with --overwrite or another --out")
    start = checkpoint["epoch"] + 1
    current = phase_of_epoch(plan, start).name if start <= epochs else name  # past the end: nothing to train
    if names.index(current) < names.index(name):
        raise CheckpointError(f"{path} was written in the {name} phase (epoch {start - 1}), but with --epochs "
                              f"{epochs} epoch {start} falls in the {current} phase ({describe(plan)}); "
                              f"give --epochs so that epoch {start} is in the {name} phase or a later one")
    return plan[names.index(name)][0]


def resume(phase: Phase, run: RunContext, training: Training, checkpoint: dict) -> None:
    """Continue ``phase`` (:func:`resumed_phase`) from ``checkpoint``; the loop enters later ones."""
    phase.resume(run, training, checkpoint)
    training.phase = phase
