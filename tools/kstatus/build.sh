#!/usr/bin/env bash
# Build `kstatus`, a small CLI around the pinned kstatus library (sigs.k8s.io/cli-utils,
# see main.go), with the machine's Go, into a per-version cache folder outside the work
# tree, so the Python tests can ask what Flux, kpt and the cli-utils applier conclude.
#
# Usage: tools/kstatus/build.sh          build if needed; the last stdout line is the bin dir
#        tools/kstatus/build.sh --check  print the bin dir and exit 0 if it is built, else exit 1
#
# Environment:
#   EGP_KSTATUS_CACHE  cache root (default: $EGP_KUBE_CACHE/kstatus when that is set,
#                      else ${XDG_CACHE_HOME:-$HOME/.cache}/egp-operator/kstatus)
#
# The binary is built under a temporary name and renamed into place, so an interrupted
# build is never mistaken for a finished one.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

# The pinned cli-utils version is the single source of truth in go.mod.
version="$(awk '$1 == "sigs.k8s.io/cli-utils" && $2 ~ /^v/ { print $2; exit }' go.mod)"
if [[ -z "$version" ]]; then
  echo "build.sh: cannot find the sigs.k8s.io/cli-utils version in $here/go.mod" >&2
  exit 2
fi

# When EGP_KUBE_CACHE relocates the control plane's cache, follow it (inside it, never
# beside it: nothing is written outside a folder the user chose); one variable moves both.
if [[ -n "${EGP_KUBE_CACHE:-}" ]]; then
  default_root="$EGP_KUBE_CACHE/kstatus"
else
  default_root="${XDG_CACHE_HOME:-$HOME/.cache}/egp-operator/kstatus"
fi
cache_root="${EGP_KSTATUS_CACHE:-$default_root}"
out="$cache_root/$version"
bin="$out/bin"

complete() {
  [[ -x "$bin/kstatus" ]]
}

if [[ "${1:-}" == "--check" ]]; then
  if complete; then
    echo "$bin"
    exit 0
  fi
  echo "build.sh: kstatus for cli-utils $version is not built yet in $bin" >&2
  exit 1
fi

if complete; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
# Parallel test workers may all call this at once: serialise, and let the later ones
# find the finished binary.
exec 9>"$out/.lock"
flock 9
if complete; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: 'go' is not on PATH" >&2; exit 2; }

tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "build.sh: building kstatus (cli-utils $version) into $bin" >&2
started=$SECONDS
CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly" \
  go build -trimpath -ldflags "-s -w" -o "$tmp/kstatus" . >&2
mv -f "$tmp/kstatus" "$bin/kstatus"
echo "build.sh: built in $((SECONDS - started)) s" >&2
echo "$bin"
