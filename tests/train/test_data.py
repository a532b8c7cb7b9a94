import csv

import numpy as np
import pytest
import torch
from PIL import Image

from models import data as models_data
from models.data import DataError
from models.metrics import psnr_db
from train.dataset import PairDataset, load_pairs
from train.pairs import discover_pairs
from train.split import split_indices
from train.synthetic import LABELS, render_pair


def write_image(path, size=(40, 40), color=(120, 80, 60), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else color[0]).save(path)
    return path


def make_layout(root, source="source", target="target", names=("a", "b", "c"), suffix=".png"):
    for name in names:
        write_image(root / source / f"{name}{suffix}")
        write_image(root / target / f"{name}.png", color=(130, 70, 60))
    return root


@pytest.mark.parametrize("source,target", [("source", "target"), ("non-makeup", "makeup")])
def test_folder_layouts(tmp_path, source, target):
    make_layout(tmp_path, source, target)
    cache = load_pairs(tmp_path, image_size=32)
    assert cache.names == ["a", "b", "c"]
    assert cache.sources.shape == (3, 32, 32, 3) and cache.sources.dtype == np.uint8
    assert cache.eye_mask == "mesh"  # the default: the face mesh (flat squares have no face: the band)


def test_jpg_source_pairs_with_png_target_by_stem(tmp_path):
    make_layout(tmp_path, suffix=".jpg")
    assert [p.name for p in discover_pairs(tmp_path)] == ["a", "b", "c"]


