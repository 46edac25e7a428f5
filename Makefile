# Every target sets itself up: a fresh machine needs only Python 3.11+ and Go.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
export EGP_CLUSTER_DIR ?= $(CURDIR)/.cluster

.PHONY: help venv lint format test test-fast test-pod image node-bins bench bench-soak bench-scale bench-growth kube-bins go-tools prometheus-bins cluster-up cluster-down demo demo-down crds chart test-k8s-versions clean

# `make help` prints each target with the `## ` line right above it, in this file's order, and
# fails naming any .PHONY target that has none: a new target gets its line, or help says so.
## this list
help:
	@awk '/^\.PHONY:/ { for (i = 2; i <= NF; i++) phony[$$i] = 1 } \
		/^## / { doc = substr($$0, 4); next } \
		/^[a-z][a-z0-9-]*:/ && doc != "" { name = substr($$0, 1, index($$0, ":") - 1); \
			printf "make %-18s %s\n", name, doc; delete phony[name] } \
		{ doc = "" } \
		END { for (name in phony) { print "make " name ": no ## line above it" > "/dev/stderr"; \
			failed = 1 } exit failed }' $(MAKEFILE_LIST)

## the virtualenv: the operator, its dev tools, the test bench (every target makes it)
venv: $(INSTALLED)

# The operator with its dev tools, and the test bench (testbench/: the local EGP server, control
# plane and demo), a distribution of its own so that the operator's wheel never carries it.
$(INSTALLED): pyproject.toml testbench/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./testbench
	touch $@

## ruff and mypy (strict): what `make test` runs first
lint: venv
	$(BIN)/ruff check operator testbench tests bench release
	$(BIN)/ruff format --check operator testbench tests bench release
	$(BIN)/mypy

## ruff's fixes and formatting, written into the files
format: venv
	$(BIN)/ruff check --fix operator testbench tests bench release
	$(BIN)/ruff format operator testbench tests bench release

# Builds kube-apiserver, kube-controller-manager, etcd and kubectl once per machine into a cache
# outside the work tree (see docs/control-plane.md); later runs reuse them. The script prints
# their folder last: KUBE_BIN_DIR runs it and hands that folder to the tests, cluster-up and the
# benchmarks (KUBE_BUILD alone, with EGP_KUBE_VERSION, for another pinned version).
KUBE_BUILD = bash tools/kube/build.sh | tail -n 1
KUBE_BIN_DIR = EGP_KUBE_BIN_DIR="$$($(KUBE_BUILD))"

## build kube-apiserver, kube-controller-manager, etcd and kubectl once into the cache
kube-bins:
	bash tools/kube/build.sh

# The real tools our users judge objects with, built from the Go module proxy like the control
# plane: kstatus (Flux, kpt, the cli-utils applier), Argo CD's Lua runtime, and
# kube-state-metrics itself (the longest: about 2 minutes cold, on 2 cores), and Helm 3 and 4 for
# the chart's tests (about a minute each).
## build kstatus, argocd-health, kube-state-metrics, Helm 3 and Helm 4 once into the cache
go-tools:
	bash tools/kstatus/build.sh
	bash tools/argocd-health/build.sh
	bash tools/kube-state-metrics/build.sh
	bash tools/helm3/build.sh
	bash tools/helm4/build.sh

# Debian's Prometheus (promtool and prometheus), unpacked into the cache: the shipped alert
# rules are tested with the real rule engine.
## unpack Debian's prometheus and promtool once into the cache
prometheus-bins:
	bash tools/prometheus/install.sh

# The operator's image from the Dockerfile, with podman, on a base made from Debian's packages
# (no registry of images is needed; docs/install.md). About 2 minutes cold, seconds cached.
## build the operator's image from the Dockerfile with podman (no registry of images)
image:
	bash tools/image/build.sh

# The local node beside the control plane: Debian's containerd, runc, CNI plugins and catatonit,
# and the kubelet, kube-scheduler and kube-proxy from the pinned Go modules (tools/node/setup.sh).
## set up the local node once: containerd, runc, CNI, kubelet, kube-scheduler, kube-proxy
node-bins:
	bash tools/node/setup.sh

## unit and integration tests only (no Kubernetes control plane)
test-fast: venv
	$(BIN)/pytest tests/unit tests/integration

# Every test runs inside a network namespace of its own (tools/node/netns.sh), where the local
# node's address lives: the Pod tests need it, and nothing else notices (all is on loopback).
# The image is built by its prerequisite; --check only names it, without a second build.
TEST_ENV = $(KUBE_BIN_DIR) \
	EGP_OPERATOR_IMAGE="$$(bash tools/image/build.sh --check | tail -n 1)" \
	EGP_PROMETHEUS_BIN_DIR="$$(bash tools/prometheus/install.sh | tail -n 1)"

## lint, type-check, build the local control plane if needed, run every test
test: lint kube-bins node-bins go-tools prometheus-bins image
	$(TEST_ENV) bash tools/node/netns.sh $(BIN)/pytest

