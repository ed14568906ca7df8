# Local development and CI entry points.
# BACKEND=embedded (default, no Docker), localstack (LocalStack 4.14.0: in Docker compose where an engine
# answers, else as a host process; LOCALSTACK_RUNNER=docker|host picks) or ministack-docker (compose).
# TARGET=aws with deploy/destroy: the same infra/ on AWS (ENV=<suffix>, BACKEND_CONFIG=<S3 backend file>).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
BACKEND ?= embedded
VENV := .venv
MINISTACK_VENV := .venv-ministack
CHECKOV_VENV := .venv-checkov
LOCUST_VENV := .venv-locust
LOCALSTACK_VENV := .venv-localstack
LAMBDA_VENV := .venv-lambda-python3.12
LOCALSTACK_VERSION := 4.14.0
# what localstack-core 4.14.0 resolves with (checked 2026-12-06): later releases of these break it
LOCALSTACK_PINS := 'cbor2<6' 'pyopenssl>=25,<26' 'cryptography>=45.0.7,<47' service_identity
PY := $(VENV)/bin/python
MINISTACK_VERSION := 1.5.33
CHECKOV_VERSION := 3.3.30
TESTBED := $(PY) -m testbed --backend $(BACKEND)
# host or docker: how BACKEND=localstack runs on this machine (asked only for that backend)
LOCALSTACK_RUNS := $(if $(filter localstack,$(BACKEND)),$(shell $(PYTHON) -m testbed.lifecycle.runners))
# decided once per make: the CLI and the tests it starts run LocalStack the way the venvs were made for
ifneq ($(LOCALSTACK_RUNS),)
export LOCALSTACK_RUNNER := $(LOCALSTACK_RUNS)
endif
LOCAL_STACK := $(if $(filter embedded,$(BACKEND)),yes,$(filter host,$(LOCALSTACK_RUNS)))
ENV ?= dev
BACKEND_CONFIG ?= backend.s3.hcl
FLEET ?= simulator/fleets/smoke.yaml
DURATION ?= 60
# pytest worker processes for `make test`, each with a stack of its own on free ports: a stack test
# spends most of its time waiting (the provider's propagation waits, redelivery timeouts), so three
# workers on two cores finish sooner. The compose backends' stacks take fixed ports: one process.
TEST_WORKERS ?= $(if $(LOCAL_STACK),3,0)
BUNDLE_SOURCES := $(shell find processor telemetry -name '*.py' 2>/dev/null) processor/requirements.txt

.PHONY: help deps doctor venvs build up down clean demo plan outputs test test-unit test-contract test-e2e mutation lint docs bench-processor bench-simulator bench-ingress simulate bench load deploy destroy redrive logs status inspect iam-check parity

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

deps: ## install the system packages pip cannot (Mosquitto and its clients; with make test, Chromium) where missing
	@$(PYTHON) -m testbed.operate.deps --backend $(BACKEND) $(DEPS_FLAGS)

doctor: ## check this machine first (Python, Terraform and its provider source, Mosquitto, ports, disk, Docker)
	@$(PYTHON) -m testbed.operate.doctor --backend $(BACKEND) $(DOCTOR_FLAGS)

$(VENV)/.installed: pyproject.toml
	@echo "==> $(VENV): the project and its tools (first run: a minute or two)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# ministack pins botocore exactly, so it lives in its own venv; its Lambda workers run on that venv's
# Python with its boto3: Python 3.12 where there is one, as the functions' python3.12 runtime names.
$(MINISTACK_VENV)/.installed: Makefile
	@echo "==> $(MINISTACK_VENV): the emulator, ministack $(MINISTACK_VERSION), in its own venv (it pins botocore)"
	@python=$$($(PYTHON) -m testbed.lifecycle.interpreters 3.12 2>/dev/null) || { python=$(PYTHON); \
	  echo "    no Python 3.12 here: Lambda functions run on $$($(PYTHON) --version) (make parity says so)"; }; \
	  $$python -m venv --clear $(MINISTACK_VENV)
	$(MINISTACK_VENV)/bin/pip install --quiet ministack==$(MINISTACK_VERSION) boto3 cryptography
	touch $@

