"""apply: faces found in any photo, aligned, made up, and put back; only the faces change."""

import logging

import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from apply.__main__ import main as apply_main
from export.formats import FORMATS


@pytest.fixture(scope="module")
def astronaut():
    """A public-domain NASA portrait (Eileen Collins), 512x512, not FFHQ-aligned: a real face."""
    return Image.fromarray(skimage_data.astronaut())


@pytest.fixture(autouse=True)
def info_logs(caplog):
    caplog.set_level(logging.INFO)  # apply reports faces found at INFO


def run_apply(model, photos, out, *extra):
    return apply_main(["--model", str(model), *map(str, photos), "--out", str(out),
                       *extra])


def test_real_face_changes_and_background_stays_bit_identical(artifacts, astronaut, tmp_path, caplog):
    photo = tmp_path / "astronaut.png"
    astronaut.save(photo)
    assert run_apply(artifacts / "tinybeauty.onnx", [photo], tmp_path / "out", "--strength", "2") == 0
    assert "1 face: mesh" in caplog.text  # aligned from the face mesh, as a video's frames are
    before, after = np.asarray(astronaut), np.asarray(Image.open(tmp_path / "out" / "astronaut_makeup.png"))
    assert after.shape == before.shape
    changed = np.argwhere((after != before).any(axis=2))
    assert len(changed) > 100  # the face was made up
    top, left = changed.min(0)
    bottom, right = changed.max(0)
    # ...and only around the face (x 174-279, y 70-175 in this portrait): the rest is bit-identical
    assert 120 < left and right < 340 and 0 <= top and bottom < 240
    assert np.array_equal(after[260:], before[260:]) and np.array_equal(after[:, :120], before[:, :120])


def test_rotated_off_centre_faces_in_a_larger_scene(artifacts, astronaut, tmp_path, caplog):
    scene = Image.new("RGB", (1400, 900), (40, 90, 140))
    face = astronaut.rotate(30, expand=True, fillcolor=(40, 90, 140))
    scene.paste(face, (1400 - face.width - 20, 900 - face.height - 10))
    scene.paste(astronaut.resize((400, 400)), (30, 40))  # a second, smaller face
    photo = tmp_path / "scene.jpg"
    scene.save(photo, quality=95)
    assert run_apply(artifacts / "tinybeauty.onnx", [photo], tmp_path / "out", "--strength", "2") == 0
    assert "2 faces: mesh" in caplog.text
    before = np.asarray(Image.open(photo).convert("RGB"))
    after = np.asarray(Image.open(tmp_path / "out" / "scene_makeup.png"))
    assert after.shape == before.shape
    changed = (after != before).any(axis=2)
    assert changed[:450, :450].any() and changed[400:, 700:].any()  # both faces
    assert not changed[:, 450:650].any() and not changed[:300, 700:].any()  # between and above them: untouched


def test_a_face_the_mesh_rejects_is_aligned_from_the_detector_and_says_so(artifacts, astronaut, tmp_path, caplog):
    """The portrait's edges only (PIL's FIND_EDGES): BlazeFace still finds the face, the mesh's face
    flag does not; the face is made up all the same, from the detector's keypoints."""
    from PIL import ImageFilter

    photo = tmp_path / "edges.png"
    astronaut.filter(ImageFilter.FIND_EDGES).save(photo)
    assert run_apply(artifacts / "tinybeauty.onnx", [photo], tmp_path / "out", "--strength", "2") == 0
    assert "(1 face: 1 detector keypoints where the mesh found no face)" in caplog.text
    after = np.asarray(Image.open(tmp_path / "out" / "edges_makeup.png"))
    assert (after != np.asarray(Image.open(photo))).any()


def test_strength_zero_changes_nothing(artifacts, astronaut, tmp_path):
    photo = tmp_path / "a.png"
    astronaut.save(photo)
    assert run_apply(artifacts / "tinybeauty.onnx", [photo], tmp_path / "out", "--strength", "0") == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "a_makeup.png")), np.asarray(astronaut))


