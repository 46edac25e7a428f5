#!/usr/bin/env bash
# What Helm 4's own Makefile stamps at link time (tools/go-tool.sh adds it): its version. (Helm 4
# reads the Kubernetes version it assumes for templates from its build information itself.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
echo "-X helm.sh/helm/v4/internal/version.version=$(go list -m -f '{{.Version}}' helm.sh/helm/v4)"
