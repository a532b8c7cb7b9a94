"""The built-in data set ``python -m train`` renders when no --data is given, and its split.

Cartoon faces (``train/synthetic.py``) and real portraits with the same look (``train/portraits.py``),
in one folder. The cartoons are split by seed as any data set is (``train.data.split_indices``);
the real pairs of every portrait but the held-out person's (``--held-out-person``, default
:data:`train.portraits.HELD_OUT`) join training; the held-out person's pairs are the real-photo test
split, ``test-real``, that nothing trains or tunes on and every report shows beside the cartoon test
split. A person's pairs are numbered and drawn the same whoever is held out, so the folder serves every
choice: a run renders what its choice lacks, and each split takes a person's first pairs (the held-out
person's first :data:`REAL_TEST_PAIRS`, the others' first :data:`REAL_TRAIN_PAIRS`). Without the face
mesh (the mobile extras not installed) the set is the cartoons alone, and says so.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from models.atomic import atomic_path
from models.data import REAL_TEST_SPLIT
from train.eye_masks import LANDMARK_CACHE, MESH_CACHE, REGION_CACHE
from train.portraits import HELD_OUT, PORTRAITS, PortraitUnavailable, identity_of, pair_index, write_portrait_looks
from train.split import split_indices
from train.synthetic import write_looks

log = logging.getLogger(__name__)

# Pairs per portrait: the trained ones add 37% to the CPU preset's 539 training cartoons (the epoch
# time grows with them); the held-out one gives the real-photo test split.
REAL_TRAIN_PAIRS = 100
REAL_TEST_PAIRS = 40


def person_pairs(identity: str, held_out: str) -> int:
    """How many of a real person's pairs the built-in set uses: the held-out person's test pairs, else training's."""
    return REAL_TEST_PAIRS if identity == held_out else REAL_TRAIN_PAIRS


def write_builtin(folders: dict[str, Path], cartoons: int, size: int = 256, held_out: str = HELD_OUT
                  ) -> dict[str, Path]:
    """Render the built-in set of each look (a name in train/looks -> its folder; pairs already there are
    kept): every look is drawn on the same faces, each face made once for all of them."""
    write_looks(folders, cartoons, size, seed=0)
    counts = {identity: person_pairs(identity, held_out) for identity in PORTRAITS}
    try:
        write_portrait_looks(folders, counts, size)
    except PortraitUnavailable as error:
        log.warning("built-in data without real portraits (%s): cartoons only, no real-photo test split", error)
    return folders


def share_face_caches(folder: Path, earlier: list[Path]) -> None:
    """Give a built-in look's folder the face landmarks an earlier look's folder found: every look is drawn
    on the same faces, the caches are keyed by the source file's sha256, so the mesh need not run again
    on the same pictures (a few minutes of the first run of a catalogue). A folder's own cache is kept."""
    for name in (MESH_CACHE, LANDMARK_CACHE, REGION_CACHE):
        found = next((other / name for other in earlier if (other / name).is_file()), None)
        if found is not None and not (folder / name).exists():
            with atomic_path(folder / name) as tmp:
                shutil.copyfile(found, tmp)


def builtin_split(names: list[str], val_fraction: float, test_fraction: float, seed: int,
                  held_out: str = HELD_OUT) -> dict[str, np.ndarray]:
    """Indices of each split of the built-in set: cartoons by seed, the trained people's portraits in training,
    the held-out person's in ``test-real``; a person's pairs past :func:`person_pairs` (rendered while another
    person was held out) in none."""
    identities = [identity_of(name) for name in names]
    cartoons = np.array([i for i, identity in enumerate(identities) if identity is None])
    parts = {part: cartoons[chosen] for part, chosen in
             split_indices(len(cartoons), val_fraction, test_fraction, seed).items()}
    used = [identity is not None and pair_index(name) <= person_pairs(identity, held_out)
            for name, identity in zip(names, identities, strict=True)]
    real = {part: np.array([i for i, identity in enumerate(identities) if used[i]
                            and (identity == held_out) == (part == REAL_TEST_SPLIT)], dtype=int)
            for part in ("train", REAL_TEST_SPLIT)}
    parts["train"] = np.sort(np.concatenate([parts["train"], real["train"]]))
    parts[REAL_TEST_SPLIT] = real[REAL_TEST_SPLIT]
    return parts
