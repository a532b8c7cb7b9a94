"""The train / validation / test split, made once by seed when training starts.

Its record (file names and content hashes, stored in every checkpoint) and how it is read back
live in ``models/data.py``: resume, export and benchmark read that record, never a split
recomputed from what is on disk now.
"""

from __future__ import annotations

import math

import numpy as np

from models.data import SPLITS, DataError


def split_indices(n: int, val_fraction: float = 0.1, test_fraction: float = 0.0,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic train / val / test split by seed, as fractions of all ``n`` pairs.

    Validation takes the first ``ceil(n * val_fraction)`` of a seeded permutation (so
    ``test_fraction=0`` is the paper's 90/10 split), test the next ``ceil(n * test_fraction)``,
    training the rest. Validation and training get at least one pair each."""
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(f"split fractions must satisfy 0 < val ({val_fraction}), 0 <= test ({test_fraction}) "
                        "and val + test < 1")
    n_val = max(1, int(math.ceil(n * val_fraction)))
    n_test = int(math.ceil(n * test_fraction)) if test_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise DataError(f"{n} pairs are too few for a {val_fraction:.0%} validation and {test_fraction:.0%} test "
                        f"split with training pairs left; add pairs (at least {n_val + n_test + 1})")
    order = np.random.default_rng(seed).permutation(n)
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return {name: np.sort(parts[name]) for name in SPLITS}
