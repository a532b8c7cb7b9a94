"""The real-portrait pairs of the built-in data (train/portraits.py, train/builtin.py): deterministic,
made up only where the look goes, and the held-out person never in training."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import grown

from train import portraits
from train.synthetic import LABELS

SIZE = 128


@pytest.mark.parametrize("identity", sorted(portraits.PORTRAITS))
def test_a_pair_is_a_pure_function_of_seed_identity_and_index(identity):
    first = portraits.render_pair(identity, 3, seed=0, size=SIZE)
    again = portraits.render_pair(identity, 3, seed=0, size=SIZE)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other_seed = portraits.render_pair(identity, 3, seed=1, size=SIZE)
    other_index = portraits.render_pair(identity, 4, seed=0, size=SIZE)
    assert np.abs(first[0] - other_seed[0]).mean() > 0.01
    assert np.abs(first[0] - other_index[0]).mean() > 0.01


@pytest.mark.parametrize("identity", sorted(portraits.PORTRAITS))
@pytest.mark.parametrize("index", [1, 2])
def test_the_look_changes_only_its_regions(identity, index):
    source, target, labels, masks = portraits.render_with_masks(identity, index, seed=0, size=SIZE)
    change = np.abs(target - source).max(axis=2)
    lips = np.isin(labels, [LABELS["upper_lip"], LABELS["lower_lip"]])
    assert lips.sum() > 20 and change[lips].mean() > 0.05  # the lipstick shows
    # Outside every part of the look (grown by two pixels): untouched.
    made_up = np.max([masks.lips, masks.shadow, masks.liner, masks.blush], axis=0) > 0.002
    assert change[~grown(made_up, 2)].max() < 0.002
    # Away from the face (the label map's background, three pixels clear of it): untouched.
    assert change[~grown(labels > 0, 3)].max() < 1e-6
    # The forehead (skin above the brows, clear of the shadow that reaches up to them): untouched.
    brows = np.isin(labels, [LABELS["left_brow"], LABELS["right_brow"]])
    top_of_brows = np.nonzero(brows.any(axis=1))[0].min()
    forehead = (labels == LABELS["skin"]) & (np.arange(SIZE)[:, None] < top_of_brows - SIZE * 0.04)
    assert forehead.sum() > 50 and change[forehead].max() < 0.01


@pytest.mark.parametrize("identity", ["collins", "hopper"])  # the frontal ones (the cameraman is in profile)
def test_the_eyes_and_cheeks_are_made_up_where_the_label_map_puts_them(identity):
    source, target, labels, masks = portraits.render_with_masks(identity, 1, seed=0, size=SIZE)
    change = np.abs(target - source).max(axis=2)
    for name in ("lips", "shadow", "liner", "blush"):  # each part shows, weighted by its mask
        mask = getattr(masks, name)
        assert (change * mask).sum() / mask.sum() > 0.004, name
    rows, columns = np.arange(SIZE)[:, None], np.arange(SIZE)[None, :]
    mouth_top = np.nonzero(np.isin(labels, [LABELS["upper_lip"], LABELS["lower_lip"]]).any(axis=1))[0].min()
    for eye_label in (LABELS["left_eye"], LABELS["right_eye"]):
        eye = labels == eye_label
        eye_rows, eye_columns = np.nonzero(eye.any(axis=1))[0], np.nonzero(eye.any(axis=0))[0]
        under = (columns >= eye_columns.min()) & (columns <= eye_columns.max())
        lid = under & (rows >= eye_rows.min() - SIZE * 0.05) & (rows < eye_rows.min())
        cheek = under & (rows > eye_rows.max() + SIZE * 0.04) & (rows < mouth_top) & (labels == LABELS["skin"])
        assert change[lid].max() > 0.07 and change[lid].mean() > 0.015  # liner and shadow
        assert change[cheek].mean() > 0.002  # blush


def test_varied_pairs_differ_in_skin_tone_pose_and_shape():
    """The variation reaches what makes a face new: its crop, its shape and its colour."""
    plain, _ = portraits.resample("collins", portraits.draw_variation(np.random.default_rng(0), np.ones(3), ()), SIZE)
    sources = [portraits.render_pair("collins", index, size=SIZE)[0] for index in range(1, 7)]
    assert min(np.abs(source - plain).mean() for source in sources) > 0.02
    face_colours = np.array([source[SIZE // 2 - 8:SIZE // 2 + 8, SIZE // 2 - 8:SIZE // 2 + 8].mean((0, 1))
                             for source in sources])
    assert np.ptp(face_colours, axis=0).max() > 0.08  # skin tones differ by more than a shade
    # Each kind of variation on its own changes the face; none leaves the plain crop (and noise).
    unvaried = portraits.render_pair("collins", 1, size=SIZE, kinds=())[0]
    assert np.abs(unvaried - plain).mean() < 0.012
    for kind in portraits.VARIATION_KINDS:
        assert np.abs(portraits.render_pair("collins", 1, size=SIZE, kinds=(kind,))[0] - unvaried).mean() > 0.004, kind


def test_the_held_out_person_is_only_in_the_real_photo_test_split():
    from models.data import REAL_TEST_SPLIT
    from train.builtin import builtin_split

    names = [f"image_{i:04d}" for i in range(1, 41)]
    names += [portraits.pair_name(identity, i) for identity in sorted(portraits.PORTRAITS) for i in range(1, 6)]
    for seed in (0, 1, 2):
        parts = builtin_split(sorted(names), 0.1, 0.1, seed)
        held = {name for name in sorted(names) if portraits.identity_of(name) == portraits.HELD_OUT}
        named = {part: {sorted(names)[i] for i in indices} for part, indices in parts.items()}
        assert named[REAL_TEST_SPLIT] == held and len(held) == 5
        for part in ("train", "val", "test"):
            assert not named[part] & held
        trained = {name for name in names if portraits.identity_of(name) not in (None, portraits.HELD_OUT)}
        assert trained <= named["train"]
        assert all(portraits.identity_of(name) is None for part in ("val", "test") for name in named[part])
        assert sum(len(v) for v in named.values()) == len(names)


def test_the_built_in_data_records_the_real_test_split_apart(tmp_path, monkeypatch):
    """What `python -m train` records without --data: the held-out person's pairs in test-real only,
    the other portraits' in training."""
    import train.builtin
    from train.__main__ import parse_args
    from train.pipeline import prepare_data
    from train.trainer import Distributed

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train.builtin, "REAL_TRAIN_PAIRS", 3)
    monkeypatch.setattr(train.builtin, "REAL_TEST_PAIRS", 2)
    config, _ = parse_args(["--synthetic-pairs", "12", "--image-size", "64", "--crop", "64", "--eye-mask", "band",
                            "--out", str(tmp_path / "run")])
    _, _, split = prepare_data(config, Distributed())
    names = {part: [entry["name"] for entry in split[part]] for part in ("train", "val", "test", "test-real")}
    assert names["test-real"] == [portraits.pair_name(portraits.HELD_OUT, i) for i in (1, 2)]
    everything_else = names["train"] + names["val"] + names["test"]
    assert not any(portraits.HELD_OUT in name for name in everything_else)
    assert sum(portraits.identity_of(name) is not None for name in names["train"]) == 3 * (len(portraits.PORTRAITS) - 1)


