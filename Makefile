# Two commands do all set-up: `make demo` and `make test` (each creates .venv when needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= demo

.PHONY: demo test bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

demo: $(VENV)/.installed
	$(PY) demo.py --out $(OUT)

# ruff first: lint findings and unformatted files fail the run before the slower tests start
test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q tests

bench: $(VENV)/.installed
	$(PY) bench/sampling_pixelcnn.py
	$(PY) bench/sampling_wavenet.py
	$(PY) bench/training.py

clean:
	rm -rf $(VENV) $(OUT)

# CUDA checks (issue 16), one command on a GPU machine: the tests marked cuda, then bench/gpu_check.py's table,
# each ended by `timeout` (330 s + 135 s: under 8 minutes in all). Where pytest-timeout is installed, a test
# over 150 s fails alone and the others go on (the compile tests come last). It runs .venv's python where
# there is one, else python3 (a GPU machine's own torch: such a machine has no package index to build a venv
# from), after installing the wheels in .whl/ (what python3 lacks) into /tmp/site, if .whl/ exists. Without
# CUDA it says so in one line and exits 0; `make test` needs no GPU (the cuda cases skip there).
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_TESTS_SECONDS ?= 330
GPU_TABLE_SECONDS ?= 135

.PHONY: gpu-check
gpu-check:
	@if ! $(GPU_PY) -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then \
		echo "gpu-check: no CUDA GPU here (torch.cuda.is_available() is False for $(GPU_PY)); nothing to check"; \
		exit 0; \
	fi; \
	if [ -d .whl ]; then \
		$(GPU_PY) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
			--target /tmp/site .whl/*.whl || exit 1; \
		export PYTHONPATH=/tmp/site$${PYTHONPATH:+:$$PYTHONPATH}; \
	fi; \
	export PYTHONUNBUFFERED=1; status=0; \
	per_test=$$($(GPU_PY) -c "import pytest_timeout" 2>/dev/null && echo --timeout=150); \
	timeout -k 10 $(GPU_TESTS_SECONDS) $(GPU_PY) -m pytest -v -rs --durations=15 --continue-on-collection-errors $$per_test \
		-m cuda tests || status=$$?; \
	timeout -k 10 $(GPU_TABLE_SECONDS) $(GPU_PY) bench/gpu_check.py --seconds 5 --budget 110 || status=$$?; \
	exit $$status

# The wheels gpu-check installs on a GPU machine that has torch but not the audio packages (and no package
# index): fetched here, for that machine's Python, into .whl/ (not committed; the device run carries it).
GPU_PYTHON_VERSION ?= 3.12
.PHONY: gpu-wheels
gpu-wheels:
	$(PY) -m pip download -q --only-binary=:all: --no-deps --python-version $(GPU_PYTHON_VERSION) -d .whl \
		librosa soundfile soxr audioread pooch decorator cffi pycparser platformdirs
