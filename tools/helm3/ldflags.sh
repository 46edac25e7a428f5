#!/usr/bin/env bash
# What Helm 3's own Makefile stamps at link time (tools/go-tool.sh adds it): its version, and
# the Kubernetes version its client-go speaks, which `helm template` and `helm lint` take for
# the cluster's (.Capabilities.KubeVersion). Unstamped, that is v1.20, and a chart asking for
# `kubeVersion: >=1.32` is refused.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
helm="$(go list -m -f '{{.Version}}' helm.sh/helm/v3)"
client="$(go list -m -f '{{.Version}}' k8s.io/client-go)" # v0.MINOR.PATCH
minor="$(echo "$client" | cut -d. -f2)"
flags="-X helm.sh/helm/v3/internal/version.version=$helm"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
done
echo "$flags"
