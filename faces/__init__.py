"""Faces: find them (BlazeFace), landmark them (face mesh), follow them through video, align each
one to the model's crop (FFHQ recipe), map back.

Used by training (eye masks from landmarks when a dataset has no label maps), ``apply``
(photos) and the web page (which mirrors it in ``web/static/faces.mjs``). Nothing here
imports another package of the project but ``models``.
"""

from faces.alignment import Alignment
from faces.detection import DETECTOR_SIZE, DetectorUnavailable, Face, FaceDetector, UnsearchableImage, detector_path
from faces.mesh import FaceMesh
from faces.tracking import FaceTracker, PerFrameDetector, StillFace, TrackedFace, align_still, still_faces

__all__ = ["DETECTOR_SIZE", "Alignment", "DetectorUnavailable", "Face", "FaceDetector", "FaceMesh", "FaceTracker",
           "PerFrameDetector", "StillFace", "TrackedFace", "UnsearchableImage", "align_still", "detector_path",
           "still_faces"]
