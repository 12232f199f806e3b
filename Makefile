# Two entry points for a fresh clone: `make demo` (main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/nas space sample unet_mobile --n 5 --seed 0
	$(BIN)/nas cost --preset mobilediffusion

test: install
	HF_HUB_OFFLINE=1 tools/loopback.sh $(BIN)/python -m pytest -q
