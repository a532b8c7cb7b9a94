"""A look choice as a file takes it (models/look_choice.py): names and indices pick one look, NAME=W blends,
and every choice a file cannot take is refused naming it and the looks the file has."""

import numpy as np
import pytest

from models.look_choice import LookChoiceError, describe, look_weights

LOOKS = ["berry", "natural", "classic", "smoky"]


@pytest.mark.parametrize(("choice", "expected"), [
    (None, [1, 0, 0, 0]), ("", [1, 0, 0, 0]), ("classic", [0, 0, 1, 0]), ("3", [0, 0, 0, 1]),
    ("berry=0.7,smoky=0.3", [0.7, 0, 0, 0.3]), (" natural = 0.5 , 2=0.5 ", [0, 0.5, 0.5, 0]),
])
def test_choices_become_one_weight_per_look(choice, expected):
    weights = look_weights(choice, LOOKS)
    assert weights.dtype == np.float32 and weights.shape == (1, 4)
    np.testing.assert_allclose(weights[0], expected)


@pytest.mark.parametrize(("choice", "message"), [
    ("glitter", "no look 'glitter'; its looks are berry, natural, classic, smoky"),
    ("4", "no look '4'"),
    ("berry=0.7,smoky=0.2", "adds up to 0.9, not 1"),
    ("berry=0.5,berry=0.5", "names berry twice"),
    ("natural=0.5,1=0.5", "names natural twice"),
    ("berry=1.5,smoky=-0.5", "must be in [0, 1]"),
    ("berry=lots", "must be a number"),
    ("berry=0.5,=0.5", "a blend is NAME=WEIGHT"),
])
def test_choices_a_file_cannot_take_are_refused_by_name(choice, message):
    with pytest.raises(LookChoiceError) as error:
        look_weights(choice, LOOKS, where="tinybeauty.onnx")
    assert message in str(error.value)
    if "no look" in message:
        assert "tinybeauty.onnx" in str(error.value)


def test_a_one_look_file_takes_its_own_name_and_no_blend():
    assert look_weights(None, ["berry"]) is None
    assert look_weights("berry", ["berry"]) is None and look_weights("0", ["berry"]) is None
    with pytest.raises(LookChoiceError, match="no look 'smoky'; its looks are berry"):
        look_weights("smoky", ["berry"])
    with pytest.raises(LookChoiceError, match="holds one look"):
        look_weights("berry=1", ["berry"])


def test_a_choice_in_words():
    assert describe(look_weights("berry=0.7,smoky=0.3", LOOKS), LOOKS) == "berry 0.7 + smoky 0.3"
    assert describe(look_weights("smoky", LOOKS), LOOKS) == "smoky"
    assert describe(None, ["berry"]) == "berry"
