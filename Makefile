# `make run` starts the fleet on a local stack; `make test` runs every test. Both set up what
# they need first: a virtualenv in .venv with the project installed, and redis-server.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install lock upgrade redis browser loadgen standin run test docs fuzz chaos fleet bench lint clean screenshots vendor

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv: the exact versions of requirements.lock (with hashes), then the project

# Exact versions (with their hashes) from requirements.lock, the set the suite last passed with;
# then the project itself, editable, without re-resolving anything.
$(VENV)/.installed: requirements.lock setup.cfg setup.py
	@python3 -m venv $(VENV) 2>/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv && python3 -m venv $(VENV); }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q --require-hashes -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	@touch $@

PIP_COMPILE = $(VENV)/bin/pip-compile -q --extra test --generate-hashes --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links -o requirements.lock setup.cfg

lock: install  ## re-resolve requirements.lock after a change to setup.cfg (keeps the pins that still fit)
	$(VENV)/bin/pip install -q pip-tools
	$(PIP_COMPILE)

upgrade: install  ## the newest versions setup.cfg's ranges allow, into requirements.lock, then the whole suite
	$(VENV)/bin/pip install -q pip-tools
	$(PIP_COMPILE) --upgrade
	$(MAKE) test

redis:  ## install redis-server (and faketime, for the clock-skew tests) through apt-get when missing
	@command -v redis-server >/dev/null && command -v faketime >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server faketime; }

# Every apt-get install here takes --no-install-recommends: chromium's recommends alone (CUPS's
# printer setup, avahi, upower, a notification daemon, its setuid sandbox) are ~160 of the
# ~400 packages it pulls onto a bare Debian. The headless test needs none of them: it runs
# --no-sandbox --disable-gpu and reads the page's DOM, not its pixels; a font comes all the
# same (libfontconfig1 depends on fonts-dejavu-core).
browser:  ## install Debian's chromium (the share button's test drives it; no browser download) when missing
	@command -v chromium >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }

loadgen:  ## install wrk (the read API's load generator in `make bench` and its test) when missing
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk; }

standin: install  ## install ministack, the bench's fast SQS stand-in, in bench/.sqs-standin (pinned)
	$(PY) bench/standin.py

run: install redis  ## the whole fleet on a local stack (moto, redis-server, supervisord); Ctrl-C stops it
	$(PY) bin/run-local

# Two pytest workers (pytest-xdist), each with its own moto, redis-server and Cluster: most
# tests wait on real processes, not on the CPU. A file's tests stay on one worker (its module
# fixtures, such as the bench's quick run, happen once).
TEST_WORKERS ?= 2

test: install redis browser loadgen standin  ## every test: unit and integration against real local servers
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not long" $(PYTEST_ARGS)

# Warnings are errors: a broken reference or a table that does not parse fails the build.
# `make test` builds them too (tests/test_docs.py), so PYTEST_ARGS still picks what runs.
docs: install  ## the docs (Sphinx) into docs/_build/html, warnings as errors; open index.html
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

fuzz: install redis  ## 5,000 random bad bodies through a live daemon; prints the figures
	WORKERS_FUZZ_BODIES=5000 $(PY) -m pytest tests/test_bad_input.py -k live_daemon --timeout 1800

chaos: install redis  ## 20,000 events through the fleet while daemons, Redis, SQS and S3 fail; figures
	WORKERS_CHAOS_EVENTS=20000 $(PY) -m pytest tests/chaos/test_chaos.py -k under_chaos --timeout 1200

fleet: install redis  ## hosts as network namespaces (root): one dies, one is cut off for 20 s; counts exact
	$(PY) -m pytest tests/test_hosts.py -m long --timeout 1800

bench: install redis loadgen standin  ## throughput, SQS requests, CPU and Redis memory, side by side with baselines
	$(PY) bench/bench.py

screenshots: install redis browser  ## the console with sample data: a screenshot of each page into docs/screenshots/
	$(PY) bin/console-screenshots

vendor:  ## re-fetch the console's htmx and uPlot (npm pack) at the versions pinned in workers/console/static/vendor/manifest.json
	python3 bin/vendor-console-js

lint: install  ## ruff, mypy on the package (setup.cfg), and the layers' contracts (.importlinter)
	$(VENV)/bin/ruff check workers devstack tests bench bin docs
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache docs/_build
