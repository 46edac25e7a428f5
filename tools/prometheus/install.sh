#!/usr/bin/env bash
# Put Debian's Prometheus (`prometheus` and `promtool`) into a per-version cache folder outside
# the work tree, for the tests that check the shipped alert rules with the real tools. The
# package is fetched with apt and unpacked, not installed: no service is started and nothing
# outside the cache folder changes (but apt's package lists, refreshed once if they lack it).
#
# Usage: tools/prometheus/install.sh          fetch if needed; the last stdout line is the bin dir
#        tools/prometheus/install.sh --check  print the bin dir and exit 0 if it is there, else 1
#
# Environment:
#   EGP_PROMETHEUS_CACHE  cache root (default: $EGP_KUBE_CACHE/prometheus when that is set,
#                         else ${XDG_CACHE_HOME:-$HOME/.cache}/egp-operator/prometheus)
set -euo pipefail

if [[ -n "${EGP_KUBE_CACHE:-}" ]]; then
  default_root="$EGP_KUBE_CACHE/prometheus"
else
  default_root="${XDG_CACHE_HOME:-$HOME/.cache}/egp-operator/prometheus"
fi
root="${EGP_PROMETHEUS_CACHE:-$default_root}"

candidate() { apt-cache policy prometheus 2>/dev/null | awk '$1 == "Candidate:" { print $2 }'; }

version="$(candidate)"
if [[ -z "$version" || "$version" == "(none)" ]]; then
  if [[ "${1:-}" == "--check" ]]; then
    exit 1
  fi
  apt-get update -qq >&2
  version="$(candidate)"
fi
if [[ -z "$version" || "$version" == "(none)" ]]; then
  echo "install.sh: apt knows no prometheus package" >&2
  exit 2
fi
bin="$root/${version//[:+~]/_}/bin"

complete() { [[ -x "$bin/promtool" && -x "$bin/prometheus" ]]; }

if [[ "${1:-}" == "--check" ]]; then
  complete && { echo "$bin"; exit 0; }
  exit 1
fi

if ! complete; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download -qq "prometheus=$version" >&2)
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  mkdir -p "$bin"
  for tool in promtool prometheus; do
    install -m 0755 "$work/root/usr/bin/$tool" "$bin/.$tool.tmp"
    mv "$bin/.$tool.tmp" "$bin/$tool"
  done
fi
echo "$bin"
