# make test  - set everything up (Debian packages, .venv) and run every check and test
# make unit  - the fast part: no gearmand, no Tempest, no Keystone
# make faults - the fault suite alone (docs/reliability.md)
# make browser - the dashboard in chromium (FARM_SCREENSHOTS=docs/images refreshes the docs' shots)
# make lint  - ruff and mypy
# make demo  - the main job end to end: gearmand, Keystone, a worker, a real Tempest run
SHELL := /bin/bash
PYTHON ?= python3
export FARM_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/refstack-farm
export FARM_TEST_CACHE ?= $(FARM_CACHE)
export UV_CACHE_DIR ?= $(FARM_CACHE)/uv
VENV := .venv
PYTEST_ARGS ?=
# test files in parallel (pytest-xdist): each file stays in one process, so module fixtures
# (the booted hosts, RefStack) are made once; each process has its own session gearmand
# and Keystone. PYTEST_JOBS=0 runs them in one process.
PYTEST_JOBS ?= 2

.PHONY: test unit faults browser lint bootstrap bench bench-campaign bench-cost bench-growth \
	clean demo

bootstrap:
	@PYTHON=$(PYTHON) scripts/bootstrap.sh

lint: bootstrap
	$(VENV)/bin/ruff check worker client server lab tests bench scripts library
	$(VENV)/bin/mypy
	$(VENV)/bin/yamllint -s roles playbooks inventories docs/examples monitoring
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/ansible-lint -q

test: lint
	$(VENV)/bin/pytest -n $(PYTEST_JOBS) --dist loadfile $(PYTEST_ARGS)

faults: bootstrap
	$(VENV)/bin/pytest tests/faults $(PYTEST_ARGS)

browser: bootstrap
	$(VENV)/bin/pytest tests/browser $(PYTEST_ARGS)

unit: bootstrap
	$(VENV)/bin/pytest -m "not gearman and not tempest and not cloud and not deployment and not browser" $(PYTEST_ARGS)

bench: bootstrap
	$(VENV)/bin/python bench/environments.py
	$(VENV)/bin/python bench/status_api.py
	$(VENV)/bin/python bench/dashboard.py
	$(VENV)/bin/python bench/dispatch.py
	$(VENV)/bin/python bench/startup.py

# a campaign: 1,000 dry runs over 33/40/47 with 1, 2, 4 and 8 workers on four booted
# systemd-nspawn hosts, two gearmand and two servers on PostgreSQL, then the same with kill -9
# faults in the middle (~6 min; docs/performance.md#a-campaign)
bench-campaign: bootstrap
	$(VENV)/bin/python bench/campaign.py
	$(VENV)/bin/python bench/campaign.py --faults

# the cost of one run: dry runs with and without the kept test list, a real run's phases
# against `tempest run` directly (~8 min; docs/performance.md#the-cost-of-one-run-issue-22)
bench-cost: bootstrap
	$(VENV)/bin/python bench/run_cost.py

# the status server on a store of 100,000 runs and 10,000,000 per-test rows against one of
# a page of runs, SQLite and PostgreSQL (~25 min; docs/performance.md#growth)
bench-growth: bootstrap
	$(VENV)/bin/python bench/growth.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

demo: bootstrap
	$(VENV)/bin/python scripts/demo.py $(DEMO_ARGS)
