#!/usr/bin/env bash
# Build kube-state-metrics, upstream's own main package (the `tool` in go.mod), into the tools
# cache, so the e2e tests run deploy/monitoring/kube-state-metrics-config.yaml through the real
# exporter. Usage and environment: tools/go-tool.sh.
exec "$(dirname "${BASH_SOURCE[0]}")/../go-tool.sh" kube-state-metrics k8s.io/kube-state-metrics/v2 "$@"
