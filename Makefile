# make demo   create the venv, start the embedded PostgreSQL, materialize every asset
# make test   run the test suite (it starts its own throwaway PostgreSQL)
# make ui     Dagster UI + daemon on http://127.0.0.1:3000
# make ui-viewer  the read-only UI for everyone else on http://127.0.0.1:3001 (docs/ACCESS.md)
# make bi     Superset with the fiscal-health dashboard on http://127.0.0.1:8088 (after make demo)
# make stop   stop the embedded PostgreSQL

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when the dependencies change, so a second `make demo` starts at once.
INSTALLED := $(VENV)/.installed

.PHONY: install demo ui ui-viewer bi test test-deps lint stop bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@echo "[install] creating $(VENV) and installing refresh_assets with its dependencies"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: install
	$(BIN)/refresh-assets demo

ui: install
	$(BIN)/refresh-assets ui

ui-viewer: install
	$(BIN)/refresh-assets ui --viewer

bi: install
	$(BIN)/refresh-assets bi superset

test: install test-deps
	$(BIN)/python -m pytest

# System packages the tests drive: Chromium (the change report and the browser tests) and
# Prometheus (the metrics scrape and `promtool check rules`), Redis (the Celery profile's broker).
# Installed with apt where we can.
test-deps:
	@missing=""; \
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing="$$missing chromium"; \
	command -v prometheus >/dev/null && command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "[test-deps] installing$$missing (apt)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "[test-deps] missing:$$missing; install them (Debian: apt-get install$$missing)"; fi; \
	fi

lint: install
	$(BIN)/ruff check refresh_assets tests benchmarks
	$(BIN)/refresh-assets dbt lint

stop:
	@if [ -x $(BIN)/refresh-assets ]; then $(BIN)/refresh-assets db stop; else echo "nothing installed; nothing to stop"; fi

# The figures of benchmarks/RESULTS.md, each benchmark on a home of its own. bench_celery
# needs redis-server (make test-deps). bench-long: the soak (15 minutes of edits, then the
# queue's drain) and the scaling figures (up to 48,000 city partitions), on a quiet machine.
bench: install
	$(BIN)/python benchmarks/bench_scores.py
	$(BIN)/python benchmarks/bench_entries.py
	$(BIN)/python benchmarks/bench_foundation.py
	$(BIN)/python benchmarks/bench_refresh.py
	$(BIN)/python benchmarks/bench_sources.py
	$(BIN)/python benchmarks/bench_forecast_layer.py
	$(BIN)/python benchmarks/bench_latency.py
	$(BIN)/python benchmarks/bench_celery.py

.PHONY: bench-long
bench-long: install
	$(BIN)/python benchmarks/bench_soak.py
	$(BIN)/python benchmarks/bench_scaling.py

# A Celery worker for the main job's steps (docs/CELERY.md): Redis on this machine unless
# REFRESH_CELERY_BROKER says otherwise; the runs need REFRESH_STEP_EXECUTOR=celery.
.PHONY: celery-worker
celery-worker: install
	REFRESH_CELERY_BROKER=$${REFRESH_CELERY_BROKER:-redis://127.0.0.1:6379/0} $(BIN)/refresh-assets celery worker

clean: stop
	rm -rf .refresh dbt_project/target dbt_project/logs
