"""Faces: find them (BlazeFace), align each one to the model's crop (FFHQ recipe), map back.

Used by training (eye masks from landmarks when a dataset has no label maps), ``apply``
(photos) and the web page (which mirrors it in ``web/static/faces.mjs``). Nothing here
imports another package of the project but ``models``.
"""

from faces.alignment import Alignment
from faces.detection import DETECTOR_SIZE, DetectorUnavailable, Face, FaceDetector, detector_path

__all__ = ["DETECTOR_SIZE", "Alignment", "DetectorUnavailable", "Face", "FaceDetector", "detector_path"]
