#!/usr/bin/env bash
# Build the pinned local Kubernetes control plane (kube-apiserver, kube-controller-manager,
# etcd, kubectl) from Go modules with the machine's Go, into a per-version cache folder
# outside the work tree, so that tests and the demo get a real API server without Docker.
#
# Usage: tools/kube/build.sh          build if needed; the last stdout line is the bin dir
#        tools/kube/build.sh --check  print the bin dir and exit 0 if it is complete, else exit 1
#        --node (with either)         also the node's kubelet, kube-scheduler and kube-proxy
#                                     (tools/node/setup.sh; the pinned default version only)
#
# Environment:
#   EGP_KUBE_CACHE    cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/egp-operator/kube)
#   EGP_KUBE_VERSION  another Kubernetes version than go.mod's, pinned in versions/VERSION.mod
#                     by pin-version.sh (docs/compatibility.md); unset: go.mod's
#
# A cold build downloads ~0.8 GB of modules and compiles for a long time on 2 cores; see
# docs/control-plane.md for measured figures. Binaries are built under a temporary name and
# renamed into place, so an interrupted build is never mistaken for a finished one.
set -euo pipefail

check=false
node=false
for arg in "$@"; do
  case "$arg" in
    --check) check=true ;;
    --node) node=true ;;
    *) echo "build.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

# The pinned Kubernetes version is the single source of truth in go.mod; another one is pinned
# in its own module file, built with `go build -modfile` (the same tools.go and cmd/etcd).
modfile="go.mod"
if [[ -n "${EGP_KUBE_VERSION:-}" ]]; then
  modfile="versions/$EGP_KUBE_VERSION.mod"
  if [[ ! -f "$modfile" && "$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' go.mod)" == "$EGP_KUBE_VERSION" ]]; then
    modfile="go.mod"
  fi
  [[ -f "$modfile" ]] || {
    echo "build.sh: Kubernetes $EGP_KUBE_VERSION is not pinned: tools/kube/pin-version.sh $EGP_KUBE_VERSION" >&2
    exit 2
  }
fi
version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$modfile")"
if [[ -z "$version" ]]; then
  echo "build.sh: cannot find the k8s.io/kubernetes version in $here/$modfile" >&2
  exit 2
fi
minor="$(echo "$version" | cut -d. -f2)"

cache_root="${EGP_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/egp-operator/kube}"
out="$cache_root/$version"
bin="$out/bin"

# name=package; etcd comes from this module so it matches the version Kubernetes requires.
targets=(
  "kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver"
  "kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager"
  "kubectl=k8s.io/kubernetes/cmd/kubectl"
  "etcd=egp-operator/tools/kube/cmd/etcd"
)
if $node; then
  targets+=(
    "kubelet=k8s.io/kubernetes/cmd/kubelet"
    "kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler"
    "kube-proxy=k8s.io/kubernetes/cmd/kube-proxy"
  )
fi

complete() {
  local t
  for t in "${targets[@]}"; do
    [[ -x "$bin/${t%%=*}" ]] || return 1
  done
}

if $check; then
  if complete; then
    echo "$bin"
    exit 0
  fi
  echo "build.sh: control-plane binaries for $version are not built yet in $bin" >&2
  exit 1
fi

if complete; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
# Two builds at once (say `make cluster-up` and a test run) would waste an hour of CPU:
# serialise them; the second one then finds the binaries and returns.
exec 9>"$out/.lock"
flock 9
if complete; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: 'go' is not on PATH" >&2; exit 2; }

# Stamp the version the way Kubernetes' own release build does, or the server says v0.0.0.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done

tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

pkgs=()
for t in "${targets[@]}"; do
  pkgs+=("${t#*=}")
done

echo "build.sh: building Kubernetes $version control plane into $bin (a cold build takes a while)" >&2
started=$SECONDS
# One `go build` for all commands shares the compile work of their common packages.
CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly -modfile=$modfile" \
  go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}" >&2

for t in "${targets[@]}"; do
  name="${t%%=*}"
  mv -f "$tmp/$name" "$bin/$name"
done
echo "build.sh: built in $((SECONDS - started)) s" >&2
echo "$bin"
