"""The built-in looks are drawn on the same faces: a later look's folder takes the face landmarks an earlier
look's folder found (the caches are keyed by the source file's sha256), and keeps its own where it has one."""

import json

from train.builtin import share_face_caches
from train.eye_masks import LANDMARK_CACHE, MESH_CACHE


def test_a_later_look_takes_the_earlier_looks_landmarks_and_keeps_its_own(tmp_path):
    berry, natural, smoky = (tmp_path / name for name in ("synthetic", "synthetic-natural", "synthetic-smoky"))
    for folder in (berry, natural, smoky):
        folder.mkdir()
    (berry / MESH_CACHE).write_text(json.dumps({"sha-of-face-0": [1.0, 2.0]}))
    (smoky / MESH_CACHE).write_text(json.dumps({"its-own": None}))
    share_face_caches(natural, [berry])
    share_face_caches(smoky, [berry, natural])
    assert json.loads((natural / MESH_CACHE).read_text()) == {"sha-of-face-0": [1.0, 2.0]}
    assert json.loads((smoky / MESH_CACHE).read_text()) == {"its-own": None}  # never replaced
    assert not (natural / LANDMARK_CACHE).exists()  # nothing to share: nothing written
    share_face_caches(berry, [])  # the first look: nothing earlier
    assert list(berry.iterdir()) == [berry / MESH_CACHE]
