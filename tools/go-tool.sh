#!/usr/bin/env bash
# Build one of the Go tools under tools/ (kstatus, argocd-health, kube-state-metrics) with the
# machine's Go, into a per-version cache folder outside the work tree, so the Python tests can run
# the real library each wraps. The version of the wrapped module, pinned in the tool's go.mod,
# and a digest of the tool's files name the folder: any change builds anew, none reuses the
# binary. What is built is the tool folder's own main package, or, when its go.mod has a
# `tool PACKAGE` line, that package: an upstream command built as it is, with no wrapper of ours,
# and with the link-time values its own release build sets, printed by the folder's ldflags.sh.
#
# Usage: tools/go-tool.sh TOOL MODULE          build if needed; the last stdout line is the bin dir
#        tools/go-tool.sh TOOL MODULE --check  print the bin dir, exit 0 if built, else exit 1
#
# Environment:
#   EGP_TOOLS_CACHE  cache root (default: $EGP_KUBE_CACHE when that is set, else
#                    ${XDG_CACHE_HOME:-$HOME/.cache}/egp-operator); TOOL/VERSION/bin below it
#
# The binary is built under a temporary name and renamed into place, so an interrupted build
# is never mistaken for a finished one.
set -euo pipefail

tool="$1"
module="$2"
mode="${3:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/$tool" && pwd)"
cd "$here"

# In a require block (`MODULE vX`) or on a require line of its own (`require MODULE vX`).
version="$(awk -v m="$module" '
  $1 == m && $2 ~ /^v/ { print $2; exit }
  $1 == "require" && $2 == m && $3 ~ /^v/ { print $3; exit }' go.mod)"
if [[ -z "$version" ]]; then
  echo "go-tool.sh: cannot find the $module version in $here/go.mod" >&2
  exit 2
fi

# When EGP_KUBE_CACHE relocates the control plane's cache, follow it: one variable moves all.
root="${EGP_TOOLS_CACHE:-${EGP_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/egp-operator}}"
# The folder also carries a digest of the tool's own files, so that a change to its main.go or
# its other pins builds anew too.
sources="$({ cat go.mod go.sum; cat ./*.go ./ldflags.sh 2>/dev/null || true; } | sha256sum | cut -c1-12)"
out="$root/$tool/$version-$sources"
bin="$out/bin"

complete() { [[ -x "$bin/$tool" ]]; }

if [[ "$mode" == "--check" ]]; then
  complete && { echo "$bin"; exit 0; }
  echo "go-tool.sh: $tool ($module $version) is not built yet in $bin" >&2
  exit 1
fi
if complete; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
# Parallel callers serialise here, and the later ones find the finished binary.
exec 9>"$out/.lock"
flock 9
if complete; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "go-tool.sh: 'go' is not on PATH" >&2; exit 2; }
pkg="$(awk '$1 == "tool" && NF == 2 { print $2; exit }' go.mod)"
tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "go-tool.sh: building $tool ($module $version) into $bin" >&2
started=$SECONDS
# A tool whose upstream release stamps values at link time says which in its ldflags.sh.
ldflags="-s -w"
if [[ -f ldflags.sh ]]; then
  ldflags+=" $(bash ldflags.sh)"
fi
CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly" \
  go build -trimpath -ldflags "$ldflags" -o "$tmp/$tool" "${pkg:-.}" >&2
mv -f "$tmp/$tool" "$bin/$tool"
echo "go-tool.sh: built in $((SECONDS - started)) s" >&2
echo "$bin"