def test_pairs_csv_manifest(tmp_path):
    """pairs.csv pairs exactly the files it lists, in its order, whatever their names, and takes
    precedence over folders that would pair differently."""
    colours = {"x/one.png": (200, 40, 40), "y/one_made_up.png": (40, 200, 40),
               "x/two.png": (40, 40, 200), "y/two_made_up.png": (200, 200, 40)}
    for name, colour in colours.items():
        write_image(tmp_path / name, color=colour)
    make_layout(tmp_path)  # source/ + target/ as well: the manifest wins
    rows = [["x/two.png", "y/one_made_up.png"], ["x/one.png", "y/two_made_up.png"]]  # crossed on purpose
    with (tmp_path / "pairs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "target"])
        writer.writerows(rows)
    cache = load_pairs(tmp_path, image_size=16)
    assert cache.names == ["x/two.png", "x/one.png"]
    assert [(p.source, p.target) for p in cache.pairs] == [(tmp_path / s, tmp_path / t) for s, t in rows]
    for i, (source, target) in enumerate(rows):
        assert tuple(cache.sources[i, 8, 8]) == colours[source] and tuple(cache.targets[i, 8, 8]) == colours[target]


def test_masks_give_eye_band_from_labels(tmp_path):
    make_layout(tmp_path, names=("a", "b"))
    (tmp_path / "mask").mkdir()
    labels = np.zeros((40, 40), np.uint8)
    labels[10:14, 8:16] = 4
    labels[10:14, 24:32] = 5
    for name in ("a", "b"):
        Image.fromarray(labels).save(tmp_path / "mask" / f"{name}.png")
    for eye_mask in ("labels", "auto"):  # auto: the mesh finds no face on a flat square, so its label map
        cache = load_pairs(tmp_path, image_size=40, eye_mask=eye_mask)
        assert cache.eye_mask == ("labels" if eye_mask == "labels" else "mesh")
        eye = cache.eye_masks[0]
        assert eye[12, 12] > 200 and eye[12, 28] > 200  # on the eyes
        assert eye[35, 20] == 0  # chin: outside the band


def test_fixed_eye_band_without_masks(tmp_path):
    make_layout(tmp_path)
    eye = load_pairs(tmp_path, image_size=64).eye_masks[0]
    assert eye[int(0.45 * 64), 32] == 255 and eye[60, 32] == 0 and eye[5, 32] == 0


@pytest.mark.parametrize("setup,message", [
    (lambda root: None, "does not exist"),
    (lambda root: root.mkdir(), "no pairs.csv"),
    (lambda root: (root / "source").mkdir(parents=True) or (root / "target").mkdir(), "no .png/.jpg images"),
])
def test_missing_or_empty_folders(tmp_path, setup, message):
    root = tmp_path / "pairs"
    setup(root)
    with pytest.raises(DataError, match=message):
        load_pairs(root, 32)


def test_unmatched_names_are_listed(tmp_path):
    make_layout(tmp_path, names=("a", "b"))
    write_image(tmp_path / "source" / "lonely.png")
    write_image(tmp_path / "target" / "orphan.png")
    with pytest.raises(DataError, match="unmatched") as error:
        load_pairs(tmp_path, 32)
    assert "lonely" in str(error.value) and "orphan" in str(error.value)


def test_corrupt_and_non_image_files(tmp_path):
    make_layout(tmp_path, names=("a", "b"))
    (tmp_path / "source" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match=r"source/b\.png is not a readable image"):
        load_pairs(tmp_path, 32)
    (tmp_path / "source" / "b.png").write_text("just text, not a picture")
    with pytest.raises(DataError, match=r"b\.png is not a readable image"):
        load_pairs(tmp_path, 32)


def test_mask_of_wrong_size(tmp_path):
    make_layout(tmp_path, names=("a",))
    write_image(tmp_path / "source" / "z.png")
    write_image(tmp_path / "target" / "z.png")
    write_image(tmp_path / "mask" / "a.png", size=(40, 40), mode="L")
    write_image(tmp_path / "mask" / "z.png", size=(20, 20), mode="L")
    with pytest.raises(DataError, match=r"mask/z\.png is 20x20 .* must match"):
        load_pairs(tmp_path, 32)


def test_pair_size_mismatch(tmp_path):
    make_layout(tmp_path, names=("a",))
    write_image(tmp_path / "source" / "b.png", size=(40, 40))
    write_image(tmp_path / "target" / "b.png", size=(50, 40))
    with pytest.raises(DataError, match="same face at the same size"):
        load_pairs(tmp_path, 32)


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    make_layout(tmp_path, names=("a", "b"))
    write_image(tmp_path / "source" / "b.png", size=(300, 300))
    write_image(tmp_path / "target" / "b.png", size=(300, 300))
    monkeypatch.setattr(models_data, "MAX_IMAGE_PIXELS", 50_000)  # 300x300 = 90,000 pixels
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self, *a: decoded.append(self.size) or None)
    with pytest.raises(DataError, match="over the 50,000-pixel limit"):
        load_pairs(tmp_path, 32)
    assert (300, 300) not in decoded


def test_split_is_deterministic_and_disjoint():
    a = split_indices(100, 0.1, 0.2, seed=3)
    assert all(np.array_equal(a[k], split_indices(100, 0.1, 0.2, seed=3)[k]) for k in a)
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (70, 10, 20)
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(100))  # disjoint, complete
    assert not np.array_equal(split_indices(100, 0.1, 0.2, seed=4)["val"], a["val"])
    paper = split_indices(100, 0.1, 0.0, seed=3)  # the paper's 90/10
    assert (len(paper["train"]), len(paper["val"]), len(paper["test"])) == (90, 10, 0)
    assert np.array_equal(paper["val"], a["val"])  # adding a test split leaves validation as it was
    with pytest.raises(DataError, match="too few"):
        split_indices(3, 0.4, 0.4)


def test_augmentation_keeps_pairs_aligned(tmp_path):
    make_layout(tmp_path, names=("a", "b"))
    cache = load_pairs(tmp_path, 32)
    gradient = np.tile(np.arange(32, dtype=np.uint8)[None, :, None] * 8, (32, 1, 3))
    cache.sources[:] = gradient
    cache.targets[:] = gradient // 2
    dataset = PairDataset(cache, np.array([0, 1]), train=True, crop=16, seed=0)
    for _ in range(10):
        source, target, eye = dataset[0]
        assert source.shape == (3, 16, 16) and eye.shape == (1, 16, 16)
        assert torch.allclose(torch.floor(source * 255 / 2) / 255, target, atol=1 / 255)


