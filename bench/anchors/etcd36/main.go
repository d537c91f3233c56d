// etcd 3.6, the second anchor of bench/store-vs-etcd and bench/watch-vs-etcd (Debian ships 3.4):
// the same entry point as etcd's own binary, built from its Go module by bench/anchors/etcd-build.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
