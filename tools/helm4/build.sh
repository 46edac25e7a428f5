#!/usr/bin/env bash
# Build Helm 4, upstream's own cmd/helm (the `tool` in go.mod), into the tools cache as
# `helm4`: the chart is linted, rendered and installed by both majors (tests/e2e/test_chart.py,
# tests/e2e/test_helm_install.py). Usage and environment: tools/go-tool.sh.
exec "$(dirname "${BASH_SOURCE[0]}")/../go-tool.sh" helm4 helm.sh/helm/v4 "$@"
