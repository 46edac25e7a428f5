#!/usr/bin/env bash
# Build the operator's image from the repository's Dockerfile with podman (daemonless), on a
# machine that reaches Debian's packages and the Python package index but no registry of images.
#
# The Dockerfile's base (its PYTHON_IMAGE argument, python:3.11-slim for users) would come from a
# registry of images; here it is made from Debian's packages instead: mmdebstrap writes a minimal
# bookworm root file system with Python 3.11 and its venv module, podman imports it, and the
# Dockerfile is built on it as it is. Python packages install inside the build from the package
# index, as anywhere. The build sees the host's certificate authorities (mounted read-only for
# the build's steps, never stored in a layer), so pip there trusts what pip here trusts.
#
# Usage: tools/image/build.sh          build (podman's layer cache makes a rebuild quick); the
#                                      last stdout line is the image's name
#        tools/image/build.sh --check  print the name and exit 0 if the image exists, else 1
#
# Environment:
#   EGP_IMAGE       the image's name (default: localhost/egp-operator:dev)
#   EGP_IMAGE_BASE  a base image to use instead of the Debian-made one (e.g. python:3.11-slim
#                   where a registry of images is reached)
#
# Installs podman, runc and mmdebstrap with apt when they are missing (root, as on CI). Images
# live in podman's own store, outside the work tree.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
image="${EGP_IMAGE:-localhost/egp-operator:dev}"

exists() { command -v podman >/dev/null && podman image exists "$1"; }

if [[ "${1:-}" == "--check" ]]; then
  exists "$image" && { echo "$image"; exit 0; }
  exit 1
fi

tools=(podman runc mmdebstrap)
missing=()
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "build.sh: installing ${missing[*]} from Debian's packages" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

# The Debian-made base, named after what it holds, so a change of the list makes a new one.
packages="python3,python3-venv,python-is-python3,ca-certificates"
suite="bookworm"
base_tag="$(printf '%s %s' "$suite" "$packages" | sha256sum | cut -c1-12)"
base="${EGP_IMAGE_BASE:-localhost/egp-operator-base:$suite-$base_tag}"

if [[ -z "${EGP_IMAGE_BASE:-}" ]] && ! exists "$base"; then
  # The host's own apt sources, so the base comes from wherever this machine gets Debian's
  # packages; they are left out of the base itself.
  sources=()
  [[ -s /etc/apt/sources.list ]] && grep -q '^deb' /etc/apt/sources.list && sources+=(/etc/apt/sources.list)
  for file in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [[ -f "$file" ]] && sources+=("$file")
  done
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "build.sh: making the base $base from Debian $suite ($packages)" >&2
  mmdebstrap --quiet --variant=minbase --include="$packages" \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/etc/apt/sources.list "$1"/etc/apt/sources.list.d/* "$1"/var/lib/apt/lists/*' \
    "$suite" "$work/base.tar" "${sources[@]}" >&2
  podman import --quiet "$work/base.tar" "$base" >&2
fi

certificates=()
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  certificates=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
echo "build.sh: building $image from the Dockerfile on $base" >&2
podman build --quiet --network host "${certificates[@]}" \
  --build-arg "PYTHON_IMAGE=$base" --tag "$image" "$repo" >&2
echo "build.sh: $image is $(podman image inspect --format '{{.Size}}' "$image") bytes" >&2
echo "$image"
