# Valor: local cluster, tests and tools.  `make help` lists the targets.
#
# Override any of these on the command line, e.g. `make up NATS_PORT_BASE=5222`.
# While the cluster runs, var/ports.mk remembers its ports so that make status,
# make demo and make down find it without repeating them.

-include var/ports.mk

PYTHON                 ?= python3
VENV                   ?= .venv
NATS_PORT_BASE         ?= 4222
NATS_CLUSTER_PORT_BASE ?= 6222
NATS_MONITOR_PORT_BASE ?= 8222
METRICS_PORT_BASE      ?= 9100
NATS_TLS               ?= 0
UP_TIMEOUT             ?= 60
# Seconds every service must stay up, unrestarted, before `make up` calls the stack healthy (decision 67).
UP_SETTLE              ?= 10

VAR       := $(CURDIR)/var
VENV_DIR  := $(abspath $(VENV))
PY        := $(VENV_DIR)/bin/python
CTL       := $(VENV_DIR)/bin/supervisorctl -c $(VAR)/supervisord.conf
port       = $(shell echo $$(( $(1) + $(2) )))
CLIENT_PORTS  := $(NATS_PORT_BASE) $(call port,$(NATS_PORT_BASE),1) $(call port,$(NATS_PORT_BASE),2)
MONITOR_PORTS := $(NATS_MONITOR_PORT_BASE),$(call port,$(NATS_MONITOR_PORT_BASE),1),$(call port,$(NATS_MONITOR_PORT_BASE),2)
comma := ,
empty :=
space := $(empty) $(empty)

