// Module that pins and builds a small CLI running Argo CD health scripts under gopher-lua, the
// Lua runtime Argo CD embeds (see main.go and build.sh).
module egp-operator/tools/argocd-health

go 1.26.0

require github.com/yuin/gopher-lua v1.1.1