# Locust monkey-patches the standard library with gevent at import: it runs the fleet from a venv of its own.
$(LOCUST_VENV)/.installed: Makefile pyproject.toml
	@echo "==> $(LOCUST_VENV): Locust (the project's [locust] extra) and the project, for RUNNER=locust"
	$(PYTHON) -m venv $(LOCUST_VENV)
	$(LOCUST_VENV)/bin/pip install --quiet -e '.[locust]'
	touch $@

# LocalStack without Docker (BACKEND=localstack, no engine): localstack-core on Python 3.13 in a venv of its own,
# with the project (--no-deps) so that LocalStack finds our plugins (DynamoDB from moto, Lambda as local
# processes); the Lambda runtime python3.12, with boto3 as AWS's runtime has it, in another.
$(LOCALSTACK_VENV)/.installed: Makefile pyproject.toml
	@echo "==> $(LOCALSTACK_VENV): LocalStack $(LOCALSTACK_VERSION) on Python 3.13 (first run: a minute, ~500 MB)"
	@python313=$$($(PYTHON) -m testbed.lifecycle.interpreters 3.13) && $$python313 -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/pip install --quiet 'localstack-core[runtime]==$(LOCALSTACK_VERSION)' $(LOCALSTACK_PINS)
	$(LOCALSTACK_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

$(LAMBDA_VENV)/.installed: Makefile
	@echo "==> $(LAMBDA_VENV): the Lambda python3.12 runtime (boto3, as AWS's runtime has it)"
	@python312=$$($(PYTHON) -m testbed.lifecycle.interpreters 3.12) && $$python312 -m venv $(LAMBDA_VENV)
	$(LAMBDA_VENV)/bin/pip install --quiet boto3
	touch $@

$(CHECKOV_VENV)/.installed: Makefile
	@echo "==> $(CHECKOV_VENV): checkov $(CHECKOV_VERSION) for the tests' Terraform policy checks"
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

EMULATOR_VENVS := $(if $(filter host,$(LOCALSTACK_RUNS)),$(LOCALSTACK_VENV)/.installed $(LAMBDA_VENV)/.installed,$(MINISTACK_VENV)/.installed)
venvs: $(VENV)/.installed $(EMULATOR_VENVS) ## create the project and emulator venvs

build/processor.zip: $(VENV)/.installed $(BUNDLE_SOURCES)
	$(PY) -m testbed build

build: build/processor.zip ## build the processor Lambda zip (deterministic)

up: deps doctor venvs build ## start the local stack and deploy infra/ (idempotent)
	$(TESTBED) up

down: $(VENV)/.installed ## stop what `make up` started (state is saved)
	$(TESTBED) down

clean: $(VENV)/.installed ## stop and remove all local state
	$(TESTBED) clean

outputs: $(VENV)/.installed ## print the deployed stack's outputs
	$(TESTBED) outputs

plan: venvs build ## show what a new apply would change on the running stack
	$(TESTBED) plan

demo: deps doctor venvs build ## the main job: bring the stack up, send messages through it, run the smoke scenario
	$(TESTBED) demo

load: venvs ## compose backends: the simulator container against the stack (FLEET=file DURATION=s)
	$(TESTBED) load --fleet $(FLEET) --duration $(DURATION)

deploy: venvs build ## TARGET=aws ENV=<suffix> BACKEND_CONFIG=<file>: infra/ on AWS, S3 state, IoT rule on
	@test "$(TARGET)" = aws || { echo "make deploy needs TARGET=aws (a local stack is make up)"; exit 2; }
	ENV=$(ENV) BACKEND_CONFIG=$(BACKEND_CONFIG) $(PY) -m testbed --backend aws up

destroy: venvs ## TARGET=aws ENV=<suffix>: remove provisioned things and every deployed resource
	@test "$(TARGET)" = aws || { echo "make destroy needs TARGET=aws (a local stack is make clean)"; exit 2; }
	ENV=$(ENV) BACKEND_CONFIG=$(BACKEND_CONFIG) $(PY) -m testbed --backend aws destroy

SCENARIO ?= smoke
RUNNER ?= simulator
WORKERS ?= 2
simulate: venvs build $(if $(filter locust,$(RUNNER)),$(LOCUST_VENV)/.installed) ## run a load scenario (SCENARIO=smoke|steady|burst|faults|soak|path.yaml; RUNNER=locust WORKERS=3 on Locust) and report
	$(TESTBED) simulate $(SCENARIO) --runner $(RUNNER) --workers $(WORKERS)

bench-processor: venvs build ## processor records/s in-process and through the deployed function
	$(TESTBED) bench-processor

bench-simulator: $(VENV)/.installed ## simulator: 10k connections, QoS 0/1 msg/s against a private broker
	$(TESTBED) bench-simulator

bench-ingress: venvs build ## highest zero-loss end-to-end rate of each ingress mode (direct, sqs, iot)
	$(TESTBED) bench-ingress

bench-fault-proxy: venvs build ## the API fault proxy: latency and CPU it adds per call (RATE=msg/s also: the pipeline's rate through it)
	$(TESTBED) bench-fault-proxy $(if $(RATE),--rate $(RATE))

bench: venvs build ## the emulator's ceiling, then the highest good end-to-end rate as a ratio of it with CPU per message by process, the naive design's, and the API fault proxy's cost
	$(TESTBED) bench

logs: $(VENV)/.installed ## follow the emulator, broker, bridge and processor logs, one prefix each (Ctrl-C stops)
	$(TESTBED) logs --follow

parity: $(VENV)/.installed ## probe the running stack for the AWS behaviours the pipeline relies on: feature, AWS, here, consequence
	$(TESTBED) parity

iam-check: venvs build ## with IAM enforced, take each role-policy action away in turn and probe the pipeline
	IAM=enforce $(TESTBED) iam-check

status: $(VENV)/.installed ## what runs: PIDs, ports, ingress mode, how old the stack outputs are
	$(TESTBED) status

inspect: $(VENV)/.installed ## what the stores hold: telemetry items, queue depths, quarantine reasons, archive
	$(TESTBED) inspect

redrive: $(VENV)/.installed ## move what the dead-letter queue holds back to the ingest queue, with a count
	$(TESTBED) redrive

lint: $(VENV)/.installed ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

docs: $(VENV)/.installed ## build the manual (docs/) as a site with MkDocs, every link checked (.testbed/site)
	$(PY) -m testbed.cli.reference
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

test-unit: $(VENV)/.installed ## unit tests (no stack)
	$(PY) -m pytest tests/unit

test-contract: venvs $(CHECKOV_VENV)/.installed build ## static contract tests (Terraform, checkov, docs)
	$(PY) -m pytest tests/contract

test-e2e: venvs build ## end-to-end tests on their own stack (BACKEND=localstack: in Docker, else as a host process)
	BACKEND=$(BACKEND) $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal tests/e2e

mutation: $(VENV)/.installed ## mutation testing of processor/, the rule, the bridge and reconcile, judged by its budget
	PROPERTY_EXAMPLES_CAP=20 $(PY) -m mutmut run
	mkdir -p reports
	$(PY) -m tests.mutation_budget --json reports/mutation.json

test: DOCTOR_FLAGS := --tests
test: DEPS_FLAGS := --tests
test: deps doctor ## everything: lint, unit, contract and end-to-end tests (on BACKEND=embedded: the e2e suite again on LocalStack)
	@$(MAKE) --no-print-directory -j3 -Otarget $(VENV)/.installed $(MINISTACK_VENV)/.installed $(CHECKOV_VENV)/.installed $(LOCUST_VENV)/.installed $(LOCALSTACK_VENV)/.installed $(LAMBDA_VENV)/.installed
	@$(MAKE) --no-print-directory build lint docs
	BACKEND=$(BACKEND) $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal tests
	$(if $(filter embedded,$(BACKEND)),LOCALSTACK_RUNNER=host BACKEND=localstack $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal tests/e2e)
