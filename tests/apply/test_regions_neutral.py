"""apply --regions with every strength at 1 is the face mask alone, so no weight map is drawn for it (a
video would otherwise draw one per face per frame): the parsed option is no regions, as on the page."""

from apply.__main__ import parse_args


def regions_of(value: str, tmp_path):
    return parse_args(["--model", str(tmp_path / "m.onnx"), str(tmp_path / "a.png"), "--out", str(tmp_path / "out"),
                       "--regions", value]).regions


def test_every_region_at_one_is_no_regions(tmp_path):
    assert regions_of("lips=1,eyes=1.0,cheeks=1,rest=1", tmp_path) is None
    assert regions_of("lips=1", tmp_path) is None


def test_a_region_off_one_keeps_every_strength(tmp_path):
    assert regions_of("eyes=0.5", tmp_path) == {"lips": 1.0, "eyes": 0.5, "cheeks": 1.0, "rest": 1.0}