# Only the targets that talk to the local cluster see it: tests start their own servers.
# NATS_TLS=1: clients and routes speak TLS, with a private CA and certificates made in var/tls/.
SCHEME := $(if $(filter 1,$(NATS_TLS)),tls,nats)
CLUSTER_URL := $(subst $(space),$(comma),$(foreach p,$(CLIENT_PORTS),$(SCHEME)://127.0.0.1:$(p)))
up down status demo chat login: export VALOR_NATS_URL := $(CLUSTER_URL)
up down status demo chat login: export VALOR_NATS_CA := $(if $(filter 1,$(NATS_TLS)),$(VAR)/tls/ca.pem,)
up down status demo chat login: export VALOR_REPLICAS := 3
# This checkout's cli password, whichever cluster the context (~/.config/valor/context.json) last recorded.
up down status demo chat login: export VALOR_SECRETS := $(VAR)/secrets

HEALTH = $(PY) deploy/health.py --var $(VAR) --venv $(VENV_DIR) --monitor-ports $(MONITOR_PORTS)

.PHONY: help venv tools up down status logs test lint schemas golden demo bench profile chaos

help:
	@echo "make up        start the 3-node JetStream cluster and the services (creates $(VENV) if missing; NATS_TLS=1: over TLS)"
	@echo "make down      stop everything; nothing is left running"
	@echo "make status    supervisor status and the cluster's health"
	@echo "make logs      follow var/log/*.log"
	@echo "make test      run the test suite"
	@echo "make lint      ruff check . and pyright on the contract and the domain"
	@echo "make schemas   write JSON Schema of every event and command to schemas/json/"
	@echo "make golden    record the golden PROMISES logs again (tests/golden/*.jsonl); review the diff"
	@echo "make demo      run the example workflows against the running cluster"
	@echo "make chaos     100 rounds of kill -9 under a 2,000-promise workload; prints the invariants' table"
	@echo "make chaos-net 62 rounds of network partitions, loss and quorum loss between simulated hosts (root)"
	@echo "make bench     measure the make up stack as shipped (valor plan/wait; reads at 1,000,000 events), then the engine floor: throughput, latency, rebuild, memory, chat reply, chat under load and catch-up (BENCH_ARGS=--quick for a smoke run)"
	@echo "make profile   py-spy samples of the scheduler and an executor under load, by area"
	@echo "variables: PYTHON=$(PYTHON) VENV=$(VENV) NATS_PORT_BASE=$(NATS_PORT_BASE)" \
	      "NATS_CLUSTER_PORT_BASE=$(NATS_CLUSTER_PORT_BASE) NATS_MONITOR_PORT_BASE=$(NATS_MONITOR_PORT_BASE)" \
	      "UP_TIMEOUT=$(UP_TIMEOUT) UP_SETTLE=$(UP_SETTLE)"

# The venv is (re)installed when pyproject.toml is newer than the last install (a new pinned dependency).
venv: $(VENV_DIR)/.installed
$(VENV_DIR)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV_DIR)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Claude Code's sandbox (code tasks refuse to run without it) needs bubblewrap and socat; the network-fault
# tests (tests/net/, make chaos CHAOS_ARGS=--net) need ip and iptables inside their namespaces (as root only).
tools:
	@command -v bwrap >/dev/null && command -v socat >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing bubblewrap and socat for Claude Code's sandbox"; \
	    (apt-get install -y -qq bubblewrap socat || (apt-get update -qq && apt-get install -y -qq bubblewrap socat)) >/dev/null; \
	  else echo "WARNING: code tasks need bubblewrap and socat for their sandbox: sudo apt-get install bubblewrap socat"; fi; }
	@[ "$$(id -u)" != 0 ] || { command -v iptables && command -v ip; } >/dev/null || { \
	  if command -v apt-get >/dev/null; then \
	    echo "installing iptables and iproute2 for the network-fault tests"; \
	    (apt-get install -y -qq iptables iproute2 || (apt-get update -qq && apt-get install -y -qq iptables iproute2)) >/dev/null; \
	  else echo "WARNING: the network-fault tests need iptables; they are skipped without it"; fi; }

up: venv tools
	@$(PY) deploy/render.py --root $(CURDIR) --var $(VAR) --venv $(VENV_DIR) \
	  --nats-port-base $(NATS_PORT_BASE) --cluster-port-base $(NATS_CLUSTER_PORT_BASE) \
	  --monitor-port-base $(NATS_MONITOR_PORT_BASE) --metrics-port-base $(METRICS_PORT_BASE) \
	  $(if $(filter 1,$(NATS_TLS)),--tls)
	@if $(CTL) pid >/dev/null 2>&1; then echo "supervisord already running"; \
	  else $(VENV_DIR)/bin/supervisord -c $(VAR)/supervisord.conf && echo "supervisord started"; fi
	@$(HEALTH) --timeout $(UP_TIMEOUT) --settle $(UP_SETTLE) wait || { $(MAKE) --no-print-directory status; exit 1; }
	@$(MAKE) --no-print-directory status

down:
	@if [ -x $(PY) ]; then $(HEALTH) down; else $(PYTHON) deploy/health.py --var $(VAR) --venv $(VENV_DIR) down; fi

# valor status is the health table once the CLI exists; until then, supervisor + /healthz.
status:
	@if [ ! -x $(PY) ]; then echo "no $(VENV) yet: run make up"; exit 0; fi; \
	if out=$$(timeout 20 $(VENV_DIR)/bin/valor status 2>&1); then \
	  $(CTL) status; echo; echo "$$out"; else $(HEALTH) table; fi

logs:
	tail -n 20 -F $(VAR)/log/*.log

# Three workers on two cores: most tests wait on servers and processes rather than compute
# (each worker takes ports from its own range, tests/conftest.py).  TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 3
test: venv tools
	env -u VALOR_NATS_URL -u VALOR_REPLICAS -u VALOR_CONFIG -u VALOR_SECRETS $(VENV_DIR)/bin/pytest -q -n $(TEST_WORKERS)

# pyright checks what [tool.pyright] include names in pyproject.toml (the contract and the domain).
lint: venv
	$(VENV_DIR)/bin/ruff check .
	$(VENV_DIR)/bin/pyright

schemas: venv
	$(PY) -m schemas.export schemas/json

golden: venv
	$(PY) -m tests.golden.record

demo: venv
	$(PY) -m valor.demo --ctl "$(CTL)"

# --- chat ---------------------------------------------------------------------

.PHONY: chat login

# A terminal chat with Valor (the console transport, when no Telegram credentials are set).
chat: venv
	@$(PY) -m valor.console

# Create var/sessions/ingest.session and notifier.session (asks for the login code).
login: venv
	@$(PY) -m services.ingest login

# Figures, not a test: fresh nats-servers on random ports; writes bench/results/*.json.
bench: venv
	$(PY) -m bench.run $(BENCH_ARGS)

# Where a promise's CPU goes inside the services: py-spy samples under the e2e load.
profile: venv
	$(PY) -m bench.profile $(PROFILE_ARGS)

# --- chaos ---------------------------------------------------------------------

.PHONY: chaos chaos-net

# kill -9 of every service and NATS node at random moments; the log must show 0 violations (CHAOS_ARGS=--seed N).
# CHAOS_ARGS=--net: network faults between simulated hosts instead (root and ip netns; skipped loudly elsewhere),
# e.g. make chaos CHAOS_ARGS="--net --rounds 62 --promises 1200 --messages 120 --round-seconds 4".
chaos: venv
	$(PY) -m tests.chaos.run --rounds 100 $(CHAOS_ARGS)

chaos-net: venv tools
	$(PY) -m tests.chaos.run --net --rounds 62 --promises 1200 --messages 120 --round-seconds 4 $(CHAOS_ARGS)
