# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing and install jaxinfo (editable) with its
# test and docs extras; the stamp file makes a second run install nothing new.
# `make docs` builds the documentation site (mkdocs, strict) into site/.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.jaxinfo-installed
DEMO_OUT ?= demo_output
SITE_DIR ?= site

.PHONY: demo test docs install bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,docs]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m jaxinfo.cli demo --out $(DEMO_OUT)

# The docs extra (mkdocs-material, mkdocstrings) comes with the stamp; strict mode fails on
# broken links and on docstrings that document parameters a function does not have.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir $(SITE_DIR)

clean:
	rm -rf $(VENV) $(DEMO_OUT) $(SITE_DIR) .pytest_cache