def test_the_real_people_are_the_portraits_and_one_is_held_out_by_default():
    from train.config import HELD_OUT_PERSON, REAL_PEOPLE

    assert set(REAL_PEOPLE) == set(portraits.PORTRAITS) and portraits.HELD_OUT == HELD_OUT_PERSON in REAL_PEOPLE


def test_another_held_out_person_takes_the_test_split_and_the_default_one_trains(monkeypatch):
    """--held-out-person collins: her first REAL_TEST_PAIRS pairs are test-real, the default held-out person's trains;
    pairs past a person's count (rendered while another was held out) are in no split."""
    import train.builtin
    from models.data import REAL_TEST_SPLIT
    from train.builtin import builtin_split

    monkeypatch.setattr(train.builtin, "REAL_TRAIN_PAIRS", 4)
    monkeypatch.setattr(train.builtin, "REAL_TEST_PAIRS", 2)
    names = sorted([f"image_{i:04d}" for i in range(1, 21)]
                   + [portraits.pair_name(identity, i) for identity in portraits.PORTRAITS for i in range(1, 6)])
    for held_out in portraits.PORTRAITS:
        parts = builtin_split(names, 0.1, 0.1, 0, held_out)
        named = {part: {names[i] for i in indices} for part, indices in parts.items()}
        assert named[REAL_TEST_SPLIT] == {portraits.pair_name(held_out, i) for i in (1, 2)}
        trained = {portraits.pair_name(identity, i) for identity in portraits.PORTRAITS if identity != held_out
                   for i in range(1, 5)}
        assert {name for name in named["train"] if portraits.identity_of(name)} == trained
        assert not any(portraits.identity_of(name) for part in ("val", "test") for name in named[part])


