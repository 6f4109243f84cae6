# Every target sets up .venv itself: a fresh clone needs nothing installed by hand.
VENV ?= .venv
PYTHON ?= python3
# torch is pinned here (not in pyproject.toml, which accepts any torch >= 2.1) so that pip
# takes the CPU build of 2.13 instead of resolving a multi-GB CUDA build. Override freely:
#   make test TORCH_SPEC='torch==2.5.*'
TORCH_SPEC ?= torch==2.13.*
BIN := $(VENV)/bin

.PHONY: demo test bench-accuracy bench-latency bench-pareto bench-layout bench-orin bench-training clean

$(BIN)/dpedge: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[train,export,plots,dev]"
	touch $@

demo: $(BIN)/dpedge
	$(BIN)/dpedge demo

test: $(BIN)/dpedge
	$(BIN)/python -m pytest -q

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

clean:
	rm -rf $(VENV) runs build *.egg-info
