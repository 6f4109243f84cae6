# Every target sets up .venv itself: a fresh clone needs nothing installed by hand.
VENV ?= .venv
PYTHON ?= python3
# torch is pinned here (not in pyproject.toml, which accepts any torch >= 2.10, the first
# without known holes in loading files) so that pip takes the CPU build of 2.13 instead of
# resolving a multi-GB CUDA build. Override within that range:
#   make test TORCH_SPEC='torch==2.10.*'
TORCH_SPEC ?= torch==2.13.*
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint docs fuzz system-deps bench-accuracy bench-latency bench-pareto bench-layout bench-orin bench-training bench-render clean

$(BIN)/dpedge: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[train,export,plots,dev]"
	touch $@

# The deploy tests start a real OpenSSH server on 127.0.0.1 and the jetson/ scripts are
# checked with shellcheck. Where either is missing and apt-get can install it (root on
# Debian/Ubuntu), install it; elsewhere those tests skip and say why. .ci/run runs this.
SYSTEM_DEPS := /usr/sbin/sshd:openssh-server /usr/bin/shellcheck:shellcheck
system-deps:
	@missing=""; for dep in $(SYSTEM_DEPS); do test -x "$${dep%%:*}" || missing="$$missing $${dep##*:}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing$$missing (for the deploy and jetson/ tests)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q $$missing >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null; }; \
	else echo "missing$$missing and no way to install it here: the tests that need it will be skipped"; fi

demo: $(BIN)/dpedge
	$(BIN)/dpedge demo

# The tests run in one process per core (pytest-xdist; worksteal: a worker that finishes
# early takes tests queued for the other), each on one thread: the tests' models are tiny,
# and torch's intra-op threads on them only contend for the cores the other worker needs.
PYTEST = OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto --dist worksteal

# The whole suite, as CI runs it, after the linter and the formatter's check.
test: $(BIN)/dpedge lint
	$(PYTEST)

# The inner loop: everything but the tests marked slow (training runs, subprocesses that
# train or export, the SSH deploy and kill tests), in under 3 minutes on 2 cores.
test-fast: $(BIN)/dpedge
	$(PYTEST) -m "not slow"

# The documentation site (MkDocs, Material theme) from docs/ into site/; strict: a broken
# link or a stale API reference fails the build, as it fails the test suite.
docs: $(BIN)/dpedge
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(BIN)/dpedge
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# tests/fuzz with many examples per case (`make test` runs a few, the same ones each time):
# bad option values and damaged files for every command. Minutes, not seconds; failures are
# kept in .hypothesis/ and tried first next time. More: make fuzz FUZZ_EXAMPLES=1000
FUZZ_EXAMPLES ?= 150
fuzz: $(BIN)/dpedge
	DPEDGE_FUZZ=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/fuzz

bench-accuracy: $(BIN)/dpedge
	$(BIN)/dpedge bench accuracy

bench-latency: $(BIN)/dpedge
	$(BIN)/dpedge bench latency

bench-pareto: $(BIN)/dpedge
	$(BIN)/dpedge bench pareto

bench-layout: $(BIN)/dpedge
	$(BIN)/dpedge bench layout

bench-orin: $(BIN)/dpedge
	$(BIN)/dpedge bench orin

bench-training: $(BIN)/dpedge
	$(BIN)/dpedge bench training

# docs/benchmarks.md from the results files in docs/bench/results/ (the tests check it is current)
bench-render: $(BIN)/dpedge
	$(BIN)/dpedge bench render

clean:
	rm -rf $(VENV) runs build *.egg-info
