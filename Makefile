# Two commands do all set-up on a fresh machine:
#   make demo   - install what the demo needs into .venv, log the demo runs, print the tensorboard command
#   make test   - install what the tests need (Python, Node, Debian's chromium), run every test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch==2.13.0 is the CPU build that lies on these machines' disk; the package itself asks for a range.
TORCH  ?= torch==2.13.0
LOGDIR ?= runs/demo

.PHONY: demo test test-python test-frontend frontend install-demo install-test chromium

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

install-demo: $(VENV)/bin/python
	$(PIP) install "$(TORCH)" -e ".[demo]"

install-test: $(VENV)/bin/python
	$(PIP) install "$(TORCH)" -e ".[test]"

chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

frontend/node_modules: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch frontend/node_modules

# Rebuild the committed bundle and fail if it differs from what is committed.
frontend: frontend/node_modules
	cd frontend && npm run build
	git diff --exit-code --stat -- tensorboard_plugin_attention/static

test-frontend: frontend/node_modules
	cd frontend && npm test

test-python: install-test chromium
	$(PY) -m pytest -q tests

test: install-test chromium frontend test-frontend test-python

demo: install-demo
	$(PY) -m tensorboard_plugin_attention demo --logdir $(LOGDIR)