def test_held_out_person_is_refused_with_data_and_recorded_only_when_not_the_default(tmp_path):
    from train.__main__ import parse_args

    with pytest.raises(SystemExit) as refused:
        parse_args(["--held-out-person", "collins", "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    assert refused.value.code == 2
    default, _ = parse_args(["--out", str(tmp_path / "run")])
    assert "held_out_person" not in default.record()
    collins, _ = parse_args(["--held-out-person", "collins", "--out", str(tmp_path / "run")])
    assert collins.record()["held_out_person"] == "collins"


def test_one_data_folder_serves_every_held_out_person(tmp_path, monkeypatch):
    """Holding Collins out renders what that choice lacks into the same folder; the default run after it still holds
    out its own person's first pairs."""
    import train.builtin
    from train.__main__ import parse_args
    from train.pipeline import prepare_data
    from train.trainer import Distributed

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train.builtin, "REAL_TRAIN_PAIRS", 3)
    monkeypatch.setattr(train.builtin, "REAL_TEST_PAIRS", 2)
    common = ["--synthetic-pairs", "8", "--image-size", "64", "--crop", "64", "--eye-mask", "band"]
    real = {}
    for held_out in ("collins", portraits.HELD_OUT):
        config, _ = parse_args([*common, "--held-out-person", held_out, "--out", str(tmp_path / held_out)])
        _, _, split = prepare_data(config, Distributed())
        real[held_out] = {part: [entry["name"] for entry in split[part] if portraits.identity_of(entry["name"])]
                          for part in ("train", "test-real")}
    assert real["collins"]["test-real"] == [portraits.pair_name("collins", i) for i in (1, 2)]
    assert real[portraits.HELD_OUT]["test-real"] == [portraits.pair_name(portraits.HELD_OUT, i) for i in (1, 2)]
    assert {portraits.pair_name(portraits.HELD_OUT, i) for i in (1, 2, 3)} <= set(real["collins"]["train"])
    assert len(real[portraits.HELD_OUT]["train"]) == 3 * (len(portraits.PORTRAITS) - 1)


def test_the_benchmark_table_shows_the_real_photo_test_split_beside_the_cartoon_one():
    from benchmark.report import markdown_table

    quality = lambda *psnrs: {part: {"psnr_db": p, "psnr_pooled_db": p, "ssim": 0.9, "pairs": 4}  # noqa: E731
                              for part, p in zip(("test", "val", "test-real"), psnrs, strict=True)}
    rows = [{"name": "no makeup (input)", "format": "baseline", "bytes": None, "latency": {},
             "quality": quality(31.0, 31.1, 29.37), "notes": []},
            {"name": "PyTorch fp32 (reference)", "format": "pytorch", "bytes": 100, "latency": {},
             "quality": quality(38.0, 38.1, 30.52), "notes": []}]
    report = {"threads": [1], "headline_split": "test", "pairs": {"test": 4, "val": 4, "test-real": 4},
              "rows": rows, "image_size": 64, "parameters": 25, "macs": 1e6,
              "machine": {"cpu": "cpu", "cores": 1, "peak_fp32_gflops": {"1": 1.0}, "versions": {}},
              "gates": {"split": "test", "max_drop_db": 0.5, "min_psnr_db": None, "failures": []}}
    table = markdown_table(report)
    header = table.splitlines()[0]
    assert "PSNR test-real (mean)" in header
    column = header.split(" | ").index("PSNR test-real (mean)")
    assert [line.split(" | ")[column] for line in table.splitlines()[2:4]] == ["29.37 dB", "30.52 dB"]
    assert "4 real-photo test (a person never trained on) pairs" in table
