#!/usr/bin/env bash
# Pin another Kubernetes version for the control plane, beside the default one in go.mod:
# writes tools/kube/versions/VERSION.mod and .sum, which `EGP_KUBE_VERSION=VERSION build.sh`
# builds with (`go build -modfile`, so tools.go and cmd/etcd are shared). Run it once per
# version and commit the two files; the builds then need nothing but the Go module proxy.
#
# Usage: tools/kube/pin-version.sh v1.32.13
#
# As for go.mod (docs/control-plane.md): k8s.io/kubernetes replaces its staging modules with
# folders of its own repository, so every one of them is replaced here by its published
# version (v0.MINOR.PATCH); etcd's server comes at the version Kubernetes' own go.mod requires.
set -euo pipefail

version="${1:?usage: pin-version.sh vMAJOR.MINOR.PATCH}"
[[ "$version" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "pin-version.sh: not a version: $version" >&2; exit 2; }
staging="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
BASH_REMATCH_MINOR="${BASH_REMATCH[1]}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

upstream="$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
[[ -f "$upstream" ]] || { echo "pin-version.sh: no go.mod for k8s.io/kubernetes@$version" >&2; exit 1; }
go_line="$(awk '$1 == "go" { print $2; exit }' "$upstream")"
etcd="$(awk '$1 == "go.etcd.io/etcd/client/v3" && $2 ~ /^v/ { print $2; exit }' "$upstream")"

# The staging module's own release, or, when the module proxy does not serve that one, the
# newest patch of the same minor it does serve (said on stderr): patches of a minor keep their
# Go API, and most of these modules are not even in the build.
published() {
  if go mod download "$1@$staging" 2>/dev/null; then
    echo "$staging"
    return
  fi
  local nearest
  nearest="$(go list -m -versions "$1" 2>/dev/null | tr ' ' '\n' |
    grep -E "^v0\.${BASH_REMATCH_MINOR}\.[0-9]+$" | sort -t. -k3 -n | tail -n 1 || true)"
  echo "pin-version.sh: $1 $staging is not served; using ${nearest:-$staging}" >&2
  echo "${nearest:-$staging}"
}

modfile="versions/$version.mod"
{
  echo "// Kubernetes $version for tools/kube/build.sh (EGP_KUBE_VERSION=$version); written by"
  echo "// pin-version.sh. The default version is the one in go.mod."
  echo "module egp-operator/tools/kube"
  echo
  echo "go $go_line"
  echo
  echo "require ("
  echo "	go.etcd.io/etcd/server/v3 $etcd"
  echo "	k8s.io/kubernetes $version"
  echo ")"
  echo
  echo "replace ("
  sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$upstream" | sort -u |
    while read -r module; do echo "	$module => $module $(published "$module")"; done
  echo ")"
} > "$modfile"
rm -f "versions/$version.sum"
GOFLAGS=-mod=mod go mod tidy -modfile="$modfile"
echo "pin-version.sh: wrote tools/kube/$modfile and its .sum" >&2
