# TinyBeauty pipeline. On a fresh clone:  make bench  (train -> export -> benchmark)  /  make test
# Variables pass through to the CLIs, e.g.  make train DATA=~/pairs EPOCHS=5 OUT=runs/a
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

DATA ?=
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

TRAIN_FLAGS := --out $(OUT) $(if $(DATA),--data $(DATA)) $(if $(EPOCHS),--epochs $(EPOCHS)) \
               $(if $(PRESET),--preset $(PRESET)) $(TRAIN_ARGS)

.PHONY: setup train export bench test lint clean

setup: $(VENV)/.installed

# torch is installed on its own first: the pinned CPU wheel lies on the machines' disk, and
# pip must take it before resolving the rest (an unpinned torch pulls a multi-GB CUDA build).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

train: setup
	$(PY) -m train $(TRAIN_FLAGS)

export: setup
	@test -f $(CHECKPOINT) || $(MAKE) --no-print-directory train
	$(PY) -m export --checkpoint $(CHECKPOINT) --out $(ARTIFACTS) $(if $(DATA),--data $(DATA)) $(EXPORT_ARGS)

bench: setup
	@test -f $(ARTIFACTS)/manifest.json || $(MAKE) --no-print-directory export
	$(PY) -m benchmark --artifacts $(ARTIFACTS) --out $(BENCH) $(if $(DATA),--data $(DATA)) $(BENCH_ARGS)

test: setup
	$(PY) -m pytest $(TEST_ARGS)

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf $(OUT) $(ARTIFACTS) $(BENCH) .pytest_cache
