"""Which looks to put on, in the form a model file takes them: its ``look_weights`` input.

A network of several looks (models/tinybeauty.py) takes, beside the face, one weight per look, in the
order of its looks: one-hot picks a look, weights that add up to 1 blend looks. What a person writes:

    berry                 the look named berry
    2                     the look at index 2
    berry=0.7,smoky=0.3   a blend (each weight in [0, 1], adding up to 1; looks not named get 0)

A one-look file takes no look input: it answers to its own name (or index 0) and to nothing else.
Pure numpy and no torch, so the command lines check a choice before loading anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLEND_TOLERANCE = 1e-3  # how far from 1 a blend's weights may add up (three decimals written by hand)


class LookChoiceError(ValueError):
    """A look choice a file cannot take: names the choice and the looks there are."""


def _index(name: str, looks: Sequence[str], where: str) -> int:
    if name in looks:
        return list(looks).index(name)
    if name.isdigit() and int(name) < len(looks):
        return int(name)
    raise LookChoiceError(f"{where} has no look {name!r}; its looks are {', '.join(looks)} "
                          f"(by name, or index 0-{len(looks) - 1})")


def _weight(text: str, name: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        raise LookChoiceError(f"the weight of {name} in a blend must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= weight <= 1.0:
        raise LookChoiceError(f"the weight of {name} in a blend must be in [0, 1], got {text}")
    return weight


def look_weights(choice: str | None, looks: Sequence[str], where: str = "the model") -> np.ndarray | None:
    """``choice`` (see the module's docstring) as the float32 [1, L] weights a file of ``looks`` takes;
    None for a one-look file (which takes no look input). No choice picks the first look.
    Raises LookChoiceError naming the choice and ``where``'s looks."""
    looks = list(looks)
    choice = (choice or "").strip()
    if len(looks) == 1:
        if choice and "=" not in choice:
            _index(choice, looks, where)  # its own name or index 0: refused otherwise
        elif choice:
            raise LookChoiceError(f"{where} holds one look ({looks[0]}), so it blends nothing; give no --look, "
                                  f"or --look {looks[0]}")
        return None
    weights = np.zeros((1, len(looks)), np.float32)
    if "=" not in choice:
        weights[0, _index(choice, looks, where) if choice else 0] = 1.0
        return weights
    for part in choice.split(","):
        name, sep, text = part.partition("=")
        if not sep or not name.strip():
            raise LookChoiceError(f"a blend is NAME=WEIGHT,NAME=WEIGHT (e.g. {looks[0]}=0.7,{looks[1]}=0.3), "
                                  f"got {choice!r}")
        index = _index(name.strip(), looks, where)
        if weights[0, index]:
            raise LookChoiceError(f"the blend {choice!r} names {looks[index]} twice")
        weights[0, index] = _weight(text.strip(), looks[index])
    total = float(weights.sum())
    if abs(total - 1.0) > BLEND_TOLERANCE:
        raise LookChoiceError(f"the blend {choice!r} adds up to {total:g}, not 1: give weights that add up to 1 "
                              f"(looks: {', '.join(looks)})")
    return weights


def describe(weights: np.ndarray | None, looks: Sequence[str]) -> str:
    """A choice in words, for logs and reports: 'berry', 'berry 0.7 + smoky 0.3'."""
    if weights is None:
        return looks[0]
    shares = [(looks[i], float(w)) for i, w in enumerate(weights[0]) if w > 0]
    return shares[0][0] if len(shares) == 1 else " + ".join(f"{name} {w:g}" for name, w in shares)
