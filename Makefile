# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing and install jaxinfo (editable) with all its
# extras (data, plots, test, docs); the stamp file makes a second run install nothing new.
# `make docs` builds the documentation site (mkdocs, strict) into site/.
# `make data` installs full-size Fashion-MNIST (Debian's dataset-fashion-mnist) for benchmarks.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.jaxinfo-installed
DEMO_OUT ?= demo_output
SITE_DIR ?= site

.PHONY: demo test docs data install bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[all,test,docs]"
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

# Full-size Fashion-MNIST (60,000 + 10,000 IDX images in /usr/share/datasets/fashion-mnist):
# installed with apt where we are root or have sudo, otherwise the command is printed.
FASHION_DIR := /usr/share/datasets/fashion-mnist
data:
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then \
		echo "Fashion-MNIST is installed in $(FASHION_DIR)"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get install -y dataset-fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist); \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
		sudo apt-get install -y dataset-fashion-mnist; \
	else \
		echo "Install full-size Fashion-MNIST with:  sudo apt-get install dataset-fashion-mnist"; \
		echo "(or point JAXINFO_DATA_DIR at a folder holding fashion_mnist/*-ubyte.gz)"; \
	fi

clean:
	rm -rf $(VENV) $(DEMO_OUT) $(SITE_DIR) .pytest_cache
