"""The training itself, run by ``python -m train`` once its command line is parsed (train/__main__.py
says what it does): the run opened or resumed, the data, the network and the loaders, then each epoch
trained, validated and recorded, and the held-out splits scored at the end.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from models.atomic import (
    DiskFullError,
    OutputFolderError,
    lock_folder,
    remove_leftovers,
    unlock_folder,
)
from models.checkpoint import (
    CheckpointError,
    checkpoint_split,
    read_checkpoint,
    rebuild_model,
    save_checkpoint,
)
from models.data import REAL_TEST_SPLIT, DataError, PairCache, concat_caches, split_record
from models.tinybeauty import VARIANTS, TinyBeautyConfig, build_model, describe, one_hot_looks
from models.variants import DEFAULT_LOOK
from train import phases, trainer
from train.add_look import AddedLook, open_source
from train.builtin import builtin_split, share_face_caches, write_builtin
from train.config import ABSENT_FROM_RECORD, DEFAULT_SYNTHETIC_DIR, RESUME_MAY_CHANGE, TrainConfig
from train.dataset import PairDataset, load_pairs, load_split_for_training
from train.look_options import builtin_folder
from train.multilook import LookSource, join_looks, looks_metadata, looks_split, split_counts
from train.numerics import flush_denormals
from train.region_maps import REGION_INPUTS, run_region_maps
from train.split import split_indices

log = logging.getLogger("train")


def resumed_config(given: TrainConfig, given_names: set[str], stored: dict, path: Path) -> TrainConfig:
    """The stored run's config with only the options a resume may change taken from the command
    line. A flag that contradicts the stored value is a CheckpointError naming it."""
    stored = ABSENT_FROM_RECORD | stored
    same = lambda name, a, b: (Path(a).resolve() == Path(b).resolve()) if name == "data" and a and b else a == b  # noqa: E731
    conflicts = [f"--{name.replace('_', '-')} {getattr(given, name)} (the run has {stored.get(name)})"
                 for name in sorted(given_names - RESUME_MAY_CHANGE)
                 if name in stored and not same(name, getattr(given, name), stored[name])]
    if conflicts:
        raise CheckpointError(f"--resume continues {path} with its own configuration, but the command line "
                              f"contradicts it: {'; '.join(conflicts)}. Drop these flags, or start a new run with "
                              "--overwrite or another --out")
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in stored.items() if k in known}
    values |= {name: getattr(given, name) for name in given_names & RESUME_MAY_CHANGE}
    return TrainConfig(**(values | {"resume": True, "overwrite": False, "out": given.out}))


def resolve_device(name: str, dist_info: trainer.Distributed) -> torch.device:
    if name == "auto":
        name = f"cuda:{dist_info.local_rank}" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def start_wandb(config: TrainConfig):
    try:
        import wandb
    except ImportError as error:
        raise SystemExit("--wandb needs the wandb package: pip install 'tinybeauty[wandb]' "
                         "(or drop --wandb)") from error
    if not os.environ.get("WANDB_API_KEY") and not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"  # never needs a network unless the user set it up
    return wandb.init(project=config.wandb_project, config=config.record(), dir=config.out)


@flush_denormals()  # the whole run, entered before any tensor work (train/numerics.py)
def run_command(config: TrainConfig, given_names: set[str]) -> int:
    """The training a parsed command line asks for (train/__main__.py): exit 0, or 2 with one message
    naming the file at fault."""
    dist_info = trainer.setup_distributed()
    logging.basicConfig(level=logging.INFO if dist_info.is_main else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return run(config, given_names, dist_info)
    except (DataError, CheckpointError, DiskFullError, OutputFolderError) as error:  # each names its file
        log.error("%s", error)
        return 2
    finally:
        unlock_folder(config.out)  # held from the start of the outputs (start_outputs)
        if dist_info.enabled:
            torch.distributed.destroy_process_group()


def look_sources(config: TrainConfig) -> list[LookSource]:
    """Where the run's pairs are: each look's folder (one folder for a one-look run)."""
    if config.look_data:
        return [LookSource(name, Path(folder)) for name, folder in config.look_data.items()]
    if config.data:
        return [LookSource((config.looks or [DEFAULT_LOOK])[0], Path(config.data))]
    return [LookSource(name, builtin_folder(DEFAULT_SYNTHETIC_DIR, name), builtin=True)
            for name in config.looks or [DEFAULT_LOOK]]


def prepare_data(config: TrainConfig, dist_info: trainer.Distributed) -> tuple[PairCache, dict[str, np.ndarray], dict]:
    """Decode the pairs, split them by seed, and build the split record every checkpoint carries
    (with several looks: each look's on its own, then joined)."""
    sources = look_sources(config)
    render_builtin(config, sources, dist_info)
    looks = [load_look(config, source, [earlier.data for earlier in sources[:index]])
             for index, source in enumerate(sources)]
    if len(sources) == 1:
        return looks[0]
    records = {source.name: record for source, (_, _, record) in zip(sources, looks, strict=True)}
    return *join_looks([(cache, indices) for cache, indices, _ in looks]), looks_split(records)


def render_builtin(config: TrainConfig, sources: list[LookSource], dist_info: trainer.Distributed) -> None:
    """Render the built-in looks' pairs that are not there yet (the first process renders, the others wait)."""
    if not sources[0].builtin:
        return
    if dist_info.is_main:
        for source in sources:
            log.info("no --data: using the built-in set (%d cartoon pairs and real portraits) in %s",
                     config.synthetic_pairs, source.data)
        write_builtin({source.name: source.data for source in sources}, config.synthetic_pairs, config.image_size,
                      config.held_out_person)
    if dist_info.enabled:
        torch.distributed.barrier()


def load_look(config: TrainConfig, source: LookSource, earlier: list[Path]
              ) -> tuple[PairCache, dict[str, np.ndarray], dict]:
    """One look's pairs decoded, split by seed (the built-in set as train/builtin.py splits it), and its record;
    a built-in look first takes the face caches of the ``earlier`` looks' folders (the same faces)."""
    if source.builtin:
        share_face_caches(source.data, earlier)
    cache = load_pairs(source.data, config.image_size, eye_mask=config.eye_mask)
    fractions = (config.val_fraction, config.test_fraction, config.seed)
    indices = (builtin_split(cache.names, *fractions, config.held_out_person) if source.builtin
               else split_indices(len(cache), *fractions))
    record = split_record(source.data, cache, indices, config.image_size, config.val_fraction, config.test_fraction,
                          config.seed)
    return cache, indices, record


def resume_data(split: dict) -> tuple[PairCache, dict[str, np.ndarray]]:
    """The recorded training and validation pairs with their eye masks, content hashes checked
    (training never reads the test split); each look's, joined, for a run of several looks."""
    if "looks" in split:
        return join_looks([resume_data(record) for record in split["looks"].values()])
    names = ("train", "val")
    parts = [load_split_for_training(split, part) for part in names]
    merged, offsets = concat_caches(parts, split.get("eye_mask", "band"))
    return merged, {name: np.arange(offsets[i], offsets[i + 1]) for i, name in enumerate(names)}


def open_run(config: TrainConfig, given_names: set[str]) -> tuple[TrainConfig, dict | None]:
    """The run's config and, with --resume, the checkpoint it continues. Refuses to start over an
    earlier run unless --overwrite."""
    out = Path(config.out)
    last_path = out / trainer.CHECKPOINTS["last"]
    checkpoint = None
    if config.resume:
        checkpoint = read_checkpoint(last_path)
        if checkpoint.get("train_config", {}).get("add_look"):
            raise CheckpointError(f"{last_path} is an --add-look run, which --resume does not continue; run the "
                                  "--add-look command again with --overwrite (a few minutes)")
        config = resumed_config(config, given_names, checkpoint.get("train_config", {}), last_path)
    elif last_path.exists() and not config.overwrite:
        raise CheckpointError(f"{out} already holds a run ({trainer.CHECKPOINTS['last']}); pass --resume to continue "
                              "it, --overwrite to replace it, or another --out")
    return config, checkpoint


def load_data(config: TrainConfig, checkpoint: dict | None, dist_info: trainer.Distributed,
              added: AddedLook | None = None) -> tuple[PairCache, dict[str, np.ndarray], dict]:
    """The pairs, their split indices and the split record: a resumed run's recorded ones, an added
    look's own (with every look's record), else new."""
    if checkpoint:
        split = checkpoint_split(checkpoint, Path(config.out) / trainer.CHECKPOINTS["last"])
        cache, indices = resume_data(split)
    elif added:
        source = added.look_source()
        render_builtin(config, [source], dist_info)
        cache, indices, record = load_look(config, source, added.earlier_folders())
        cache, split = added.as_new_look(cache), added.split(record)
    else:
        cache, indices, split = prepare_data(config, dist_info)
    if config.region_inputs:  # a new run's and a resumed run's alike, placed on the decoded faces
        cache.region_maps = run_region_maps(cache, split)
    counts = split_counts(split)
    log.info("%d train, %d validation, %d test pairs, %d real-photo test pairs (seed %d)%s", counts["train"],
             counts["val"], counts["test"], counts[REAL_TEST_SPLIT], config.seed,
             f", over {len(split['looks'])} looks" if "looks" in split else "")
    return cache, indices, split


def network_config(config: TrainConfig) -> TinyBeautyConfig:
    """The network a new run builds: its variant, holding the run's looks (the variant's one look without), and
    reading the region maps beside the face unless --no-region-inputs."""
    variant = replace(VARIANTS[config.variant], region_inputs=REGION_INPUTS if config.region_inputs else ())
    return replace(variant, looks=tuple(config.looks)) if config.looks else variant


def build_network(config: TrainConfig, checkpoint: dict | None, device: torch.device) -> torch.nn.Module:
    """A new network (its initial weights drawn from the seeded generator), or a resumed run's,
    rebuilt from its checkpoint's own model_config and weights."""
    if checkpoint:
        model = rebuild_model(checkpoint, Path(config.out) / trainer.CHECKPOINTS["last"])
    else:
        model = build_model(network_config(config), reparam=config.reparam)
    model = model.to(device)
    log.info("%s", describe(model))
    return model


def start_training(run: trainer.RunContext, network: torch.nn.Module, checkpoint: dict | None,
                   resumed: phases.Phase | None) -> trainer.Training:
    """What the loop updates, before its first epoch; a resumed run's figures, rows and phase."""
    state = {"best_val_psnr": -math.inf, "best_val_loss": math.inf, "val_psnr": math.nan, "baseline_psnr": math.nan}
    training = trainer.Training(network, state)
    if checkpoint:
        state.update({k: checkpoint[k] for k in state})
        training.start_epoch = checkpoint["epoch"] + 1
        training.rows = [r for r in trainer.read_metrics(run.out / trainer.METRICS_FILE)
                         if int(r["epoch"]) < training.start_epoch]
        phases.resume(resumed, run, training, checkpoint)
        log.info("resuming from %s at epoch %d (%s phase)", run.out / trainer.CHECKPOINTS["last"],
                 training.start_epoch, resumed.name)
    return training


@dataclass
class Loaders:
    train_set: PairDataset
    sampler: torch.utils.data.Sampler
    shuffle_generator: torch.Generator
    train: torch.utils.data.DataLoader
    val: torch.utils.data.DataLoader
    sample_source: torch.Tensor  # the first four validation pairs (of each look), for the sample grids
    sample_target: torch.Tensor
    sample_looks: torch.Tensor | None  # their looks' one-hot weights (None for one look)
    sample_regions: torch.Tensor | None  # their region maps (None with --no-region-inputs)

    def set_epoch(self, epoch: int, seed: int, distributed: bool) -> None:
        """Every random stream of an epoch (shuffle order, crops, flips) is seeded by (seed, epoch), so
        a resumed run continues exactly as the uninterrupted run would have."""
        self.train_set.set_epoch(epoch)
        if distributed:
            self.sampler.set_epoch(epoch)
        else:
            self.shuffle_generator.manual_seed(seed * 1_000_003 + epoch)


def make_loaders(config: TrainConfig, cache: PairCache, indices: dict[str, np.ndarray],
                 dist_info: trainer.Distributed) -> Loaders:
    train_set = PairDataset(cache, indices["train"], train=True, crop=config.crop,
                            seed=config.seed * 1000 + dist_info.rank, augment=config.augment,
                            blend=config.blend_share)
    val_set = PairDataset(cache, indices["val"], train=False)
    shuffle_generator = torch.Generator()
    sampler = (torch.utils.data.DistributedSampler(train_set, seed=config.seed) if dist_info.enabled
               else torch.utils.data.RandomSampler(train_set, generator=shuffle_generator))
    per_process_batch = max(1, config.batch_size // dist_info.world_size)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=per_process_batch, sampler=sampler,
                                               drop_last=len(train_set) >= per_process_batch)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=16)
    samples = sample_pairs(config, cache, val_set)
    return Loaders(train_set, sampler, shuffle_generator, train_loader, val_loader, *samples)


