# Set-up in one command each: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torchvision needs this torch build; pip on these machines takes both from local disk.
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test lint docs gallery bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[zoo,dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/resprobe analyze

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check resprobe plugins tests benchmarks scripts
	$(BIN)/mypy resprobe

docs: install
	$(BIN)/mkdocs build --strict --quiet

gallery: install
	$(BIN)/python scripts/gallery.py

bench: install
	$(BIN)/python benchmarks/capture.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .mypy_cache site
