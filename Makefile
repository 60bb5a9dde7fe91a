# The README's two commands are `make demo` and `make test`; both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# GPT-2's BPE files: tiktoken downloads them once; offline, a ready cache beside the project is used when present.
ifneq ($(wildcard ../shared/tiktoken-cache),)
export TIKTOKEN_CACHE_DIR ?= $(abspath ../shared/tiktoken-cache)
endif

.PHONY: install demo test chromium lab export readme bench

$(STAMP): setup.py settings.ini
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/zo-gpt prepare --out data/zero_one-compact --vocab compact
	$(BIN)/zo-gpt train --preset cpu --out_dir=runs/cpu --reuse

# One torch/BLAS thread per process: nbdev_test and pytest each run two at a time on a 2-core machine. Notebooks that
# pytest runs under papermill are left out of nbdev_test, so no notebook's work is done twice: 03_train at its
# defaults (the suite's one full cpu-preset run, which 04b_export and 03c_ablation then reuse; 03c also trains its
# frozen-positions run), the others with small parameters (index, 03a_panel and 05_cli train; 02b_evaluation,
# 04_profile and 04a_losses measure at sizes that take minutes).
# pytest-xdist keeps each group of tests that shares a run on one worker (--dist loadgroup).
# The browser test drives Debian's chromium with playwright (never `playwright install`).
PAPERMILL_NOTEBOOKS := ^(index|02b_evaluation|03_train|03a_panel|03c_ablation|04_profile|04a_losses|04b_export|05_cli)\.ipynb$$|^[_.]
test: $(STAMP) chromium
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --skip_file_re '$(PAPERMILL_NOTEBOOKS)'
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadgroup tests

chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)

# JupyterLab refuses to run as root unless told.
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=nbs $(if $(filter 0,$(shell id -u)),--allow-root)

# After editing notebooks: export the package, tidy notebook metadata and stale widget state, regenerate README.md.
export: $(STAMP)
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean && $(BIN)/python tools/tidy.py && $(BIN)/python tools/readme.py

bench: $(STAMP)
	$(BIN)/python bench/prepare.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/threads.py
	$(BIN)/python bench/attention.py
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/panel.py
	$(BIN)/python bench/ladder.py
