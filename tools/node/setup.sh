#!/usr/bin/env bash
# What the local node needs (testbench/egp_testbench/node.py): Debian's containerd, runc, CNI
# plugins, catatonit (the pause image), iptables (kube-proxy) and podman (the images), installed
# with apt where missing; and the kubelet, kube-scheduler and kube-proxy, built from the same
# pinned Go modules as the control plane, into the same cache folder.
#
# Usage: tools/node/setup.sh          install and build if needed; the last stdout line is the bin dir
#        tools/node/setup.sh --check  print the bin dir and exit 0 if all is there, else exit 1
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
commands=(containerd ctr runc catatonit iptables podman nsenter)
packages=(containerd runc containernetworking-plugins catatonit iptables podman util-linux)

installed() {
  local command
  for command in "${commands[@]}"; do
    command -v "$command" >/dev/null || return 1
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]]
}

if [[ "${1:-}" == "--check" ]]; then
  installed || { echo "setup.sh: the node's packages are not installed" >&2; exit 1; }
  exec bash "$here/../kube/build.sh" --check --node
fi

if ! installed; then
  echo "setup.sh: installing ${packages[*]} from Debian's packages" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >&2
fi
exec bash "$here/../kube/build.sh" --node