## the image as a Pod on a local kubelet (chart, deploy/, replicas, upgrade, Prometheus)
test-pod: venv kube-bins node-bins go-tools prometheus-bins image
	$(TEST_ENV) bash tools/node/netns.sh $(BIN)/pytest -s tests/e2e/test_pod.py

# The supported range's oldest and newest Kubernetes (docs/compatibility.md), each pinned in
# tools/kube/versions/ and built like the default one; `make test` runs the pinned default.
# The operator, install, Helm and CRD tests run against each. About 10 minutes per version,
# plus a first build of its control plane (5 to 10 minutes).
K8S_VERSIONS ?= v1.32.13 v1.37.2
K8S_VERSION_TESTS ?= tests/e2e/test_control_plane.py tests/e2e/test_crds.py \
	tests/e2e/test_operator.py tests/e2e/test_install.py tests/e2e/test_helm_install.py
## the e2e operator and install tests on the oldest and newest supported Kubernetes
test-k8s-versions: venv go-tools
	@failed=""; for version in $(K8S_VERSIONS); do \
		echo "== Kubernetes $$version"; \
		bin="$$(EGP_KUBE_VERSION=$$version $(KUBE_BUILD))" && \
		EGP_KUBE_VERSION=$$version EGP_KUBE_BIN_DIR="$$bin" \
			$(BIN)/pytest -p no:cacheprovider $(K8S_VERSION_TESTS) || failed="$$failed $$version"; \
	done; \
	if [ -n "$$failed" ]; then echo "failed on:$$failed"; exit 1; fi

## start kube-apiserver + etcd + kube-controller-manager on loopback
cluster-up: venv kube-bins
	$(KUBE_BIN_DIR) $(BIN)/python -m egp_testbench.cluster up --dir "$(EGP_CLUSTER_DIR)"

## stop them
cluster-down: venv
	$(BIN)/python -m egp_testbench.cluster down --dir "$(EGP_CLUSTER_DIR)"

## the whole product on loopback: control plane, local EGP, operator
demo: venv kube-bins
	$(BIN)/python -m egp_testbench.demo up --dir "$(EGP_CLUSTER_DIR)/demo"

## stop the demo
demo-down: venv
	$(BIN)/python -m egp_testbench.demo down --dir "$(EGP_CLUSTER_DIR)/demo"

# Not a timed test: it measures and reports the targets met or missed (bench/README.md).
# Extra options through BENCH_ARGS, e.g. make bench BENCH_ARGS="--sizes 500 --output /tmp/quick.md"
## measure a sync at 1,000, 2,000 and 10,000 models into bench/RESULTS.md (~20 min)
bench: venv kube-bins
	$(KUBE_BIN_DIR) $(BIN)/python -m bench.run $(BENCH_ARGS)

# Many sources with a model each, 10 to a namespace and its Secret, for 30 minutes, scraped every
# 30 s, with External Secrets Operator beside it on as many ExternalSecrets (tools/eso/build.sh):
# memory and CPU over time, recorded in bench/RESULTS.md section 6 with a plot. About 40 minutes.
## 1,000 sources for 30 minutes beside ESO: memory and CPU over time (~40 min)
bench-soak: venv kube-bins
	$(KUBE_BIN_DIR) $(BIN)/python -m bench.many_sources \
		--sources 1000 --namespaces 100 --models 1 --minutes 30 --sample-every 30 --peer eso --record

# 100, 1,000 and 3,000 sources for 6 minutes each, then a restart of the operator: the cost per
# source as sources multiply, and how the first cycles after a restart spread. About 40 minutes.
## 100, 1,000 and 3,000 sources, and a restart of each (~40 min)
bench-scale: venv kube-bins
	$(KUBE_BIN_DIR) $(BIN)/python -m bench.many_sources \
		--sources 100,1000,3000 --models 1 --minutes 6 --restart --record-scale

# One source of 1,000, 10,000 and 50,000 models: the first mirror, the steady cycle and memory
# as a source grows, and the slopes between them. About 30 minutes.
## one source of 1,000, 10,000 and 50,000 models (~30 min)
bench-growth: venv kube-bins
	$(KUBE_BIN_DIR) $(BIN)/python -m bench.many_sources \
		--sources 1 --models 1000,10000,50000 --interval 30s --minutes 5 --sample-every 5 \
		--record-growth

# The CRDs are generated from the pydantic models; a unit test fails when crds/ drifts.
## regenerate crds/ from the pydantic models, then the chart's copies of them
crds: venv
	$(BIN)/egp-operator crds --output-dir crds
	$(BIN)/python -m release.chart

# The chart's copies of crds/ and deploy/monitoring/, and its schema of the operator's settings;
# a unit test fails when they are stale.
## the chart's copies of crds/ and deploy/monitoring/, and its schema of the settings
chart: venv
	$(BIN)/python -m release.chart

## remove the virtualenv, caches and build output in the tree (not the tools' cache)
clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info operator/*.egg-info
