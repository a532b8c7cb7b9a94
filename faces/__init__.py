"""Faces: find them (BlazeFace), landmark them (face mesh), follow them through video, align each
one to the model's crop (FFHQ recipe), map back; and their regions (lips, eyes, cheeks) for
per-region strength (``faces/regions.json``, shared with the page).

Used by training (eye masks from landmarks when a dataset has no label maps), ``apply``
(photos) and the web page (which mirrors it in ``web/static/faces.mjs``). Nothing here
imports another package of the project but ``models``. The names below are imported when first
asked for, so ``faces.regions`` (the standard library only) checks a command line's ``--regions``
without loading numpy or the face networks' runtime.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "faces.alignment": ("Alignment",),
    "faces.detection": ("DETECTOR_SIZE", "DetectorUnavailable", "Face", "FaceDetector", "UnsearchableImage",
                        "detector_path"),
    "faces.mesh": ("FaceMesh",),
    "faces.tracking": ("FaceTracker", "PerFrameDetector", "StillFace", "TrackedFace", "align_still", "still_faces"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