def test_synthetic_is_deterministic_subtle_and_labelled():
    source, target, labels = render_pair(3, seed=0, size=128)
    again, _, _ = render_pair(3, seed=0, size=128)
    assert np.array_equal(source, again)
    assert not np.array_equal(source, render_pair(3, seed=1, size=128)[0])
    to_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    baselines = [psnr_db(to_tensor(s), to_tensor(t)) for s, t, _ in (render_pair(i, 0, 128) for i in range(6))]
    assert 25 < np.mean(baselines) < 33, baselines
    present = set(np.unique(labels))
    assert {LABELS[part] for part in ("left_eye", "right_eye", "upper_lip", "lower_lip", "skin")} <= present


def test_same_stem_twice_is_refused_naming_both(tmp_path):
    make_layout(tmp_path, names=("face_01", "face_03"))
    write_image(tmp_path / "source" / "face_03.jpg")
    with pytest.raises(DataError, match=r"face_03\.jpg.*same name|face_03\.png.*same name") as error:
        load_pairs(tmp_path, 32)
    assert "face_03.png" in str(error.value) and "face_03.jpg" in str(error.value)


def test_palette_label_maps_are_read_as_indices(tmp_path):
    make_layout(tmp_path, names=("a", "b"))
    labels = np.zeros((40, 40), np.uint8)
    labels[10:14, 8:16] = 4  # left eye
    labels[30:34, 15:25] = 7  # upper lip
    palette = Image.fromarray(labels, "P")
    # A colour table where label 4 (eye) is dark and label 7 bright: brightness would say 7-ish and 200-ish.
    table = [0, 0, 0] * 256
    table[4 * 3:4 * 3 + 3] = [20, 20, 20]
    table[7 * 3:7 * 3 + 3] = [250, 250, 250]
    palette.putpalette(table)
    (tmp_path / "mask").mkdir()
    for name in ("a", "b"):
        palette.save(tmp_path / "mask" / f"{name}.png")
    assert Image.open(tmp_path / "mask" / "a.png").mode == "P"
    eye = load_pairs(tmp_path, image_size=40).eye_masks[0]
    assert eye[12, 12] > 200  # the eye label (index 4) became the eye mask
    assert eye[32, 20] == 0  # the lips (index 7, bright in the palette) did not


def test_exif_orientation_is_applied(tmp_path):
    make_layout(tmp_path, names=("a",))
    pixels = np.zeros((20, 40, 3), np.uint8)  # stored landscape, 40 wide
    pixels[:, :20] = 255  # left half white
    for folder in ("source", "target"):
        image = Image.fromarray(pixels)
        exif = image.getexif()
        exif[0x0112] = 6  # orientation 6: display rotated 90 degrees clockwise -> portrait 20 x 40
        image.save(tmp_path / folder / "b.jpg", exif=exif, quality=95)
    from models.data import open_image

    upright = open_image(tmp_path / "source" / "b.jpg", "RGB")
    assert upright.size == (20, 40)  # portrait, as a phone shows it
    assert np.asarray(upright)[5, 10].mean() > 200 and np.asarray(upright)[35, 10].mean() < 50  # white on top


def test_recorded_split_is_loaded_exactly_and_checked(tmp_path):
    from models.data import load_split, split_record

    make_layout(tmp_path, names=[f"p{i}" for i in range(10)])
    cache = load_pairs(tmp_path, 32)
    split = split_record(tmp_path, cache, split_indices(len(cache), 0.2, 0.2, seed=1), 32, 0.2, 0.2, 1)
    assert len(split["val"]) == 2 and len(split["test"]) == 2 and len(split["train"]) == 6
    val_names = [e["name"] for e in split["val"]]
    make_layout(tmp_path, names=["added_later"])  # new pairs on disk do not move the recorded split
    assert load_split(split, "val").names == val_names
    moved = tmp_path.parent / "moved"
    tmp_path.rename(moved)
    with pytest.raises(DataError, match="missing"):
        load_split(split, "val")
    assert load_split(split, "val", data_override=moved).names == val_names  # --data: the data moved
    write_image(moved / "target" / f"{val_names[0]}.png", color=(1, 2, 3))
    with pytest.raises(DataError, match=f"{val_names[0]}.*changed since training"):
        load_split(split, "val", data_override=moved)


