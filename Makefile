# The README's two commands. Both create and use .venv in the repository root.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint format postgres-server clients

# The API tests also run against a throwaway PostgreSQL cluster (tests/api/pgcluster.py);
# they need the server binaries: Debian's postgresql package, installed when missing.
PG_INITDB := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb) $(shell command -v initdb 2>/dev/null))

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/landcover demo --out runs/demo

postgres-server:
ifeq ($(PG_INITDB),)
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
endif

# The real-client tests (tests/clients) run QGIS (Debian's python3-qgis, QGIS 3.22, installed
# here when missing) and the QGIS Deepness plugin 0.6.5, which is not on any package registry:
# they find a checkout's src folder in LANDCOVER_DEEPNESS, .cache/deepness/src or
# ~/.cache/landcover/deepness/src; when none is there, its public repository is cloned (tag
# 0.6.5) into .cache/deepness where GitHub is reachable; the tests skip naming what is missing.
DEEPNESS_URL := https://github.com/PUTvision/qgis-plugin-deepness
clients:
	test -d /usr/lib/python3/dist-packages/qgis || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-qgis) || echo "python3-qgis could not be installed: tests/clients will skip"
	test -n "$$LANDCOVER_DEEPNESS" || test -d .cache/deepness/src/deepness || test -d $$HOME/.cache/landcover/deepness/src/deepness || timeout 300 git clone --quiet --depth 1 --branch 0.6.5 $(DEEPNESS_URL) .cache/deepness || echo "Deepness 0.6.5 could not be cloned from $(DEEPNESS_URL): its test will skip"

# The browser tests (tests/web) drive Debian's chromium through Playwright (as root here);
# the API tests start a throwaway PostgreSQL cluster with the server's binaries.
test: $(STAMP) postgres-server clients
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
