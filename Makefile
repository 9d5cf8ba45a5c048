# The two commands of the README: `make run` (install + default experiment), `make test` (install + tests).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# torch is installed first and only when missing: the CPU build where no GPU is visible (on these
# machines `torch==2.13.0` is a local CPU wheel; elsewhere add e.g. TORCH_PIP_ARGS="--index-url <cpu index>"),
# the default (CUDA) build where nvidia-smi finds a GPU. An installed torch, CUDA or not, is kept.
TORCH_CPU ?= torch==2.13.0
TORCH_GPU ?= torch
TORCH_PIP_ARGS ?=

.PHONY: install install-test run test torch

torch:
	@$(PYTHON) -c "import torch" 2>/dev/null && echo "torch: keeping $$($(PYTHON) -c 'import torch; print(torch.__version__)')" || { \
	  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	    $(PIP) install $(TORCH_PIP_ARGS) "$(TORCH_GPU)"; \
	  else \
	    $(PIP) install $(TORCH_PIP_ARGS) "$(TORCH_CPU)"; \
	  fi; }

install: torch
	$(PIP) install --quiet -e . --config-settings editable_mode=compat

install-test: torch
	$(PIP) install --quiet -e ".[test]" --config-settings editable_mode=compat

run: install
	$(PYTHON) run.py

test: install-test
	WANDB_MODE=offline WANDB_SILENT=true $(PYTHON) -m pytest
