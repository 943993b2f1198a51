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
