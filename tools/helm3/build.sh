#!/usr/bin/env bash
# Build Helm 3, upstream's own cmd/helm (the `tool` in go.mod), into the tools cache as
# `helm3`, for the chart's tests (tests/e2e/test_chart.py, tests/e2e/test_helm_install.py) and
# the Pod's (tests/e2e/test_pod.py). Usage and environment: tools/go-tool.sh.
exec "$(dirname "${BASH_SOURCE[0]}")/../go-tool.sh" helm3 helm.sh/helm/v3 "$@"
