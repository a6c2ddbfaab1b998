# Fraud batch platform — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CLIENT ?= demo
DATE ?= 2025-11-21
EVENTS ?= 20000

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(BIN)/fraudbatch: pyproject.toml
	@command -v java >/dev/null || { echo "Java 17+ is needed for Spark (apt-get install openjdk-17-jre-headless)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/fraudbatch ## create .venv and install the project with its dev tools

flink-env: ## create .venv-flink, the Flink jobs' own venv with PyFlink (docs/adr/0009)
	PYTHON=$(PYTHON) scripts/flink-env.sh

demo: install ## run a whole client-day end to end (CLIENT=demo DATE=2025-11-21 EVENTS=20000)
	$(BIN)/fraudbatch demo --client $(CLIENT) --date $(DATE) --events $(EVENTS)

test: check flink-env ## make check, then the whole test suite (what CI runs), with a local Cassandra node
	scripts/ensure-chromium.sh
	scripts/cassandra.sh start
# The node is stopped whatever pytest returns, and pytest's exit code is the target's.
	rc=0; $(BIN)/pytest -q -ra --durations=25 || rc=$$?; scripts/cassandra.sh stop; exit $$rc

test-unit: install ## the unit tier: plain logic, no sockets, no processes (under a minute)
	$(BIN)/pytest -q tests/unit

test-service: install ## the service tier: DCluster, FP, luigid, moto and the operations page on loopback
	scripts/ensure-chromium.sh
	$(BIN)/pytest -q tests/service

test-integration: install flink-env ## the integration tier: real Spark, Flink and a local Cassandra node
	scripts/cassandra.sh start
	rc=0; $(BIN)/pytest -q -ra tests/integration || rc=$$?; scripts/cassandra.sh stop; exit $$rc

test-e2e: install flink-env ## the e2e tier: whole client-days through the real services
	scripts/cassandra.sh start
	rc=0; $(BIN)/pytest -q -ra tests/e2e || rc=$$?; scripts/cassandra.sh stop; exit $$rc

lint: check ## the same as make check

check: install ## ruff format --check, ruff and mypy
	$(BIN)/ruff format --check --quiet .
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy

bench: install ## generate a 1,000,000-event client-day and time every stage
	$(BIN)/fraudbatch bench --events 1000000

services-up: install ## start luigid (:8082), DCluster (:8091) and FP (:8092) in the background
	$(BIN)/fraudbatch services start

services-down: ## stop the background services
	$(BIN)/fraudbatch services stop

cassandra-up: install ## install (from Maven Central) and start the local Cassandra node on 127.0.0.1:9042
	scripts/cassandra.sh start
	$(BIN)/python -m storage.migrations

cassandra-down: ## stop the local Cassandra node
	scripts/cassandra.sh stop

bench-cassandra: install ## DFE writer vs raw-driver ceiling, 1,000,000 rows into the local Cassandra node
	scripts/cassandra.sh start
	$(BIN)/python -m storage.bench_dfe --rows 1000000

flink-cluster-up: flink-env ## start a Flink session cluster (JobManager + TaskManager, UI :8094) for the standalone provider
	scripts/flink-cluster.sh start

flink-cluster-down: ## stop the Flink session cluster
	scripts/flink-cluster.sh stop

connect-up: install ## start the resident Spark session (Spark Connect) on 127.0.0.1:15002
	scripts/spark-connect.sh start

connect-down: ## stop the resident Spark session
	scripts/spark-connect.sh stop

bench-overhead: install ## per-job DCluster overhead of a trivial Spark job, with and without the resident session
	$(BIN)/python -m dcluster.bench_overhead --jobs 5

clean: ## remove generated data, logs and service state (var/)
	rm -rf var

.PHONY: help install flink-env demo test test-unit test-service test-integration test-e2e lint check bench services-up services-down cassandra-up \
	cassandra-down bench-cassandra flink-cluster-up flink-cluster-down connect-up connect-down bench-overhead clean
