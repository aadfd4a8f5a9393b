# Set-up and everyday commands. `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch is installed first so pip never resolves plain `torch` (GBs of CUDA packages).
TORCH_PIN ?= torch==2.13.0
DEMO_OUT ?= out/demo

.PHONY: venv test demo lint clean bench

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[onnx,test,train]'
	touch $@

test: venv
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check vl_tracker_core vl_tracker_ros test launch

demo: venv
	HF_HUB_OFFLINE=1 $(VENV)/bin/vl-tracker demo --out $(DEMO_OUT)

clean:
	rm -rf $(VENV) out build *.egg-info
