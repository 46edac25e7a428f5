#!/usr/bin/env bash
# Build `argocd-health`, which runs Argo CD health scripts under gopher-lua as Argo CD does (see
# main.go), into the tools cache. Usage and environment: tools/go-tool.sh.
exec "$(dirname "${BASH_SOURCE[0]}")/../go-tool.sh" argocd-health github.com/yuin/gopher-lua "$@"
