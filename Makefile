# sagedet — set-up, demo and tests. `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEMO_DIR ?= demo

.PHONY: venv demo test test-fast clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c constraints.txt -e '.[test]'
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -ra

test-fast: venv
	$(PY) -m pytest -ra -m "not slow"

clean:
	rm -rf $(VENV) $(DEMO_DIR) build src/*.egg-info .pytest_cache