@pytest.mark.parametrize("eye_mask,cache_file,min_iou",
                         [("auto", "MESH_CACHE", 0.6), ("landmarks", "LANDMARK_CACHE", 0.4)])
def test_eye_masks_from_the_mesh_or_landmarks_match_the_labels(tmp_path, eye_mask, cache_file, min_iou):
    """Without label maps, the eye mask comes from the face mesh (the default) or detected landmarks,
    and covers the real eyes: the mesh's contours closer to the labels than the landmark ellipses."""
    from train import eye_masks
    from train.eye_masks import eye_mask_from_labels
    from train.synthetic import to_uint8

    labelled = []
    for folder in ("source", "target"):
        (tmp_path / folder).mkdir()
    for i in range(3):
        source, target, labels = render_pair(i, seed=0, size=256)
        Image.fromarray(to_uint8(source)).save(tmp_path / "source" / f"f{i}.png")
        Image.fromarray(to_uint8(target)).save(tmp_path / "target" / f"f{i}.png")
        labelled.append(eye_mask_from_labels(labels, 256) > 127)
    cache = load_pairs(tmp_path, 256, eye_mask=eye_mask)
    assert cache.eye_mask == ("mesh" if eye_mask == "auto" else eye_mask)
    assert (tmp_path / getattr(eye_masks, cache_file)).is_file()
    for mask, truth in zip(cache.eye_masks, labelled, strict=True):
        found = mask > 127
        assert (found & truth).sum() / (found | truth).sum() > min_iou  # IoU with the label-derived mask
    band = load_pairs(tmp_path, 256, eye_mask="band").eye_masks[0]
    assert not np.array_equal(band, cache.eye_masks[0])
    with pytest.raises(DataError, match="no mask/ label maps"):
        load_pairs(tmp_path, 256, eye_mask="labels")


def pair_cache(sources, targets, eye_masks):
    pairs = [models_data.Pair(f"p{i}", None, None) for i in range(len(sources))]
    return models_data.PairCache(pairs, [""] * len(pairs), sources, targets, eye_masks, "band")


def random_cache(n=3, size=32, seed=0):
    rng = np.random.default_rng(seed)
    sources = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    targets = np.clip(sources.astype(int) + rng.integers(-20, 21, sources.shape), 0, 255).astype(np.uint8)
    return pair_cache(sources, targets, rng.integers(0, 256, (n, size, size), dtype=np.uint8))


def items(dataset, epoch):
    dataset.set_epoch(epoch)
    return [dataset[i] for i in range(len(dataset))]


@pytest.mark.parametrize("crop", [None, 16])
def test_augment_none_is_the_plain_crop_and_flip_stream(crop):
    """The default draws exactly what training drew before --augment existed: per pair a crop
    offset (when cropping), then a flip, from the (seed, epoch) stream."""
    cache = random_cache()
    dataset = PairDataset(cache, train=True, crop=crop, seed=7)
    rng = np.random.default_rng([7, 3])
    for index, got in enumerate(items(dataset, 3)):
        arrays = [cache.sources[index], cache.targets[index], cache.eye_masks[index][..., None]]
        if crop:
            top, left = rng.integers(0, 32 - crop + 1, size=2)
            arrays = [a[top:top + crop, left:left + crop] for a in arrays]
        if rng.random() < 0.5:
            arrays = [a[:, ::-1] for a in arrays]
        expected = [torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255.0 for a in arrays]
        assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))


