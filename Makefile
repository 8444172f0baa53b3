# Everything goes through the venv; `make setup` creates it when missing.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done
JOBS   ?= 2
# The CPU build that lies on this machine's disk. On a GPU machine pass the build for its CUDA, e.g.
#   make setup TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# or install torch first and pass TORCH= (empty) to keep it.
TORCH  ?= torch==2.13.0

.PHONY: setup test test-slow demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(TORCH),$(PY) -m pip install -q $(TORCH))
	# ve-fairseq = upstream fairseq + the Python 3.11 fix; --no-deps keeps torchaudio out.
	$(PY) -m pip install -q --no-deps ve-fairseq==0.12.3
	$(PY) -m pip install -q hydra-core==1.3.8 omegaconf==2.3.1 bitarray sacrebleu regex cython \
		numpy packaging tqdm cffi
	$(PY) -m pip install -q -e '.[dev,hf,dictionaries]'
	touch $(STAMP)

# Fast tier (CI). Slow cases are marked `slow` and run by `make test-slow`.
test: setup
	$(PY) -m pytest -q -n $(JOBS) -m "not slow" tests

test-slow: setup
	$(PY) -m pytest -q -n $(JOBS) -m slow tests

demo: setup
	bash scripts/demo.sh

bench: setup
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) demo bench/out
