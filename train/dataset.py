"""The pairs decoded once into a uint8 cache with their eye masks, and the Dataset training reads.

Images are decoded once (``models/data.py``: the reading every stage shares), resized to
``image_size`` and kept as uint8, each pair with a content hash, beside the eye mask the
eyeliner loss weights by (``train/eye_masks.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.data import DataError, Pair, PairCache, same_face, split_pairs
from train.augment import (
    AUGMENT_STREAM,
    BLEND_STREAM,
    GEOMETRIC_DRAWS,
    PHOTOMETRIC_DRAWS,
    draw_values,
    photometric,
    warp_window,
)
from train.config import AUGMENTATIONS
from train.eye_masks import decode_with_eye_masks
from train.pairs import discover_pairs


def load_pairs(root: Path, image_size: int = 256, workers: int = 4, eye_mask: str = "auto") -> PairCache:
    """Discover, validate and decode every pair once. Raises DataError before any training."""
    pairs = discover_pairs(root)
    with_masks = sum(p.mask is not None for p in pairs)
    if 0 < with_masks < len(pairs):
        raise DataError(f"{with_masks} of {len(pairs)} pairs in {root} have label maps; give every pair one or none")
    if eye_mask == "labels" and not with_masks:
        raise DataError(f"--eye-mask labels, but {root} has no mask/ label maps; add them or use --eye-mask landmarks")
    source = eye_mask if eye_mask != "auto" else "mesh"
    if source == "band":
        pairs = [Pair(p.name, p.source, p.target, None) for p in pairs]  # label maps not used
    return decode_with_eye_masks(pairs, image_size, workers, eye_mask=source, root=root)


def load_split_for_training(split: dict, part: str, origin: str = "this run started") -> PairCache:
    """The recorded ``part`` with the eye masks it was trained with (resume), hashes checked."""
    pairs, hashes = split_pairs(split, part)
    return decode_with_eye_masks(pairs, split["image_size"], eye_mask=split.get("eye_mask", "band"),
                                 root=Path(split["data"]), expected_hashes=hashes, origin=origin)


def same_faces(cache: PairCache, indices: np.ndarray) -> list[np.ndarray]:
    """For each of ``indices``, the others among them that hold the same face in another look
    (:func:`models.data.same_face`)."""
    by_name: dict[str, list[int]] = {}
    for index in indices:
        by_name.setdefault(cache.pairs[index].name, []).append(int(index))
    def partners(index: int) -> np.ndarray:
        return np.array([other for other in by_name[cache.pairs[index].name]
                         if cache.looks[other] != cache.looks[index] and same_face(cache, other, cache, index)],
                        np.int64)
    return [partners(int(index)) for index in indices]


class PairDataset(torch.utils.data.Dataset):
    """Float tensors (source, target, masks) in [0, 1], CHW, from the uint8 cache; ``masks`` is the eye mask,
    then the cache's region maps where it has them (the default network: train/region_maps.py), so the maps
    take every crop, flip and warp the eye mask takes.

    With ``train=True``: a random horizontal flip and, if ``crop`` is set, a random square
    crop, applied identically to the three arrays so pairs stay aligned; ``augment`` adds a
    colour change (``photometric``: source and target), a small zoom / rotation / shift
    (``geometric``: all three, resampled from the whole image around the crop), or ``both``.
    Crops and flips come from the (seed, epoch) stream as they always have, the augmentation's
    values from a second stream of (seed, epoch): so ``none`` draws exactly what it did before
    ``augment`` existed, and every option sees the same crops and flips as ``none``.

    A cache of several looks (``cache.looks``) adds each sample's look index as a fourth item. With
    ``blend`` > 0 (training only) that item is the sample's look weights instead, [L] float: one-hot, or for a
    ``blend`` share of the samples whose face another look of the set also holds, (1-t, t) on the two looks with
    the target t of the way from the first look's target to the second's (t uniform in [0, 1]), drawn from a
    third stream of (seed, epoch): a blend of looks is trained to put on that blend of their makeup.
    """

    def __init__(self, cache: PairCache, indices: np.ndarray | None = None, train: bool = False,
                 crop: int | None = None, seed: int = 0, augment: str = "none", blend: float = 0.0):
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
        self.cache, self.train, self.crop, self.seed, self.augment = cache, train, crop, seed, augment
        self.indices = np.arange(len(cache)) if indices is None else np.asarray(indices)
        blending = blend > 0 and train and cache.looks is not None
        self.blend = blend if blending else 0.0
        self.looks = int(cache.looks.max()) + 1 if blending else 0  # the width of a sample's look weights
        self.partners = same_faces(cache, self.indices) if blending else None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Augmentation draws from streams fixed by (seed, epoch): a resumed run repeats them exactly."""
        self.rng = np.random.default_rng([self.seed, epoch])
        self.augment_rng = np.random.default_rng([self.seed, epoch, AUGMENT_STREAM])
        self.blend_rng = np.random.default_rng([self.seed, epoch, BLEND_STREAM])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int):
        index = self.indices[item]
        arrays = [self.cache.sources[index], self.cache.targets[index], self._masks(index)]
        if not self.train:
            return self._with_look(index, self._as_tensors(arrays))
        look = self._blended(item, arrays) if self.blend else index
        side = arrays[0].shape[0]
        top = left = 0
        if self.crop and self.crop < side:
            top, left = self.rng.integers(0, side - self.crop + 1, size=2)
            side = self.crop
        flip = self.rng.random() < 0.5
        if self.augment in ("geometric", "both"):
            geometry = draw_values(self.augment_rng, GEOMETRIC_DRAWS)
            warped = warp_window(arrays, (int(top), int(left), side), geometry, flip)
            source, target, masks = warped[:3], warped[3:6], warped[6:]
        else:
            arrays = [a[top:top + side, left:left + side] for a in arrays]
            source, target, masks = self._as_tensors([a[:, ::-1] for a in arrays] if flip else arrays)
        if self.augment in ("photometric", "both"):
            source, target = photometric([source, target], draw_values(self.augment_rng, PHOTOMETRIC_DRAWS))
        return self._with_look(look, (source, target, masks))

    def _blended(self, item: int, arrays: list[np.ndarray]) -> torch.Tensor:
        """The sample's look weights; for a blended sample ``arrays``' target becomes the blend of targets."""
        index = self.indices[item]
        weights = np.zeros(self.looks, np.float32)
        weights[self.cache.looks[index]] = 1.0
        share, pick, t = self.blend_rng.random(3)  # three draws a sample, blended or not: a fixed stream
        partners = self.partners[item]
        if share < self.blend and len(partners):
            other = partners[min(int(pick * len(partners)), len(partners) - 1)]
            blend = (1 - t) * arrays[1].astype(np.float32) + t * self.cache.targets[other].astype(np.float32)
            arrays[1] = np.rint(blend).astype(np.uint8)
            weights[self.cache.looks[index]] = 1 - t
            weights[self.cache.looks[other]] += t
        return torch.from_numpy(weights)

    def _masks(self, index: int) -> np.ndarray:
        """S x S x C uint8: the eye mask, then the region maps where the cache has them."""
        eye_mask = self.cache.eye_masks[index][..., None]
        maps = self.cache.region_maps
        return eye_mask if maps is None else np.concatenate([eye_mask, maps[index]], axis=2)

    def _with_look(self, look: int | torch.Tensor, tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """``look``: the pair's index in the cache (its look index is added), or the sample's look weights."""
        if self.cache.looks is None:
            return tensors
        return (*tensors, look if isinstance(look, torch.Tensor) else torch.tensor(int(self.cache.looks[look])))

    @staticmethod
    def _as_tensors(arrays: list[np.ndarray]) -> tuple[torch.Tensor, ...]:
        """C x H x W float views in [0, 1] of H x W x C uint8 arrays (channels stay last in memory)."""
        return tuple(torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0 for a in arrays)
