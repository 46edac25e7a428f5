# Every target sets itself up: a fresh machine needs only Python 3.11+ and Go.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
export EGP_CLUSTER_DIR ?= $(CURDIR)/.cluster

.PHONY: help venv lint format test test-fast test-pod image node-bins bench bench-soak bench-scale bench-growth kube-bins go-tools prometheus-bins cluster-up cluster-down demo demo-down crds chart test-k8s-versions clean

help:
	@echo "make test          lint, type-check, build the local control plane if needed, run every test"
	@echo "make test-fast     unit and integration tests only (no Kubernetes control plane)"
	@echo "make image         build the operator's image from the Dockerfile with podman (no registry of images)"
	@echo "make test-pod      the image as a Pod on a local kubelet (chart, deploy/, replicas, upgrade, Prometheus)"
	@echo "make test-k8s-versions  the e2e operator and install tests on the oldest and newest supported Kubernetes"
	@echo "make demo          the whole product on loopback: control plane, local EGP, operator"
	@echo "make demo-down     stop the demo"
	@echo "make bench         measure a sync at 1,000, 2,000 and 10,000 models into bench/RESULTS.md (~20 min)"
	@echo "make bench-soak    1,000 sources for 30 minutes: memory and CPU over time (~35 min)"
	@echo "make bench-scale   100, 1,000 and 3,000 sources, and a restart of each (~40 min)"
	@echo "make bench-growth  one source of 1,000, 10,000 and 50,000 models (~30 min)"
	@echo "make cluster-up    start kube-apiserver + etcd + kube-controller-manager on loopback"
	@echo "make cluster-down  stop them"

venv: $(INSTALLED)

# The operator with its dev tools, and the test bench (testbench/: the local EGP server, control
# plane and demo), a distribution of its own so that the operator's wheel never carries it.
$(INSTALLED): pyproject.toml testbench/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./testbench
	touch $@

lint: venv
	$(BIN)/ruff check operator testbench tests bench
	$(BIN)/ruff format --check operator testbench tests bench
	$(BIN)/mypy

format: venv
	$(BIN)/ruff check --fix operator testbench tests bench
	$(BIN)/ruff format operator testbench tests bench

# Builds kube-apiserver, kube-controller-manager, etcd and kubectl once per machine into a cache
# outside the work tree (see docs/control-plane.md); later runs reuse them.
kube-bins:
	bash tools/kube/build.sh

# The real tools our users judge objects with, built from the Go module proxy like the control
# plane: kstatus (Flux, kpt, the cli-utils applier), Argo CD's Lua runtime, and
# kube-state-metrics itself (the longest: about 2 minutes cold, on 2 cores), and Helm 3 and 4 for
# the chart's tests (about a minute each).
go-tools:
	bash tools/kstatus/build.sh
	bash tools/argocd-health/build.sh
	bash tools/kube-state-metrics/build.sh
	bash tools/helm3/build.sh
	bash tools/helm4/build.sh

# Debian's Prometheus (promtool and prometheus), unpacked into the cache: the shipped alert
# rules are tested with the real rule engine.
prometheus-bins:
	bash tools/prometheus/install.sh

# The operator's image from the Dockerfile, with podman, on a base made from Debian's packages
# (no registry of images is needed; docs/install.md). About 2 minutes cold, seconds cached.
image:
	bash tools/image/build.sh

# The local node beside the control plane: Debian's containerd, runc, CNI plugins and catatonit,
# and the kubelet, kube-scheduler and kube-proxy from the pinned Go modules (tools/node/setup.sh).
node-bins:
	bash tools/node/setup.sh

test-fast: venv
	$(BIN)/pytest tests/unit tests/integration

# Every test runs inside a network namespace of its own (tools/node/netns.sh), where the local
# node's address lives: the Pod tests need it, and nothing else notices (all is on loopback).
# The image is built by its prerequisite; --check only names it, without a second build.
TEST_ENV = EGP_KUBE_BIN_DIR="$$(bash tools/kube/build.sh | tail -n 1)" \
	EGP_OPERATOR_IMAGE="$$(bash tools/image/build.sh --check | tail -n 1)" \
	EGP_PROMETHEUS_BIN_DIR="$$(bash tools/prometheus/install.sh | tail -n 1)"

test: lint kube-bins node-bins go-tools prometheus-bins image
	$(TEST_ENV) bash tools/node/netns.sh $(BIN)/pytest