def test_strength_out_of_range_is_refused(artifacts, astronaut, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_apply(artifacts / "tinybeauty.onnx", [tmp_path / "a.png"], tmp_path / "out", "--strength", "2.5")
    assert "between 0 and 2.0" in capsys.readouterr().err


def test_exif_rotated_portrait_comes_back_upright(artifacts, astronaut, tmp_path):
    stored = astronaut.resize((300, 400)).transpose(Image.Transpose.ROTATE_90)  # stored sideways, 400 x 300
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": upright it is 300 x 400
    photo = tmp_path / "phone.jpg"
    stored.save(photo, exif=exif, quality=95)
    assert run_apply(artifacts / "tinybeauty.onnx", [photo], tmp_path / "out") == 0
    assert Image.open(tmp_path / "out" / "phone_makeup.png").size == (300, 400)


def test_no_face_writes_nothing_for_that_photo(artifacts, astronaut, tmp_path, caplog):
    empty = tmp_path / "wall.png"
    Image.new("RGB", (300, 200), (120, 120, 120)).save(empty)
    good = tmp_path / "good.png"
    astronaut.save(good)
    assert run_apply(artifacts / "tinybeauty.onnx", [empty, good], tmp_path / "out") == 1
    assert "no face found in" in caplog.text and "wall.png" in caplog.text
    assert not (tmp_path / "out" / "wall_makeup.png").exists() and (tmp_path / "out" / "good_makeup.png").exists()


def test_a_photo_that_cannot_hold_a_face_is_skipped_naming_it(artifacts, astronaut, tmp_path, caplog):
    """A 3000 x 4 strip once cost the detector 1500 passes; it is skipped before any, with its name and shape."""
    strip = tmp_path / "strip.png"
    Image.new("RGB", (3000, 4), (120, 120, 120)).save(strip)
    good = tmp_path / "good.png"
    astronaut.save(good)
    assert run_apply(artifacts / "tinybeauty.onnx", [strip, good], tmp_path / "out") == 1
    assert "skipped" in caplog.text and "strip.png" in caplog.text and "3000x4 pixels" in caplog.text
    assert not (tmp_path / "out" / "strip_makeup.png").exists() and (tmp_path / "out" / "good_makeup.png").exists()


@pytest.mark.parametrize("model", [f.filename for f in FORMATS if f.shipped and f.stand_in is None])
def test_aligned_keeps_size_and_mode(artifacts, tmp_path, model):
    rgba = tmp_path / "odd_rgba.png"
    pixels = np.random.default_rng(0).integers(0, 255, (77, 93, 4), dtype=np.uint8)
    pixels[..., 3] = 200
    Image.fromarray(pixels, "RGBA").save(rgba)
    gray = tmp_path / "gray.jpg"
    Image.fromarray(pixels[..., 0], "L").save(gray)
    out = tmp_path / "out"
    assert apply_main(["--model", str(artifacts / model), str(rgba), str(gray), "--out", str(out),
                       "--side-by-side", "--aligned"]) == 0
    made_up = Image.open(out / "odd_rgba_makeup.png")
    assert made_up.size == (93, 77) and made_up.mode == "RGBA"
    assert np.array_equal(np.asarray(made_up)[..., 3], pixels[..., 3])  # alpha untouched
    made_up_gray = Image.open(out / "gray_makeup.png")
    assert made_up_gray.size == (93, 77) and made_up_gray.mode == "RGB"
    assert Image.open(out / "odd_rgba_before_after.png").size == (186, 77)


def test_apply_bad_file_among_good(artifacts, checkpoint, tmp_path, caplog):
    good = tmp_path / "good.png"
    Image.new("RGB", (128, 128), (200, 150, 130)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    code = apply_main(["--model", str(checkpoint), str(bad), str(good), "--out", str(out),
                       "--aligned"])
    assert code == 1
    assert (out / "good_makeup.png").is_file() and not (out / "bad_makeup.png").exists()
    assert "bad.png" in caplog.text and "not a readable image" in caplog.text


def test_apply_reports_unusable_models(artifacts, tmp_path, caplog):
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64)).save(good)
    from export.coreml_format import can_predict

    if not can_predict():
        assert apply_main(["--model", str(artifacts / "tinybeauty.mlmodel"), str(good), "--out", str(tmp_path)]) == 2
        assert "needs macOS" in caplog.text
    (tmp_path / "model.tflite").write_bytes(b"TFL3")  # a known suffix, but not a model
    assert apply_main(["--model", str(tmp_path / "model.tflite"), str(good), "--out", str(tmp_path)]) == 2
    assert "could not be loaded by LiteRT" in caplog.text
    (tmp_path / "model.xyz").write_bytes(b"?")
    assert apply_main(["--model", str(tmp_path / "model.xyz"), str(good), "--out", str(tmp_path)]) == 2
    assert "unknown model type" in caplog.text
