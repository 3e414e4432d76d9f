# Vigil: `make run` starts everything on this host; `make test` runs the whole suite.
# `make run ARGS='--listen 127.0.0.1:9500'` passes flags to `vigil up` (see `vigil up --help`).
PYTHON ?= python3
ARGS ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint peers bench clean

# Not quiet: the first install takes about a minute, and pip's lines show it getting on.
$(STAMP): pyproject.toml
	@echo "installing Vigil and its test tools into $(VENV) (about a minute the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/vigil up $(ARGS)

# Debian peers the tests run against (chromium: the UI's browser tests); installed only when missing (root on the CI machine).
PEERS := prometheus:prometheus victoria-metrics:victoria-metrics prometheus-node-exporter:prometheus-node-exporter \
  prometheus-blackbox-exporter:prometheus-blackbox-exporter mtail:mtail logger:bsdutils \
  journalctl:systemd /lib/systemd/systemd-journal-remote:systemd-journal-remote \
  amtool:prometheus-alertmanager promtool:prometheus chromium:chromium
peers:
	@missing=""; for p in $(PEERS); do bin=$${p%%:*}; pkg=$${p##*:}; \
	  command -v $$bin >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null \
	    || echo "warning: could not install$$missing; tests needing them will be skipped"; \
	fi

# The whole suite, slow tests included, on every core: one pytest-xdist worker per CPU, each test
# file on one worker (module fixtures such as the PromQL conformance sessions are built once).
# `make test PYTEST_WORKERS=0` runs it serially; `pytest -m "not slow"` is the quick loop.
PYTEST_WORKERS ?= auto
test: $(STAMP) peers
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src

bench: $(STAMP) peers
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.query
	$(BIN)/python -m bench.logs

clean:
	rm -rf $(VENV) build *.egg-info
