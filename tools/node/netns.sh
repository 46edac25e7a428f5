#!/usr/bin/env bash
# Run a command inside a network namespace of its own, made for the local node: the node's
# address (testbench/egp_testbench/node.py, NODE_ADDRESS) on one end of a veth pair whose other
# end is in the same namespace, so no packet can leave it, and loopback; a packet to any address
# but those is refused. The command (a test run,
# or a shell) starts the control plane, the node and the local EGP server there.
#
# Usage: tools/node/netns.sh COMMAND [ARG...]     (as root)
#
# The command sees EGP_NODE_DIR, a fresh folder for the node's state, and EGP_NODE_CGROUP, the
# cgroup every pod's goes under (so two runs never mix). At the end, whatever the
# command left is removed: every process in the namespace or in the pods' cgroups, the mounts
# under EGP_NODE_DIR, the folder and the namespace.
set -euo pipefail

address="198.18.0.1"
name="egp-node-$$"
cgroup_root="$name"  # the kubelet's cgroupRoot (node.py reads EGP_NODE_CGROUP)
dir="$(mktemp -d "${TMPDIR:-/tmp}/egp-node.XXXXXX")"
chmod 0755 "$dir"

cleanup() {
  local pid procs
  for procs in $(find /sys/fs/cgroup/*/"$cgroup_root" -name cgroup.procs 2>/dev/null); do
    xargs -r kill -9 <"$procs" 2>/dev/null || true
  done
  for pid in $(ip netns pids "$name" 2>/dev/null); do
    kill -9 "$pid" 2>/dev/null || true
  done
  findmnt -rn -o TARGET | awk -v d="$dir" 'index($0, d) == 1' | sort -r |
    xargs -r -n 1 umount -l 2>/dev/null || true
  find /sys/fs/cgroup/*/"$cgroup_root" -depth -type d -exec rmdir {} + 2>/dev/null || true
  ip netns delete "$name" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

ip netns add "$name"
ip -n "$name" link set lo up
ip -n "$name" link add egp-node0 type veth peer name egp-node1
ip -n "$name" addr add "$address/24" dev egp-node0
ip -n "$name" link set egp-node0 up
ip -n "$name" link set egp-node1 up
# A default route, as nodes have (the kubelet and kube-proxy look for one); it leads to the
# veth's other end, inside the namespace.
ip -n "$name" route add default dev egp-node0
# And nothing may even try another address (a name lookup at the machine's resolver, say): sent
# or forwarded, it is refused at once, and counted (`iptables -nvL` in the namespace).
# (The kernel's own link-local multicast, IGMP reports on the pods' bridge, stays on the link.)
for chain in OUTPUT FORWARD; do
  ip netns exec "$name" iptables -A "$chain" -d 127.0.0.0/8 -j ACCEPT
  ip netns exec "$name" iptables -A "$chain" -d "${address%.*.*}.0.0/15" -j ACCEPT
  ip netns exec "$name" iptables -A "$chain" -d 224.0.0.0/24 -j ACCEPT
  ip netns exec "$name" iptables -A "$chain" -j REJECT
done

# nsenter, not `ip netns exec`: that remounts /sys, which hides the cgroup mounts under it.
EGP_NODE_DIR="$dir" EGP_NODE_CGROUP="/$cgroup_root" nsenter --net="/run/netns/$name" -- "$@"
