// Wrapper module: builds etcd v3.5.35 (the server Kubernetes supports; Debian's 3.4 is below
// its floor) from the Go module proxy. Built by cluster/go/build.
module ballast.dev/cluster/etcd

go 1.23

require go.etcd.io/etcd/server/v3 v3.5.35