@pytest.mark.parametrize("augment", ["photometric", "geometric", "both"])
def test_augment_transforms_both_images_of_a_pair_identically(augment):
    cache = random_cache()
    cache.targets = cache.sources.copy()  # a pair without makeup stays one without makeup
    plain = items(PairDataset(cache, train=True, crop=16, seed=1), 0)
    augmented = items(PairDataset(cache, train=True, crop=16, seed=1, augment=augment), 0)
    for (source, target, eye), (plain_source, _, plain_eye) in zip(augmented, plain, strict=True):
        assert torch.equal(source, target)
        assert source.shape == plain_source.shape and eye.shape == plain_eye.shape
        assert 0 <= source.min() and source.max() <= 1
        assert (source - plain_source).abs().mean() > 1e-3  # it did change the images
        assert torch.equal(eye, plain_eye) == (augment == "photometric")  # colour leaves the mask alone


@pytest.mark.parametrize("augment", ["photometric", "geometric", "both"])
def test_augment_is_fixed_by_seed_and_epoch(augment):
    cache = random_cache()
    first, again = (PairDataset(cache, train=True, crop=16, seed=2, augment=augment) for _ in range(2))
    same = lambda a, b: all(torch.equal(x, y) for pa, pb in zip(a, b, strict=True)  # noqa: E731
                            for x, y in zip(pa, pb, strict=True))
    assert same(items(first, 4), items(again, 4))  # a resumed run sees the same epoch 4
    assert not same(items(first, 4), items(again, 5))


def test_geometric_augment_moves_the_eye_mask_with_the_face():
    """A face whose red channel is its eye mask keeps them together through zoom, rotation and shift."""
    size = 48
    ys, xs = np.mgrid[0:size, 0:size]
    eye = (255 * np.exp(-((xs - 30) ** 2 + (ys - 18) ** 2) / 40.0)).astype(np.uint8)
    sources = np.zeros((4, size, size, 3), np.uint8)
    sources[..., 0] = eye
    cache = pair_cache(sources, sources.copy(), np.stack([eye] * 4))
    plain = items(PairDataset(cache, train=True, seed=3), 0)
    moved = 0
    for (source, _, mask), (_, _, plain_mask) in zip(items(PairDataset(cache, train=True, seed=3,
                                                                       augment="geometric"), 0), plain, strict=True):
        assert torch.allclose(source[0], mask[0], atol=1e-6)
        moved += float((mask - plain_mask).abs().max()) > 0.1
    assert moved == 4


def test_geometric_augment_with_neutral_values_is_the_plain_crop():
    from train.augment import warp_window

    cache = random_cache(n=1)
    arrays = [cache.sources[0], cache.targets[0], cache.eye_masks[0][..., None]]
    image = torch.from_numpy(np.concatenate(arrays, axis=2)).permute(2, 0, 1).float() / 255.0
    neutral = {"scale": 1.0, "rotation_degrees": 0.0, "shift_x": 0.0, "shift_y": 0.0}
    for flip in (False, True):
        warped = warp_window(arrays, (5, 9, 16), neutral, flip)
        crop = image[:, 5:21, 9:25]
        assert torch.allclose(warped, crop.flip(2) if flip else crop, atol=1e-5)


@pytest.mark.parametrize("flip", [False, True])
def test_the_fast_grid_is_torchs_affine_grid(flip):
    from train.augment import affine_grid

    angle, scale, side, size, centre = 0.15, 1.07, 16, (40, 30), (18.0, 13.5)
    cos, sin, mirror = np.cos(angle), np.sin(angle), -1.0 if flip else 1.0
    fx, fy = side / size[0] / scale, side / size[1] / scale
    theta = torch.tensor([[[mirror * fx * cos, -fx * sin, 2 * centre[0] / size[0] - 1],
                           [mirror * fy * sin, fy * cos, 2 * centre[1] / size[1] - 1]]], dtype=torch.float32)
    expected = torch.nn.functional.affine_grid(theta, [1, 1, side, side], align_corners=False)
    assert torch.allclose(affine_grid(side, size, centre, angle, scale, flip), expected, atol=1e-5)


def test_unknown_augment_is_refused():
    with pytest.raises(ValueError, match="augment must be one of"):
        PairDataset(random_cache(), train=True, augment="mixup")