def sample_pairs(config: TrainConfig, cache: PairCache, val_set: PairDataset
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The sample grids' rows: the first four validation pairs, or the first of each look with several; with
    their looks' weights and region maps (None where the run has none)."""
    if cache.looks is None:
        source, target, masks = next(iter(torch.utils.data.DataLoader(val_set, batch_size=4)))
        return source, target, None, trainer.split_masks(masks)[1]
    looks = cache.looks[val_set.indices]
    items = [val_set[int(np.flatnonzero(looks == look)[0])] for look in np.unique(looks)]
    weights = one_hot_looks(torch.stack([item[3] for item in items]), network_config(config))
    regions = trainer.split_masks(torch.stack([item[2] for item in items]))[1]
    return torch.stack([item[0] for item in items]), torch.stack([item[1] for item in items]), weights, regions


def start_outputs(config: TrainConfig, device: torch.device, dist_info: trainer.Distributed):
    """The output folder, held by this run (a second run into it is refused), with the resolved
    config.json; and the W&B run (None without --wandb)."""
    if dist_info.is_main:
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        lock_folder(out)  # a second run into this --out is refused here, before it touches a file of this one
        if not (config.resume or config.overwrite) and (out / trainer.CHECKPOINTS["last"]).exists():
            raise CheckpointError(f"{out} holds a run written since this one started; pass --overwrite to replace "
                                  "it, or another --out")
        for leftover in remove_leftovers(out):  # temp files of a killed earlier run
            log.info("removed %s (left by an interrupted write)", leftover)
        resolved = config.record() | {"world_size": dist_info.world_size, "device": str(device)}
        trainer.write_json(resolved, out / "config.json")
        log.info("training %d epochs (preset %s), batch %d, lr %g, %s, on %s x%d", config.epochs, config.preset,
                 config.batch_size, config.lr, f"{config.crop}px crops" if config.crop else "whole images",
                 device, dist_info.world_size)
    return start_wandb(config) if config.wandb and dist_info.is_main else None


def train_and_evaluate(run: trainer.RunContext, training: trainer.Training, epoch: int) -> tuple[dict, dict[str, bool]]:
    """One epoch of training, then validation and the schedule's step: (metrics, which bests improved)."""
    config, dist_info = run.config, run.dist
    run.loaders.set_epoch(epoch, config.seed, dist_info.enabled)
    loss_weights = {"l1_weight": config.l1_weight, "eyeliner_weight": config.eyeliner_weight,
                    "pixel_loss": config.pixel_loss, "charbonnier_eps": config.charbonnier_eps}
    epoch_start = time.perf_counter()
    bf16 = config.precision == "bf16" and training.phase.bf16
    metrics = trainer.train_one_epoch(training.model, run.loaders.train, training.optimizer, run.device, loss_weights,
                                      epoch, show_progress=dist_info.is_main and sys.stderr.isatty(), bf16=bf16)
    metrics |= trainer.evaluate(training.model, run.loaders.val, run.device, loss_weights)
    metrics["images_per_s"] *= dist_info.world_size
    trainer.step_plateau(training.scheduler, metrics)
    metrics |= {"epoch": epoch, "lr": training.optimizer.param_groups[0]["lr"],
                "epoch_s": time.perf_counter() - epoch_start}
    state = training.state
    improved = {"best_loss": metrics["val_loss"] < state["best_val_loss"],
                "best_psnr": metrics["val_psnr"] > state["best_val_psnr"]}
    state["best_val_loss"] = min(state["best_val_loss"], metrics["val_loss"])
    state["best_val_psnr"] = max(state["best_val_psnr"], metrics["val_psnr"])
    state["val_psnr"], state["baseline_psnr"] = metrics["val_psnr"], metrics["baseline_psnr"]
    return metrics, improved


def record_epoch(run: trainer.RunContext, training: trainer.Training, metrics: dict, improved: dict[str, bool]
                 ) -> None:
    """The epoch's metrics row, checkpoints, sample grid and curves, log line and W&B step."""
    config, out, epoch = run.config, run.out, metrics["epoch"]
    metrics_path = out / trainer.METRICS_FILE
    # Metrics first, checkpoints second: a kill in between leaves a row that --resume drops
    # and redoes, never a checkpoint whose epoch has no row.
    training.rows.append(metrics)
    trainer.write_metrics(metrics_path, training.rows, trainer.metric_columns(tuple(config.looks or ())))
    trainer.save_epoch_checkpoints(out, trainer.checkpoint_payload(run, training, epoch), improved)
    if epoch % config.sample_every == 0 or epoch == config.epochs:
        on_device = lambda tensor: None if tensor is None else tensor.to(run.device)  # noqa: E731
        loaders = run.loaders
        grid = trainer.sample_grid(training.model, loaders.sample_source.to(run.device),
                                   loaders.sample_target.to(run.device), on_device(loaders.sample_looks),
                                   on_device(loaders.sample_regions))
        trainer.write_png(grid, out / f"samples_epoch_{epoch:03d}.png")
        trainer.plot_curves(metrics_path, out / "training_curves.png")
    log.info("epoch %3d/%d  loss %.4f  val PSNR %.2f dB (no makeup %.2f dB, best %.2f)  lr %.1e  %.0f img/s  %.1fs",
             epoch, config.epochs, metrics["train_loss"], metrics["val_psnr"], metrics["baseline_psnr"],
             training.state["best_val_psnr"], metrics["lr"], metrics["images_per_s"], metrics["epoch_s"])
    scored = [name for name in config.looks or () if f"val_psnr_{name}" in metrics]  # several looks only
    if scored:
        log.info("          per look: %s", ", ".join(f"{name} {metrics[f'val_psnr_{name}']:.2f} dB (no makeup "
                                                      f"{metrics[f'baseline_psnr_{name}']:.2f})" for name in scored))
    if run.wandb_run is not None:
        run.wandb_run.log(metrics, step=epoch)


def finish_run(run: trainer.RunContext, training: trainer.Training, run_start: float) -> None:
    """The final checkpoint (a copy of the last epoch's) and the summary line."""
    last = run.out / trainer.CHECKPOINTS["last"]
    if last.exists():
        save_checkpoint(run.out / trainer.CHECKPOINTS["final"], read_checkpoint(last))
    log.info("done in %.0fs: best validation PSNR %.2f dB (no-makeup baseline %.2f dB); checkpoints in %s",
             time.perf_counter() - run_start, training.state["best_val_psnr"], training.state["baseline_psnr"],
             run.out)
    best = run.out / trainer.CHECKPOINTS["best_psnr"]
    if best.exists():  # the held-out splits, scored once at the end: reported, never used to choose
        scores = trainer.score_checkpoint(best)
        trainer.write_json(scores, run.out / trainer.HELD_OUT_FILE)
        for name, figures in scores.get("looks", {None: scores}).items():
            for part in ("test", REAL_TEST_SPLIT):
                if f"{part}_psnr_db" in figures:
                    log.info("%s%s split: PSNR %.2f dB (no-makeup baseline %.2f dB), best-PSNR checkpoint",
                             f"{name}, " if name else "", part, figures[f"{part}_psnr_db"],
                             figures[f"{part}_baseline_db"])
        for name, figures in scores.get("blends", {}).items():
            log.info("even blend %s, %s", name, ", ".join(
                f"{part} split: PSNR {figures[f'{part}_psnr_db']:.2f} dB (two runs "
                f"{figures[f'{part}_two_runs_psnr_db']:.2f}, no makeup {figures[f'{part}_baseline_db']:.2f})"
                for part in ("test", REAL_TEST_SPLIT) if f"{part}_psnr_db" in figures))
    if run.wandb_run is not None:
        run.wandb_run.finish()


def run(config: TrainConfig, given_names: set[str], dist_info: trainer.Distributed) -> int:
    config, checkpoint = open_run(config, given_names)
    added = open_source(config, given_names) if config.add_look else None
    config = added.config if added else config
    plan = phases.schedule(config)
    last_path = Path(config.out) / trainer.CHECKPOINTS["last"]
    resumed = phases.resumed_phase(plan, checkpoint, last_path, config.epochs) if checkpoint else None
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device, dist_info)
    # The seed fixes the initial weights; the order of the steps below fixes every later draw.
    torch.manual_seed(config.seed)
    # Before the data: a checkpoint that does not fit stops here.
    network = added.network(device) if added else build_network(config, checkpoint, device)
    cache, indices, split = load_data(config, checkpoint, dist_info, added)
    loaders = make_loaders(config, cache, indices, dist_info)
    wandb_run = start_outputs(config, device, dist_info)
    looks = (added.looks(cache, indices["train"]) if added
             else looks_metadata(config.looks, cache, indices["train"]) if config.looks else None)
    context = trainer.RunContext(config, device, dist_info, cache, indices, split, loaders, wandb_run, looks,
                                 added.carried() if added else {})
    training = start_training(context, network, checkpoint, resumed)
    run_start = time.perf_counter()
    for epoch in range(training.start_epoch, config.epochs + 1):
        phase = phases.phase_of_epoch(plan, epoch)
        if phase is not training.phase:
            phases.enter(phase, context, training)
        metrics, improved = train_and_evaluate(context, training, epoch)
        if dist_info.is_main:
            record_epoch(context, training, metrics, improved)
    if dist_info.is_main:
        finish_run(context, training, run_start)
    return 0
