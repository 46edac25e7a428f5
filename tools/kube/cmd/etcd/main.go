// Command etcd is etcd's own server main, built at the etcd version that the
// pinned k8s.io/kubernetes requires (go.etcd.io/etcd/server/v3 cannot be
// `go install`ed directly because of the replace lines in its go.mod).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
