# voicescale — every target creates or refreshes .venv on demand (keyed on the pinned requirements).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The stamp's name carries a hash of what the venv is built from, so editing the lock makes it stale.
REQ_HASH := $(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)

# Caches that are safe to share between clones live outside the repository.
# DeepSpeed's JIT-built ops record the absolute venv path, so one cache per checkout location
# (a cache shared by two clones would be rebuilt each time the other one uses it).
VENV_KEY := $(shell echo $(abspath $(VENV)) | sha256sum | cut -c1-12)
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/voicescale/torch_extensions/$(VENV_KEY)
export MLFLOW_DISABLE_TELEMETRY := true
# pip's site config lists local mirrors that lack most packages; silence its per-package warnings.
PIP_NOISE := is ignored: it is neither a file nor a directory

SWEEP ?= configs/sweeps/default.yaml
SWEEP_ARGS ?=
RUNS ?= runs
MLFLOW_PORT ?= 5000

.PHONY: help venv system-deps test test-fast lint corpus bench gpu-check drills scale-sweep mlflow-ui clean-venv cluster-up cluster-down

help:
	@echo "make scale-sweep   run (or resume) the sweep SWEEP=$(SWEEP): trials, MLflow, fits, report, promotion"
	@echo "                   (SWEEP_ARGS=-v: every trial's output on the console, not only in its logs/)"
	@echo "make mlflow-ui     serve the MLflow store under $(RUNS)/ on http://127.0.0.1:$(MLFLOW_PORT)"
	@echo "make test          create/refresh .venv, then run the whole test suite"
	@echo "make test-fast     the suite without tests marked slow"
	@echo "make lint          ruff"
	@echo "make corpus        build the embedded synthetic corpus (default preset)"
	@echo "make bench         benchmarks, then the table of performance ratios (bench/results.json)"
	@echo "make gpu-check     on a GPU machine: the GPU smoke sweep and its step time, MFU, memory"
	@echo "make drills        break the sweep for real (kills, lost node, MLflow outage, …); print the table"
	@echo "make cluster-up    start the Ray cluster cluster/launch/$(CLOUD).yaml (CLOUD=aws or gcp; ray up)"
	@echo "make cluster-down  tear it down (ray down)"

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "voicescale needs Python 3.11, got " + sys.version'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@rm -f $(VENV)/.installed-*
	@echo "installing pinned requirements into $(VENV) (first time: a few minutes, ~6 GB)"
	@# --no-deps: the lock is the complete resolved set (see its header). Byte-compiled here, not
	@# on import: where PYTHONDONTWRITEBYTECODE is set (this machine) nothing else ever would be,
	@# and every Ray worker would compile torch anew (--no-compile was tried: Ray Train timeouts).
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -r requirements.lock 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e . 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	@echo "building DeepSpeed's CPU communication op once (cached in $(TORCH_EXTENSIONS_DIR))"
	@$(PY) -c "from deepspeed.ops.op_builder.cpu.comm import ShareMemCommBuilder as B; B().load(verbose=False)" >/dev/null 2>&1 || \
	  echo "warning: could not pre-build deepspeed_shm_comm; the first trial will build it"
	@touch $@

# The report test renders report.html in headless Chromium (Debian's package).
system-deps:
	@command -v chromium >/dev/null || { \
	  echo "installing chromium (headless report rendering)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && \
	    $$SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null; } || \
	  echo "warning: could not install chromium; the report-rendering test will be skipped"; }

test: venv system-deps
	$(PY) -m pytest tests --durations=15

scale-sweep: venv
	$(VENV)/bin/voicescale sweep --config $(SWEEP) --runs-dir $(RUNS) --promote $(SWEEP_ARGS)

mlflow-ui: venv
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port $(MLFLOW_PORT) \
	  --backend-store-uri sqlite:///$(abspath $(RUNS))/mlflow.db

test-fast: venv
	$(PY) -m pytest tests -m "not slow"

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

corpus: venv
	$(VENV)/bin/voicescale corpus build --preset default

# The table of performance ratios (bench/run_all.py, written to bench/results.json) reads the
# default sweep's rows under $(RUNS)/default, running that sweep first when it has none.
bench: venv
	$(PY) bench/corpus_build.py
	$(PY) bench/alignment.py
	$(PY) bench/run_all.py --sweep-dir $(RUNS)/default

gpu-check: venv
	$(PY) bench/gpu_check.py --runs-dir $(RUNS)/gpu-check/$$(date +%Y%m%d-%H%M%S)

drills: venv
	$(PY) -m cluster.drills --work $(RUNS)/drills

clean-venv:
	rm -rf $(VENV)

# A Ray cluster on AWS or GCP from cluster/launch/$(CLOUD).yaml (edit its REPLACE_ME values first).
# `ray up` here drives the cloud through its SDK, which requirements.lock leaves out; and it copies
# Ray's auth token (~/.ray/auth_token, made here when missing) to every node.
CLOUD ?= aws
CLOUD_SDK_aws := boto3
CLOUD_PIP_aws := boto3
CLOUD_SDK_gcp := googleapiclient
CLOUD_PIP_gcp := google-api-python-client
ifneq ($(filter cluster-up cluster-down,$(MAKECMDGOALS)),)
ifeq ($(filter $(CLOUD),aws gcp),)
$(error unknown CLOUD=$(CLOUD): use CLOUD=aws or CLOUD=gcp (the configs are cluster/launch/aws.yaml, gcp.yaml))
endif
endif

cluster-up: venv
	@$(PY) -c "import $(CLOUD_SDK_$(CLOUD))" 2>/dev/null || { echo "ray up on $(CLOUD) needs $(CLOUD_PIP_$(CLOUD)), not in requirements.lock: $(PY) -m pip install $(CLOUD_PIP_$(CLOUD))" >&2; exit 2; }
	@$(VENV)/bin/ray get-auth-token --generate >/dev/null
	$(VENV)/bin/ray up -y cluster/launch/$(CLOUD).yaml

cluster-down: venv
	@$(PY) -c "import $(CLOUD_SDK_$(CLOUD))" 2>/dev/null || { echo "ray down on $(CLOUD) needs $(CLOUD_PIP_$(CLOUD)), not in requirements.lock: $(PY) -m pip install $(CLOUD_PIP_$(CLOUD))" >&2; exit 2; }
	$(VENV)/bin/ray down -y cluster/launch/$(CLOUD).yaml
