"""What the tests, the benchmark and the build use, never the product: the converter of the page's
face networks (``face_models``, run by ``make setup``), the headless Chromium that drives the page
(``browser``), the fake camera's clips (``camera_clip``), the face tracking's measures and tuning
runs (``tracking_metrics``) and the recorder of its traces (``tracking_traces``). Nothing in
models/, faces/, train/, export/, apply/ or web/ imports this package."""