test-pod: venv kube-bins node-bins go-tools prometheus-bins image
	$(TEST_ENV) bash tools/node/netns.sh $(BIN)/pytest -s tests/e2e/test_pod.py

# The supported range's oldest and newest Kubernetes (docs/compatibility.md), each pinned in
# tools/kube/versions/ and built like the default one; `make test` runs the pinned default.
# The operator, install, Helm and CRD tests run against each. About 10 minutes per version,
# plus a first build of its control plane (5 to 10 minutes).
K8S_VERSIONS ?= v1.32.13 v1.37.2
K8S_VERSION_TESTS ?= tests/e2e/test_control_plane.py tests/e2e/test_crds.py \
	tests/e2e/test_operator.py tests/e2e/test_install.py tests/e2e/test_helm_install.py
test-k8s-versions: venv go-tools
	@failed=""; for version in $(K8S_VERSIONS); do \
		echo "== Kubernetes $$version"; \
		bin="$$(EGP_KUBE_VERSION=$$version bash tools/kube/build.sh | tail -n 1)" && \
		EGP_KUBE_VERSION=$$version EGP_KUBE_BIN_DIR="$$bin" \
			$(BIN)/pytest -p no:cacheprovider $(K8S_VERSION_TESTS) || failed="$$failed $$version"; \
	done; \
	if [ -n "$$failed" ]; then echo "failed on:$$failed"; exit 1; fi

cluster-up: venv kube-bins
	EGP_KUBE_BIN_DIR="$$(bash tools/kube/build.sh | tail -n 1)" \
		$(BIN)/python -m egp_testbench.cluster up --dir "$(EGP_CLUSTER_DIR)"

cluster-down: venv
	$(BIN)/python -m egp_testbench.cluster down --dir "$(EGP_CLUSTER_DIR)"

demo: venv kube-bins
	$(BIN)/python -m egp_testbench.demo up --dir "$(EGP_CLUSTER_DIR)/demo"

# Not a timed test: it measures and reports the targets met or missed (bench/README.md).
# Extra options through BENCH_ARGS, e.g. make bench BENCH_ARGS="--sizes 500 --output /tmp/quick.md"
bench: venv kube-bins
	EGP_KUBE_BIN_DIR="$$(bash tools/kube/build.sh | tail -n 1)" $(BIN)/python -m bench.run $(BENCH_ARGS)

# Many sources with a model each, 10 to a namespace and its Secret, for 30 minutes, scraped every
# 30 s, with External Secrets Operator beside it on as many ExternalSecrets (tools/eso/build.sh):
# memory and CPU over time, recorded in bench/RESULTS.md section 6 with a plot. About 40 minutes.
bench-soak: venv kube-bins
	EGP_KUBE_BIN_DIR="$$(bash tools/kube/build.sh | tail -n 1)" \
		$(BIN)/python -m bench.many_sources --sources 1000 --namespaces 100 --models 1 --minutes 30 \
		--sample-every 30 --peer eso --record

# 100, 1,000 and 3,000 sources for 6 minutes each, then a restart of the operator: the cost per
# source as sources multiply, and how the first cycles after a restart spread. About 40 minutes.
bench-scale: venv kube-bins
	EGP_KUBE_BIN_DIR="$$(bash tools/kube/build.sh | tail -n 1)" $(BIN)/python -m bench.many_sources \
		--sources 100,1000,3000 --models 1 --minutes 6 --restart --record-scale

# One source of 1,000, 10,000 and 50,000 models: the first mirror, the steady cycle and memory
# as a source grows, and the slopes between them. About 30 minutes.
bench-growth: venv kube-bins
	EGP_KUBE_BIN_DIR="$$(bash tools/kube/build.sh | tail -n 1)" $(BIN)/python -m bench.many_sources \
		--sources 1 --models 1000,10000,50000 --interval 30s --minutes 5 --sample-every 5 \
		--record-growth

demo-down: venv
	$(BIN)/python -m egp_testbench.demo down --dir "$(EGP_CLUSTER_DIR)/demo"

# The CRDs are generated from the pydantic models; a unit test fails when crds/ drifts.
crds: venv
	$(BIN)/egp-operator crds --output-dir crds
	$(BIN)/python -m egp_testbench.chart

# The chart's copies of crds/ and deploy/monitoring/, and its schema of the operator's settings;
# a unit test fails when they are stale.
chart: venv
	$(BIN)/python -m egp_testbench.chart

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info operator/*.egg-info
