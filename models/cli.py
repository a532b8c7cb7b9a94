"""argparse types every command line shares: numbers checked in range, output folders checked.

Each is a ``type=`` for ``add_argument``, so a bad value stops in the parser, before any work,
with argparse's usage line and a message naming the flag (``argument --lr: must be a number
above 0, got -1``) and exit code 2. Floats must be finite: ``nan`` and ``inf`` parse as floats
but are never a learning rate, a strength or a gate.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from models.atomic import OutputFolderError, check_output_folder

MAX_PORT = 65535
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit


def _parse(kind: type, text: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        wanted = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def number_in(kind: type, low: float | None = None, high: float | None = None, *, low_open: bool = False,
              high_open: bool = False) -> Callable[[str], int | float]:
    """An argparse type: ``kind`` (int or float) within [low, high]; ``*_open`` excludes that end."""
    words = "a whole number" if kind is int else "a number"
    if low is not None and high is not None and not (low_open or high_open):
        bounds = [f"between {low} and {high}"]
    else:
        bounds = [f"{'above' if low_open else 'at least'} {low}"] if low is not None else []
        bounds += [f"{'under' if high_open else 'at most'} {high}"] if high is not None else []

    def parse(text: str) -> int | float:
        value = _parse(kind, text)
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if below or above:
            raise argparse.ArgumentTypeError(f"must be {words} {' and '.join(bounds)}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} {' and '.join(bounds)}".strip()  # argparse names the type in some errors
    return parse


positive_int = number_in(int, 0, low_open=True)
non_negative_int = number_in(int, 0)
positive_float = number_in(float, 0, low_open=True)
non_negative_float = number_in(float, 0)
finite_float = number_in(float)
fraction_open = number_in(float, 0, 1, low_open=True, high_open=True)  # (0, 1)
fraction_from_zero = number_in(float, 0, 1, high_open=True)  # [0, 1)
port_number = number_in(int, 0, MAX_PORT)
seed_number = number_in(int, 0, MAX_SEED)


def output_folder(text: str) -> Path:
    """An argparse type for ``--out``: not a file, and a place this process can write
    (models/atomic.py check_output_folder)."""
    try:
        return check_output_folder(Path(text))
    except OutputFolderError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def output_folder_name(text: str) -> str:
    """:func:`output_folder` for a config stored as plain types (a checkpoint's train_config): the text."""
    output_folder(text)
    return text
