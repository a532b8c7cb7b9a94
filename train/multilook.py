"""Several looks in one run: which looks, where each one's pairs are, and each one's figures.

A run of several looks (``--looks A,B`` on the built-in data, ``--data NAME=DIR`` repeated, or ``--data
PARENT`` whose subfolders are the looks' pair folders: train/look_options.py) trains one network whose
decoder each look gates (a row of gates per look: models/tinybeauty.py's LookGates). Each look's pairs are
decoded and split on their own (the built-in looks are drawn on the same faces, so every look holds out the
same faces), then joined into one cache in which
each pair carries its look's index: a batch mixes looks, and each sample's loss is taken through its
own look (one-hot weights). The checkpoint records the split per look (``{"looks": {name: record}}``)
and the looks' names and swatch colours; validation, the epoch log and ``held_out.json`` give each
look's PSNR beside its own no-makeup baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.data import RECORDED_SPLITS, SPLIT_FORMAT, PairCache, concat_caches
from train.looks import LOOKS

SWATCH_SHARE = 0.01  # a look's measured swatch: the made-up colour of the pixels it changes most (this share)


@dataclass(frozen=True)
class LookSource:
    """One look of a run: its name and the folder of its pairs."""

    name: str
    data: Path
    builtin: bool = False  # the built-in renderers' pairs (split as train/builtin.py splits them)


def join_looks(parts: list[tuple[PairCache, dict[str, np.ndarray]]]) -> tuple[PairCache, dict[str, np.ndarray]]:
    """Each look's cache and split indices -> one cache (``looks``: each pair's look index) and split
    indices into it."""
    caches = [cache for cache, _ in parts]
    joined, offsets = concat_caches(
        caches, caches[0].eye_mask, np.concatenate([np.full(len(cache), look, np.int64)
                                                    for look, cache in enumerate(caches)]))
    names = sorted({name for _, indices in parts for name in indices})
    indices = {name: np.concatenate([np.asarray(part.get(name, ()), dtype=np.int64) + offsets[look]
                                     for look, (_, part) in enumerate(parts)]) for name in names}
    return joined, indices


def looks_split(records: dict[str, dict]) -> dict:
    """The split record of a several-look run: each look's own record (models.data.split_record)."""
    return {"format": SPLIT_FORMAT, "looks": records}


def split_counts(split: dict) -> dict[str, int]:
    """Pairs per recorded part, over every look of ``split``."""
    records = split["looks"].values() if "looks" in split else [split]
    return {part: sum(len(record.get(part, ())) for record in records) for part in RECORDED_SPLITS}


def swatch_hex(name: str, cache: PairCache, indices: np.ndarray) -> str:
    """The catalogue's swatch of a built-in look; for a look of one's own, measured from its training
    pairs: the mean made-up colour of the pixels the look changes most (the top ``SWATCH_SHARE``)."""
    if name in LOOKS:
        return LOOKS[name].swatch_hex()
    source, target = cache.sources[indices].astype(np.float32), cache.targets[indices].astype(np.float32)
    change = np.abs(target - source).sum(axis=-1)
    strongest = change >= np.quantile(change, 1 - SWATCH_SHARE)
    colour = target[strongest].mean(axis=0)
    return "#" + "".join(f"{int(round(channel)):02x}" for channel in colour)


def looks_metadata(names: list[str], cache: PairCache, train: np.ndarray) -> list[dict]:
    """What a checkpoint says of its looks, in the order of the network's look input: name, index, swatch."""
    looks = cache.looks if cache.looks is not None else np.zeros(len(cache), np.int64)  # one named look
    return [{"name": name, "index": look, "swatch_hex": swatch_hex(name, cache, train[looks[train] == look])}
            for look, name in enumerate(names)]
