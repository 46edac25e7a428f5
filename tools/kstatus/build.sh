#!/usr/bin/env bash
# Build `kstatus`, a small CLI around the pinned kstatus library (sigs.k8s.io/cli-utils, see
# main.go), into the tools cache: what Flux, kpt and the cli-utils applier conclude about an
# object. Usage and environment: tools/go-tool.sh.
exec "$(dirname "${BASH_SOURCE[0]}")/../go-tool.sh" kstatus sigs.k8s.io/cli-utils "$@"
